"""The manifest's `cost`: what the whole run paid, from its cost ledger, beside the estimate made at plan time.

The ledger (`factory.llm.cost_ledger`) has a row for every call the run paid for, in any invocation
(a build and its resumes) and any process (Dask workers), committed with the call's response; and a
row for every answer a cache gave instead. So the figures here are the run's, not the last process's:

* `paid`: calls that reached a model, their tokens and dollars (`batch_calls`: priced as batch calls;
  `repeated`: paid calls of a request the run had already paid for, e.g. two identical requests in
  flight at once; 0 is usual);
* `saved`: distinct requests the shared cache (`run.cache_dir`) answered with a call another build had
  paid for, and what those calls cost it then;
* `replays`: answers from the run's own cache (resumes, salvage rounds): free, and not counted again;
* `by_stage` / `by_role` / `by_model` / `by_workflow` / `by_tag`: the same figures per bucket; `by_stage`
  shows the `--estimate` figures of the stage beside them (`estimated_*`);
* `accepted_pairs` (judged pairs in `pairs.parquet`), `usd_per_accepted_pair` (paid / accepted) and
  `usd_per_accepted_pair_at_full_price` ((paid + saved) / accepted: what a build without the shared
  cache would have paid);
* `estimate` and `vs_estimate`: the estimate saved in `estimate.json` when the run was planned.

See docs/cost.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.atomic_files import atomic_write_json
from factory.config import BuildConfig
from factory.inputs.prompt_sources import Prompt
from factory.llm.cost_ledger import Classifier, LedgerEntry, read_ledger
from factory.llm.price_map import token_cost
from factory.pipeline.estimate import estimate_build
from factory.pipeline.finalize.stage_figures import STAGE_ORDER, stage_of_tag
from factory.run.folder import RunFolder

ESTIMATE_FILE = "estimate.json"
_FIGURES = (
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "batch_calls",
    "saved_calls",
    "saved_cost_usd",
)


def classifier(config: BuildConfig) -> Classifier:
    """The (stage, generation workflow) of a usage tag under `config` (see `stage_figures.stage_of_tag`)."""
    workflows = {wf.name for wf in config.generation.workflows}

    def classify(tag: str | None) -> tuple[str | None, str | None]:
        if tag is None:
            return None, None
        stage = stage_of_tag(tag, config)
        return stage, tag if stage == "generate" and tag in workflows else None

    return classify


def save_estimate(run: RunFolder, config: BuildConfig, prompts: Sequence[Prompt], rejected: int) -> None:
    """The `--estimate` of a new run, kept in the run folder so that finalize can show it beside the actual.
    Priced from litellm's table without importing litellm (seconds), which the lean transport never needs."""
    estimate = estimate_build(config, prompts, rejected, price=token_cost)
    atomic_write_json(run.root / ESTIMATE_FILE, estimate.to_dict())


def load_estimate(run: RunFolder) -> dict[str, Any] | None:
    path = run.root / ESTIMATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def ledger_files(run: RunFolder) -> list[Path]:
    """The run's cache files: `cache.sqlite`, and `cache-<host>.sqlite` of Dask workers on other hosts."""
    return sorted(p for p in run.root.glob("cache*.sqlite") if p.is_file())


def accepted_pairs(run: RunFolder) -> int:
    """Judged pairs in the run's merged `pairs.parquet` (MAPL pairs are cut by code, not paid judging)."""
    table = run.table("pairs")
    if not table.is_file():
        return 0
    scan = pl.scan_parquet(table)
    if "source" not in scan.collect_schema().names():
        return 0
    return int(scan.filter(pl.col("source") == "judged").select(pl.len()).collect().item())


def _bucket() -> dict[str, Any]:
    return dict.fromkeys(_FIGURES, 0)


def _add(bucket: dict[str, Any], entry: LedgerEntry, kind: str) -> None:
    if kind == "paid":
        bucket["calls"] += 1
        bucket["prompt_tokens"] += entry.prompt_tokens
        bucket["completion_tokens"] += entry.completion_tokens
        bucket["cost_usd"] += entry.cost_usd
        bucket["batch_calls"] += int(entry.batch)
    else:
        bucket["saved_calls"] += 1
        bucket["saved_cost_usd"] += entry.cost_usd


def _rounded(bucket: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 8) if isinstance(v, float) else v for k, v in bucket.items()}


def _per(value: float, count: int | None) -> float | None:
    return round(value / count, 12) if count else None  # a cheap pair costs fractions of a cent


