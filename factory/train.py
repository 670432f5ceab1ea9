"""Trainer hand-off: TRL's DPO / KTO trainers (and RDPO) on a run's dataset exactly as written.

`train(run_dir)` reads `dataset/dpo` or `dataset/kto` with `load_dataset("parquet", ...)`, the same
files `factory publish` uploads, and trains on them without reshaping (TRL's conversational
formats). It refuses a dataset whose quality gate did not pass (`manifest.json` `gate.passed`), or
whose gate result is missing, unless `force`.

* On a GPU (`torch.cuda.is_available()`), it trains `model` (a Hub id or a local folder) for one
  epoch, or `max_steps`, and saves it under `RUN_DIR/train/<loss>/`.
* `smoke=True` proves on CPU that the data is consumed as-is: 2 steps of a tiny, randomly
  initialised Llama built from a config with a byte-level tokenizer made on the spot (no download).

    result = train(Path("outputs/demo-..."), loss="rdpo", smoke=True)
    result.steps, result.train_loss
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from factory.errors import UserError
from factory.run_folder import atomic_write_json

Loss = Literal["dpo", "kto", "rdpo"]
LOSSES: tuple[str, ...] = ("dpo", "kto", "rdpo")
SMOKE_STEPS = 2


@dataclass
class TrainResult:
    """What a training run did; also written to `<output_dir>/train_result.json`."""

    loss: str
    smoke: bool
    device: str
    model: str
    steps: int
    train_rows: int
    test_rows: int
    train_loss: float | None
    output_dir: str
    gate: str
    metrics: dict[str, float] = field(default_factory=dict)


def check_gate(run_dir: Path, force: bool) -> str:
    """How the gate stands ("passed", "forced: ..."); raises `UserError` when it does not allow training."""
    manifest_path = run_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        manifest = {}
    except ValueError:
        raise UserError(f"manifest.json is not valid JSON: {manifest_path}") from None
    gate = manifest.get("gate")
    if isinstance(gate, dict) and gate.get("passed") is True:
        return "passed"
    problem = ("the quality gate did not pass" if isinstance(gate, dict)
               else "no quality gate result in manifest.json (gate disabled or not run), so the data is not approved")
    if force:
        return f"forced: {problem}"
    raise UserError(f"{problem}: {run_dir}; pass --force to train anyway")


def _data_files(run_dir: Path, config_name: str) -> dict[str, str]:
    folder = run_dir / "dataset" / config_name
    files = {split: str(folder / f"{split}-00000-of-00001.parquet") for split in ("train", "test")}
    files = {split: path for split, path in files.items() if Path(path).is_file()}
    if "train" not in files:
        raise UserError(f"no {config_name} training data at {folder} (build the dataset first: factory build)")
    return files


def build_tiny_model(folder: Path) -> Path:
    """A randomly initialised 1-layer Llama and a byte-level tokenizer with a chat template, saved to
    `folder` (TRL needs a model path, not only an in-memory model). Nothing is downloaded."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    # Every byte is a token, so any text (any script) tokenizes without a learned vocabulary.
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
                               "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _trainer(loss: str, model_path: str, data: Any, args_kw: dict[str, Any], gamma: float, beta: float,
             tokenizer: Any) -> Any:
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    eval_data = data.get("test")
    if loss == "kto":
        return KTOTrainer(model=model_path, args=KTOConfig(beta=beta, **args_kw), train_dataset=data["train"],
                          eval_dataset=eval_data, processing_class=tokenizer)
    config = DPOConfig(beta=beta, **args_kw)
    if loss == "rdpo":
        from factory.rdpo import RDPOTrainer

        return RDPOTrainer(model=model_path, args=config, train_dataset=data["train"], eval_dataset=eval_data,
                           processing_class=tokenizer, rationale_gamma=gamma)
    return DPOTrainer(model=model_path, args=config, train_dataset=data["train"], eval_dataset=eval_data,
                      processing_class=tokenizer)


def train(run_dir: str | Path, *, loss: Loss = "dpo", smoke: bool = False, force: bool = False,
          model: str | None = None, gamma: float = 0.1, beta: float = 0.1, max_steps: int | None = None,
          output_dir: str | Path | None = None) -> TrainResult:
    """Train on the run's dataset; see the module docstring. Raises `UserError` for anything the user can fix."""
    run_dir = Path(run_dir)
    if loss not in LOSSES:
        raise UserError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
    if not (run_dir / "dataset").is_dir():
        raise UserError(f"not a built run folder (no dataset/): {run_dir}")
    gate = check_gate(run_dir, force)
    files = _data_files(run_dir, "kto" if loss == "kto" else "dpo")
    if smoke:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; nothing may reach the Hub
    import torch
    from datasets import load_dataset  # type: ignore[import-untyped]
    from transformers import AutoTokenizer

    cuda = torch.cuda.is_available()
    if not smoke and not cuda:
        raise UserError("no GPU found: real training needs CUDA; use --smoke to check the data on CPU")
    if not smoke and not model:
        raise UserError("give --model (a Hub id or a local model folder) to train on the GPU")
    out = Path(output_dir) if output_dir else run_dir / "train" / (f"{loss}-smoke" if smoke else loss)
    out.mkdir(parents=True, exist_ok=True)
    model_path = str(build_tiny_model(out / "tiny-model")) if smoke else str(model)
    with tempfile.TemporaryDirectory() as cache:
        data = load_dataset("parquet", data_files=files, cache_dir=cache, keep_in_memory=True)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args_kw: dict[str, Any] = {
        "output_dir": str(out / "checkpoints"), "report_to": [], "logging_steps": 1, "seed": 0,
        "save_strategy": "no", "disable_tqdm": smoke, "max_length": 2048 if not smoke else 1024,
        "per_device_train_batch_size": 2 if smoke else 4, "per_device_eval_batch_size": 2 if smoke else 4,
    }
    if smoke:
        args_kw.update(max_steps=SMOKE_STEPS, use_cpu=True)
    else:
        args_kw.update(max_steps=max_steps or -1, num_train_epochs=1, gradient_accumulation_steps=4,
                       bf16=torch.cuda.is_bf16_supported())
    trainer = _trainer(loss, model_path, data, args_kw, gamma, beta, tokenizer)
    if smoke:  # no per-step log dicts on stdout: the result line says what happened
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    outcome = trainer.train()
    metrics = {k: float(v) for k, v in outcome.metrics.items() if isinstance(v, (int, float))}
    for entry in reversed(trainer.state.log_history):  # the last logged value of each per-step metric (rationale/loss ...)
        metrics.update({k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k not in metrics})
    if "test" in data:
        metrics.update({k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))})
    if not smoke:
        trainer.save_model(str(out / "model"))
    train_loss = metrics.get("train_loss")
    result = TrainResult(loss=loss, smoke=smoke, device="cuda" if cuda and not smoke else "cpu", model=model_path,
                         steps=int(trainer.state.global_step), train_rows=len(data["train"]),
                         test_rows=len(data["test"]) if "test" in data else 0,
                         train_loss=train_loss if train_loss is None or math.isfinite(train_loss) else None,
                         output_dir=str(out), gate=gate, metrics=metrics)
    atomic_write_json(out / "train_result.json", asdict(result))
    return result
