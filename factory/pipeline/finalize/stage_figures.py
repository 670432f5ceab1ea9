"""The manifest's `stages`: what went into and came out of each stage of a build, and what it cost.

Per stage (`generate`, `judge`, `pairs`, `rationales`, `variants`, and the quality `gate`):

* `prompts_in`: prompts that reached the stage (the usable prompts for `generate`; then those with
  candidates, those whose judging did not fail, those with a pair, those with an explained pair);
* `rows_out`: rows the stage wrote (candidates, judgments, pairs, explained pairs, MAPL rows);
* `failures`: failure rows the stage recorded;
* `calls`, `cache_hits`, `prompt_tokens`, `completion_tokens`, `cost_usd`, `errors`: the usage of the
  stage's model calls, from the gateway's `by_tag` (each stage tags its calls: generation by workflow
  name, judging by the judge setting's id, `rationale`/`rationale_verify`, `mapl_fresh`, `gate/...`).

The gate has usage only: what it judges is a human-labelled set, not the build's prompts.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from factory.config import BuildConfig
from factory.run.folder import RunFolder
from factory.workflows.generation import EARLIER_TURNS_TAG

USAGE_FIGURES = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "errors")
STAGE_ORDER = ("generate", "judge", "pairs", "rationales", "variants")


def stage_of_tag(tag: str, config: BuildConfig) -> str | None:
    """The stage whose calls carry usage tag `tag` (None: a tag no build stage uses)."""
    if tag.startswith("gate/"):
        return "gate"
    if tag == EARLIER_TURNS_TAG or tag in {w.name for w in config.generation.workflows}:
        return "generate"
    if tag == config.judging.setting.setting_id:
        return "judge"
    if tag in ("rationale", "rationale_verify"):
        return "rationales"
    if tag == "mapl_fresh":
        return "variants"
    return None


def stage_usage(by_tag: dict[str, dict[str, Any]], config: BuildConfig) -> dict[str, dict[str, float]]:
    """`by_tag` usage added up per stage (every stage and the gate present, zero when it made no call)."""
    out: dict[str, dict[str, float]] = {s: dict.fromkeys(USAGE_FIGURES, 0) for s in (*STAGE_ORDER, "gate")}
    for tag, figures in by_tag.items():
        stage = stage_of_tag(tag, config)
        if stage is None:
            continue
        for key in USAGE_FIGURES:
            value = figures.get(key, 0)
            out[stage][key] = (
                round(out[stage][key] + value, 8) if isinstance(value, (int, float)) else out[stage][key]
            )
    return out


def _prompt_ids(run: RunFolder, stage: str) -> set[str]:
    scan = run.scan_stage(stage)
    if scan is None or "prompt_id" not in scan.collect_schema().names():
        return set()
    return set(scan.select(pl.col("prompt_id").cast(pl.Utf8)).unique().collect()["prompt_id"].to_list())


def _rows(run: RunFolder, stage: str) -> int:
    scan = run.scan_stage(stage)
    return 0 if scan is None else int(scan.select(pl.len()).collect().item())


def stage_figures(run: RunFolder, config: BuildConfig, usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's `stages` of a run whose tables are merged (`prompts.parquet`, `failures.parquet`)."""
    prompts = pl.read_parquet(run.table("prompts"), columns=["rejected_reason"])
    failures = (
        pl.read_parquet(run.table("failures"), columns=["item_id", "stage"])
        if run.table("failures").is_file()
        else pl.DataFrame(schema={"item_id": pl.Utf8, "stage": pl.Utf8})
    )
    failed_judging = set(failures.filter(pl.col("stage") == "judge")["item_id"].to_list())
    with_candidates = _prompt_ids(run, "generate")
    prompts_in = {
        "generate": prompts["rejected_reason"].null_count(),
        "judge": len(with_candidates),
        "pairs": len(with_candidates - failed_judging),
        "rationales": len(_prompt_ids(run, "pairs")),
        "variants": len(_prompt_ids(run, "rationales")),
    }
    failed = dict(failures.group_by("stage").len().iter_rows())
    spent = stage_usage(usage.get("by_tag") or {}, config)
    out: dict[str, dict[str, Any]] = {
        stage: {
            "prompts_in": prompts_in[stage],
            "rows_out": _rows(run, stage),
            "failures": failed.get(stage, 0),
            **spent[stage],
        }
        for stage in STAGE_ORDER
    }
    out["gate"] = spent["gate"]
    return out
