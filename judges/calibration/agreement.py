"""The agreement.json document: every scored setting read against the threshold and the baselines,
with the human set, its sample and ceiling, and the outcome of the judging (schema
`preference-factory/agreement@1`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from factory.llm import ModelSpec
from judges.calibration.decision import kappa_decision
from judges.humans.human_sets import HumanSet
from judges.metrics.baselines import baseline_entries, best_baseline
from judges.metrics.scoring import human_ceiling

SCHEMA_ID = "preference-factory/agreement@1"


def read_against(entry: dict[str, Any], baselines: list[dict[str, Any]], min_kappa: float) -> dict[str, Any]:
    """A setting's kappa read against `min_kappa` through its interval, and against the best baseline."""
    best = best_baseline(baselines)
    margin = None if best is None or entry["kappa"] is None else entry["kappa"] - best["kappa"]
    return {
        "decision": kappa_decision(
            entry["kappa"], entry["ci95"], entry["n"], min_kappa, se=entry.get("kappa_se")
        ),
        "vs_baselines": {
            "best": best["name"] if best else None,
            "best_kappa": best["kappa"] if best else None,
            "margin": margin,
            "beaten": margin is not None and margin > 0,
        },
    }


def build_agreement(
    human: HumanSet,
    entries: list[dict[str, Any]],
    *,
    run_id: str,
    source: str,
    llm: dict[str, Any] | None = None,
    human_set_spec: str | None = None,
    min_kappa: float = 0.4,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The agreement.json document (schema `preference-factory/agreement@1`).

    Top level: `run_id`, `created_at`, `source`, `human_set` {name, spec, n_items, annotators,
    label_counts}, `sample` (how the items were drawn from the set: method, seed, ids and their hash,
    label shares of set and sample; `judges.humans.sampling`), `human_ceiling` (pairwise human kappas +
    Fleiss on the sample, or None with one label per item), `baselines` (trivial judges on the same
    items; `judges.metrics.baselines`), `min_kappa` (the threshold every `decision` reads), `best` (setting
    id), `llm` (usage totals) and `settings`, ranked by kappa. Each setting: `decision` (pass / fail
    / undecided through the kappa interval, `need_n`), `vs_baselines`, `class_recall`,
    `human_likeness` (Judge's Verdict z), `length_control`, `kappa_se`, and
    `rank`, `setting_id`, `kind`, `models`, `protocol`, `scale`, `order`, `structured`, `reducer`,
    `kappa`, `kappa_no_ties`, `accuracy`, `n`, `n_unscored`, `ci95`, `confusion`, `label_counts`,
    `unscored_reasons`, `bias` {position, length, self_preference}, `jurors` (juries: Krippendorff's
    alpha, inter-juror kappas), `disagreements` (examples) and `cost` {cost_usd, tokens, latency, calls}.
    The quality gate adds `gate` and `focus` (the id of the setting it checked).
    """
    counts = human.frame["label"].value_counts()
    label_counts = {str(r["label"]): int(r["count"]) for r in counts.to_dicts()}
    baselines = baseline_entries(human, n_boot=n_boot, seed=seed)
    entries = [{**e, **read_against(e, baselines, min_kappa)} for e in entries]
    return {
        "schema": SCHEMA_ID,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "human_set": {
            "name": human.name,
            "spec": human_set_spec or human.name,
            "n_items": len(human),
            "annotators": list(human.annotators),
            "label_counts": {k: label_counts.get(k, 0) for k in ("A", "B", "tie")},
        },
        "sample": human.sample,
        "human_ceiling": human_ceiling(human),
        "baselines": baselines,
        "min_kappa": min_kappa,
        "best": entries[0]["setting_id"] if entries and entries[0]["kappa"] is not None else None,
        "settings": entries,
        "llm": {k: v for k, v in (llm or {}).items() if not k.startswith("by_")} or None,
    }


def judging_outcome(
    llm: dict[str, Any], rows: list[dict[str, Any]], models: tuple[ModelSpec, ...]
) -> dict[str, Any]:
    """`complete`, or `failed` with its cause when the calibration measured nothing: every model call
    failed (no key, a dead endpoint) or no item got a verdict. An empty table is never a result."""
    scored = sum(1 for r in rows if r.get("verdict") is not None)
    answered = llm.get("calls", 0) + llm.get("cache_hits", 0)
    if scored and answered:
        return {"status": "complete", "cause": None}
    reasons = [str(r["unscored_reason"]) for r in rows if r.get("unscored_reason")]
    last = " ".join(reasons[-1].split())[:240] if reasons else "(none recorded)"
    where = ", ".join(dict.fromkeys(s.api_base or s.model for s in models))
    what = (
        f"every model call failed ({llm.get('errors', 0)} errors)"
        if not answered
        else f"no item of {len(rows)} judgments got a verdict"
    )
    return {"status": "failed", "cause": f"{what} at {where}; last error: {last}"}
