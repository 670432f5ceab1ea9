"""Where a finished dataset goes: the Hugging Face Hub (`publish`) and a trainer (`train`).

Modules:
- `publish`: publish a build's dataset folder to the Hugging Face Hub: the only module that speaks to the Hub.
- `train/`: see its `__init__`
"""

__all__ = ["publish", "train"]
