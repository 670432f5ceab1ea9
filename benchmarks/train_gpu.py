"""One GPU, under ten minutes: bf16 DPO on the embedded SmolLM2-135M for one epoch over a few thousand
pairs; tokens per second, peak GPU memory, reward accuracy on the test split before and after.

    benchmarks/train_gpu.sh                 # builds ~3,000 pairs against the fake server first (a minute)
    benchmarks/train_gpu.sh outputs/RUN     # trains on an existing build instead

The fake server's answers and verdicts are synthetic, so with the default build the accuracy figures
measure the pipeline, not learning; give a real build's folder for figures about real preferences.
Writes the figures as JSON to `--out` (default benchmarks/results/train_gpu.json) and prints them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import REPO, build_config, child_env, load_average, machine_info, write_prompts


def _gpu() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "count": torch.cuda.device_count(),
        "bf16": torch.cuda.is_bf16_supported(),
    }


def _build(work: Path, prompts: int) -> Path:
    from factory.testing import FakeLLMServer

    prompt_file = write_prompts(work / "prompts.jsonl", prompts)
    with FakeLLMServer() as server:
        config = build_config(
            server.base_url, work / "outputs", prompt_file, concurrency=64, name="gpu-bench"
        )
        config["dataset"] = {"test_fraction": 0.1}
        path = work / "build.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "factory", "build", str(path), "--engine", "local", "--quiet"],
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="an existing build (default: build one)")
    parser.add_argument(
        "--prompts", type=int, default=1800, help="prompts of the default build (~1.7 pairs each)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=5e-6)
    parser.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "train_gpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_gpu.json")
    ns = parser.parse_args(argv)
    gpu = _gpu()
    if not gpu:
        print("no CUDA GPU visible: this benchmark is for a GPU machine", file=sys.stderr)
        return 2
    started = time.perf_counter()
    run_dir = ns.run_dir or _build(ns.work_dir.resolve(), ns.prompts)
    build_s = round(time.perf_counter() - started, 1)
    command = [
        sys.executable,
        "-m",
        "factory",
        "train",
        str(run_dir),
        "--model",
        "local/smollm2",
        "--epochs",
        "1",
        "--batch-size",
        str(ns.batch_size),
        "--max-length",
        str(ns.max_length),
        "--learning-rate",
        str(ns.learning_rate),
        "--no-save",
        "--force",
        "--gpus",
        "1",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=child_env(), check=False)
    train_s = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        return done.returncode
    result = json.loads((run_dir / "training" / "dpo" / "train_result.json").read_text(encoding="utf-8"))
    m = result["metrics"]
    figures = {
        "machine": machine_info(),
        "gpu": gpu,
        "run_dir": str(run_dir),
        "built_here": ns.run_dir is None,
        "build_s": build_s if ns.run_dir is None else None,
        "train_command_s": train_s,
        "steps": result["steps"],
        "train_rows": result["train_rows"],
        "batch_size": ns.batch_size,
        "max_length": ns.max_length,
        "learning_rate": ns.learning_rate,
        "timings_s": result["timings_s"],
        "train_tokens_per_second": m.get("train_tokens_per_second"),
        "peak_gpu_memory_gib": m.get("peak_gpu_memory_gib"),
        "train_loss": result["train_loss"],
        "evaluation": result["evaluation"],
        "load_average_end": load_average(),
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
