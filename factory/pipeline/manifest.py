"""manifest.json: what a build produced and what it cost, in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from factory import __version__
from factory.pipeline.context import BuildContext
from factory.run_folder import atomic_write_json


def write_manifest(ctx: BuildContext, rows: dict[str, int], stopped: str | None,
                   gate: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write manifest.json. `rows` holds the row counts of the run's tables; `gate` is the quality gate's
    outcome (`factory.gate`); `approved` is its verdict, which publishing and trainer hand-off read (a
    build without a gate result is not approved)."""
    prompts = pl.read_parquet(ctx.run.table("prompts"))
    usage = ctx.gateway.usage.snapshot()
    manifest: dict[str, Any] = {
        "run_id": ctx.run.run_id,
        "factory_version": __version__,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "stopped" if stopped else "complete",
        "stopped_reason": stopped,
        "counts": {
            "prompts": prompts.height,
            "candidates": rows["candidates"],
            "judgments": rows["judgments"],
            "pairs": rows["pairs"],
            "failures": rows["failures"],
        },
        "llm": usage,
        "models": {role: spec.model for role, spec in ctx.config.models.items()},
        "judge_setting": ctx.config.judging.setting.setting_id,
        "gate": gate,
        "approved": bool(gate is not None and gate.get("passed")),
    }
    atomic_write_json(ctx.run.manifest_path, manifest)
    return manifest
