"""The one import of litellm: offline, quiet settings first, then litellm itself.

`from factory.llm._litellm_env import litellm` wherever litellm is needed; importing it costs
seconds, so only the litellm transport (and what it alone uses) does.
"""

import os

# litellm fetches its price list from the internet at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm

litellm.suppress_debug_info = True  # no "Provider List" banners on stdout for every failed lookup

__all__ = ["litellm"]
