"""The training flow: hand a gated dataset to TRL (`factory.release.train.trainer`, imported when the flow runs).

Runs where the worker runs: put GPU builds on a work pool whose workers have a GPU
(`prefect worker start --pool gpu`), and schedule this flow after a build.

Example::

    train_flow(run_dir="outputs/demo-20261104-030000-1a2b", loss="dpo", model="local/smollm2", lora=True)
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(name="train", cache_policy=NO_CACHE)
def run_training(run_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """One training run; not retried (a failed GPU run is for a person to look at)."""
    from factory.release.train.trainer import train

    result = train(run_dir, **options)
    return asdict(result)


@flow(name="factory-train", validate_parameters=True)
def train_flow(
    run_dir: str,
    loss: str = "dpo",
    model: str | None = None,
    smoke: bool = False,
    force: bool = False,
    max_steps: int | None = None,
    lora: bool = False,
    max_length: int = 1024,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train with TRL on the run's dataset in the worker's process (one device; `factory train` launches several)
    and evaluate on its test split; options as `factory train --help`. Refuses a failed gate unless `force`."""
    options: dict[str, Any] = {
        "loss": loss,
        "model": model,
        "smoke": smoke,
        "force": force,
        "max_steps": max_steps,
        "lora": lora,
        "max_length": max_length,
        "learning_rate": learning_rate,
    }
    return run_training(run_dir, options)
