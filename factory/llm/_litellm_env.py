"""Offline, quiet settings that must be in place before litellm is first imported."""

import os

# litellm fetches its price list from the internet at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")
