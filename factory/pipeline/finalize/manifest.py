"""manifest.json: what a build produced, what it cost and how it ended, written in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from factory import __version__
from factory.pipeline.context import BuildContext
from factory.pipeline.outcome import BuildFacts, BuildOutcome, decide_outcome, gate_failed
from factory.records import BuildStop, GateOutcome, Manifest

_USAGE_TOTALS = (
    "calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_s",
    "retries",
    "errors",
    "batch_calls",
    "batch_cost_usd",
)


def build_manifest(
    ctx: BuildContext,
    rows: dict[str, int],
    stopped: BuildStop | None,
    *,
    usage: dict[str, Any],
    gate: GateOutcome | None = None,
) -> Manifest:
    """The manifest's figures before the dataset is written. `rows` holds the row counts of the run's
    tables; `usage` the gateway's usage (merged across worker processes); `gate` the quality gate's
    outcome (`factory.pipeline.finalize.gate`); `approved` is its verdict, which publishing and trainer hand-off read
    (a build without a gate result is not approved)."""
    prompts = pl.read_parquet(ctx.run.table("prompts"))
    return {
        "run_id": ctx.run.run_id,
        "factory_version": __version__,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": None,  # set by `settle_outcome` once the dataset is written
        "stopped_reason": stopped["reason"] if stopped else None,
        "stop": stopped["kind"] if stopped else None,
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


def settle_outcome(ctx: BuildContext, manifest: Manifest, failure_reasons: list[str]) -> BuildOutcome:
    """Decide the build's outcome from the manifest's figures and record it there."""
    counts, llm = manifest["counts"], manifest["llm"]
    prompts = pl.read_parquet(ctx.run.table("prompts"), columns=["rejected_reason"])
    dataset = counts.get("dataset") or {}
    outcome = decide_outcome(
        BuildFacts(
            usable_prompts=prompts["rejected_reason"].null_count(),
            dataset_rows=sum(v for k, v in dataset.items() if k.split("_")[-1] in ("train", "test")),
            model_calls=llm.get("calls", 0),
            cache_hits=llm.get("cache_hits", 0),
            call_errors=llm.get("errors", 0),
            failure_reasons=tuple(failure_reasons),
            stopped=manifest["stopped_reason"],
            stop=manifest.get("stop"),
            endpoints=_endpoints(spec.api_base or spec.model for spec in ctx.config.models.values()),
        )
    )
    outcome = replace(outcome, gate_failed=gate_failed(manifest.get("gate")))
    manifest["status"] = outcome.status.value
    manifest["outcome"] = {
        "status": outcome.status.value,
        "cause": outcome.cause,
        "exit_code": outcome.exit_code,
        "gate_failed": outcome.gate_failed,
        "stop": outcome.stop,
    }
    return outcome


def _endpoints(targets: Iterable[str]) -> tuple[str, ...]:
    """Where the models are, for the failure line: an api_base without credentials or query, else the model."""
    out: list[str] = []
    for target in targets:
        parts = urlsplit(target)
        shown = (
            f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
            if parts.scheme in ("http", "https") and parts.hostname
            else target
        )
        if shown not in out:
            out.append(shown)
    return tuple(out)


def merge_usage(base: dict[str, Any], others: list[dict[str, Any]]) -> dict[str, Any]:
    """Usage snapshots (see `UsageLedger.snapshot`) added up, totals and `by_*` breakdowns alike."""

    def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for key in _USAGE_TOTALS:
            if isinstance(b.get(key), (int, float)):
                out[key] = round(out.get(key, 0) + b[key], 8)
        return out

    merged = add(base, {})
    for other in others:
        merged = add(merged, other)
        for kind in ("by_role", "by_model", "by_tag"):
            buckets = dict(merged.get(kind) or {})
            for name, figures in (other.get(kind) or {}).items():
                buckets[name] = add(buckets.get(name, {}), figures)
            merged[kind] = buckets
    return merged