def summarize(
    entries: Iterable[LedgerEntry], *, accepted: int | None = None, estimate: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `cost` figures of a run's ledger rows (see the module docstring)."""
    entries = list(entries)
    paid = [e for e in entries if e.kind == "paid"]
    paid_keys: set[str] = set()
    repeated = 0
    for e in paid:
        repeated += e.key in paid_keys
        paid_keys.add(e.key)
    saved: dict[str, LedgerEntry] = {}
    for e in entries:
        if e.kind == "saved" and e.key not in paid_keys:
            saved.setdefault(e.key, e)  # a request answered again (a resume) was saved once
    replays = len(entries) - len(paid) - len(saved)
    total = _bucket()
    groups: dict[str, dict[str, dict[str, Any]]] = {
        "by_stage": {s: _bucket() for s in (*STAGE_ORDER, "gate")},
        "by_role": {},
        "by_model": {},
        "by_workflow": {},
        "by_tag": {},
    }
    for kind, rows in (("paid", paid), ("saved", list(saved.values()))):
        for e in rows:
            _add(total, e, kind)
            names = {
                "by_stage": e.stage or "other",
                "by_role": e.role,
                "by_model": e.model,
                "by_workflow": e.workflow,
                "by_tag": e.tag,
            }
            for group, name in names.items():
                if name is not None:
                    _add(groups[group].setdefault(name, _bucket()), e, kind)
    out: dict[str, Any] = {
        "scope": "the whole run: every invocation (build and resumes) and every worker process",
        "paid": {
            k: round(total[k], 8) if k == "cost_usd" else total[k]
            for k in ("calls", "prompt_tokens", "completion_tokens", "cost_usd", "batch_calls")
        }
        | {"repeated": repeated},
        "saved": {"calls": total["saved_calls"], "cost_usd": round(total["saved_cost_usd"], 8)},
        "replays": replays,
        "attempts": len({e.attempt for e in entries}),
        "processes": len({e.process for e in entries}),
    }
    by_estimate = _estimate_by_stage(estimate)
    for group, buckets in groups.items():
        out[group] = {
            name: _rounded(b) | (by_estimate.get(name, {}) if group == "by_stage" and estimate else {})
            for name, b in (buckets.items() if group == "by_stage" else sorted(buckets.items()))
        }
    out["accepted_pairs"] = accepted
    out["usd_per_accepted_pair"] = _per(total["cost_usd"], accepted)
    out["usd_per_accepted_pair_at_full_price"] = _per(total["cost_usd"] + total["saved_cost_usd"], accepted)
    out["estimate"] = (
        None
        if estimate is None
        else {
            k: estimate.get(k)
            for k in ("calls", "max_calls", "max_tokens", "max_cost_usd", "unpriced_models")
        }
    )
    out["vs_estimate"] = (
        None
        if estimate is None
        else {
            "requests": total["calls"] + total["saved_calls"],
            "estimated_calls": estimate.get("calls"),
            "estimated_max_calls": estimate.get("max_calls"),
            "cost_usd": round(total["cost_usd"], 8),
            "estimated_max_cost_usd": estimate.get("max_cost_usd"),
        }
    )
    return out


def _estimate_by_stage(estimate: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`estimated_calls`, `estimated_max_calls` and `estimated_max_cost_usd` (None: a model of the
    stage is unpriced) per stage, from the saved estimate's lines; zeros for a stage it has no line for."""
    stages: dict[str, dict[str, Any]] = {
        s: {"estimated_calls": 0, "estimated_max_calls": 0, "estimated_max_cost_usd": 0.0}
        for s in (*STAGE_ORDER, "gate")
    }
    for line in (estimate or {}).get("lines") or []:
        figures = stages.setdefault(
            str(line.get("stage")),
            {"estimated_calls": 0, "estimated_max_calls": 0, "estimated_max_cost_usd": 0.0},
        )
        figures["estimated_calls"] += int(line.get("calls") or 0)
        figures["estimated_max_calls"] += int(line.get("max_calls") or 0)
        cost = line.get("cost_usd")
        prior = figures["estimated_max_cost_usd"]
        figures["estimated_max_cost_usd"] = None if cost is None or prior is None else round(prior + cost, 8)
    return stages


def run_cost(run: RunFolder, *, accepted: int | None = None) -> dict[str, Any]:
    """The manifest's `cost` of a run folder (its ledger and saved estimate)."""
    return summarize(read_ledger(ledger_files(run)), accepted=accepted, estimate=load_estimate(run))


def cost_line(cost: dict[str, Any]) -> str:
    """One line of the run's cost for the build's summary: paid, saved, per accepted pair, vs the estimate."""
    paid, saved = cost["paid"], cost["saved"]
    parts = [
        f"cost of the run: ${paid['cost_usd']:.4f} for {paid['calls']} paid calls"
        + (f" over {cost['attempts']} invocations" if cost.get("attempts", 0) > 1 else "")
    ]
    if saved["calls"]:
        parts.append(f"{saved['calls']} answered by the shared cache (${saved['cost_usd']:.4f} saved)")
    if cost.get("usd_per_accepted_pair") is not None:
        parts.append(f"${cost['usd_per_accepted_pair']:.6f} per accepted pair ({cost['accepted_pairs']})")
    estimate = cost.get("estimate")
    if estimate:
        most = estimate.get("max_cost_usd")
        parts.append(
            f"estimate {estimate.get('calls')} calls" + (f", at most ${most:.4f}" if most is not None else "")
        )
    return "; ".join(parts)
