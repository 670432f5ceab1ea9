"""One agreement entry per judge setting: kappa against humans, bias, jurors, cost and latency.

`score_setting` turns a setting's judgment rows (one per human-set item, in the set's order) into
the JSON-ready entry that `agreement.json` lists and the report draws; `human_ceiling` measures how
far humans agree with each other on the same set, the best a judge can be expected to reach;
`score_judgments` scores a judgments file made elsewhere, with no model call.

Example:
    >>> entry = score_setting({"setting_id": "judge[m]/combined10/fixed", ...}, rows, human_set)
    >>> entry["kappa"], entry["ci95"], entry["bias"]["length"]["longer_preferred_rate"]
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.errors import UserError
from judges.calibration.decision import kappa_se
from judges.humans.human_sets import LABELS, HumanSet
from judges.metrics.agreement import (
    agreement_summary,
    fleiss_kappa,
    inter_judge_kappas,
    krippendorff_alpha_nominal,
    pairwise_kappas,
)
from judges.metrics.bias import length_bias, position_bias, self_preference
from judges.metrics.human_likeness import human_likeness
from judges.metrics.length_control import length_control
from judges.verdicts import VerdictCell


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def human_ceiling(human: HumanSet) -> dict[str, Any] | None:
    """Human-human agreement on the set (pairwise Cohen's kappa, Fleiss' kappa); None with < 2 annotators."""
    if len(human.annotators) < 2:
        return None
    matrix = human.labels_matrix()
    kappas = pairwise_kappas(matrix, human.annotators)
    index = {name: i for i, name in enumerate(human.annotators)}
    pairs: list[dict[str, Any]] = []
    for (a, b), kappa in kappas.items():
        n = sum(row[index[a]] is not None and row[index[b]] is not None for row in matrix)
        pairs.append({"a": a, "b": b, "kappa": _finite(kappa), "n": n})
    complete = [row for row in matrix if all(v is not None for v in row)]
    defined = [p["kappa"] for p in pairs if p["kappa"] is not None]
    return {
        "annotators": list(human.annotators),
        "pairwise": pairs,
        "mean_pairwise_kappa": statistics.fmean(defined) if defined else None,
        "min_pairwise_kappa": min(defined) if defined else None,
        "max_pairwise_kappa": max(defined) if defined else None,
        # Fleiss needs every rater on every item: only fully labelled items count.
        "fleiss_kappa": _finite(fleiss_kappa(complete)) if complete else None,  # type: ignore[arg-type]
        "n_items_complete": len(complete),
    }


def _votes(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A jury row's juror verdicts as [{"model", "verdict"}] (the engine may store plain verdicts)."""
    votes = row.get("votes")
    if isinstance(votes, str):
        votes = json.loads(votes) if votes else []
    out = []
    models = row.get("models") or []
    if isinstance(models, str):
        models = json.loads(models)
    for i, vote in enumerate(votes or []):
        if isinstance(vote, dict):
            name = vote.get("model") or vote.get("juror") or vote.get("judge_id") or f"juror{i + 1}"
            out.append({"model": str(name), "verdict": vote.get("verdict")})
        else:
            out.append({"model": str(models[i]) if i < len(models) else f"juror{i + 1}", "verdict": vote})
    return out


def juror_agreement(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Krippendorff's alpha across jurors and Cohen's kappa between every two, from jury rows' votes.

    Needs no human labels, so it also measures a build's own judgments. None when no row has votes.
    """
    per_row = [_votes(r) for r in rows]
    names = list(dict.fromkeys(v["model"] for votes in per_row for v in votes))
    if len(names) < 2:
        return None
    columns: dict[str, list[VerdictCell]] = {name: [] for name in names}
    for votes in per_row:
        given = {v["model"]: v["verdict"] for v in votes}
        for name in names:
            columns[name].append(given.get(name))
    kappas = inter_judge_kappas(columns)
    defined = [k for k in kappas.values() if not math.isnan(k)]
    matrix = [[columns[name][i] for name in names] for i in range(len(per_row))]
    return {
        "jurors": names,
        "n_items": len(per_row),
        "krippendorff_alpha": _finite(krippendorff_alpha_nominal(matrix)),
        "inter_juror_kappas": [{"a": a, "b": b, "kappa": _finite(k)} for (a, b), k in kappas.items()],
        "mean_inter_juror_kappa": statistics.fmean(defined) if defined else None,
    }


def _answer_models(human: HumanSet) -> tuple[list[str], list[str]] | None:
    """Which model wrote each answer, from `meta` (`model_a`/`model_b`, or PandaLM's `cmp_key`)."""
    model_a, model_b = [], []
    for meta_text in human.frame["meta"]:
        meta = json.loads(meta_text or "{}")
        if meta.get("model_a") and meta.get("model_b"):
            model_a.append(str(meta["model_a"]))
            model_b.append(str(meta["model_b"]))
        elif isinstance(meta.get("cmp_key"), str) and meta["cmp_key"].count("_") == 1:
            a, b = meta["cmp_key"].split("_")
            model_a.append(a)
            model_b.append(b)
        else:
            return None
    return model_a, model_b


def _model_key(model: str) -> str:
    # "openai/llama-7b" and "llama-7b" name the same model: compare the last path part, case-blind.
    return model.rsplit("/", 1)[-1].strip().lower()


def _self_preference(
    models: Sequence[str], human: HumanSet, verdicts: list[VerdictCell]
) -> list[dict[str, Any]] | None:
    answer_models = _answer_models(human)
    if answer_models is None:
        return None
    model_a = [_model_key(m) for m in answer_models[0]]
    model_b = [_model_key(m) for m in answer_models[1]]
    out = []
    for model in models:
        result = self_preference(
            model_a, model_b, verdicts, _model_key(model), human=human.frame["label"].to_list()
        )
        if result["n"] or result["n_unscored"]:
            out.append({**result, "judge_model": model})
    return out or None


def _cost(rows: Sequence[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    latencies = sorted(float(r.get("latency_s") or 0.0) for r in rows)
    p95 = latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)] if latencies else None
    cost = {
        "cost_usd": sum(float(r.get("cost_usd") or 0.0) for r in rows),
        "prompt_tokens": sum(int(r.get("prompt_tokens") or 0) for r in rows),
        "completion_tokens": sum(int(r.get("completion_tokens") or 0) for r in rows),
        "latency_mean_s": statistics.fmean(latencies) if latencies else None,
        "latency_p95_s": p95,
    }
    if usage:
        cost["calls"] = int(usage.get("calls", 0))
        cost["cache_hits"] = int(usage.get("cache_hits", 0))
    return cost


def _clip(text: Any, limit: int) -> str:
    value = str(text or "")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def disagreements(rows: Sequence[dict[str, Any]], human: HumanSet, limit: int = 3) -> list[dict[str, Any]]:
    """A few items where the judge and the humans disagree, with the judge's own words, for a reader
    to see what goes wrong: opposite winners first, then tie-vs-winner; texts clipped."""
    frame = human.frame.to_dicts()
    found = [
        (i, r)
        for i, r in enumerate(rows)
        if r.get("verdict") is not None and r["verdict"] != frame[i]["label"]
    ]
    found.sort(key=lambda pair: ({pair[1]["verdict"], frame[pair[0]]["label"]} != {"A", "B"}, pair[0]))
    out = []
    for i, row in found[:limit]:
        raws = (
            json.loads(row.get("raw") or "[]") if isinstance(row.get("raw"), str) else (row.get("raw") or [])
        )
        item = frame[i]
        out.append(
            {
                "item_id": item["id"],
                "human": item["label"],
                "judge": row["verdict"],
                "prompt": _clip(item["prompt"], 400),
                "response_a": _clip(item["response_a"], 400),
                "response_b": _clip(item["response_b"], 400),
                "judge_output": _clip(raws[-1] if raws else "", 800),
            }
        )
    return out


def class_recall(confusion: dict[str, dict[str, int]]) -> dict[str, float | None]:
    """Per human label, the share of its items the judge labelled the same (None for a label with no
    items): a judge that never says tie shows as tie recall 0 however good its kappa looks."""
    out: dict[str, float | None] = {}
    for label in LABELS:
        total = sum(confusion[label].values())
        out[label] = confusion[label][label] / total if total else None
    return out


def score_setting(
    meta: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    human: HumanSet,
    *,
    per_order: tuple[Sequence[VerdictCell], Sequence[VerdictCell]] | None = None,
    usage: dict[str, Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The agreement entry of one setting: `meta` (setting_id, kind, models, ...) plus its figures.

    `rows` are judgment rows aligned with `human.frame` (row i judges item i). `per_order` holds the
    A-first and B-first verdicts when the setting judged both orders (position bias).
    Unscored verdicts are left out of kappa and counted in `n_unscored`, with their reasons.
    Besides kappa: `kappa_se` (analytic), `class_recall`, `human_likeness` (Judge's Verdict z-score,
    sets with several annotators) and `length_control` (AlpacaEval-style length-controlled rates).
    """
    if len(rows) != len(human):
        raise ValueError(f"got {len(rows)} judgment rows for {len(human)} items")
    verdicts: list[VerdictCell] = [r.get("verdict") for r in rows]
    labels = human.frame["label"].to_list()
    summary = agreement_summary(labels, verdicts, n_boot=n_boot, seed=seed)
    reasons = Counter(str(r.get("unscored_reason") or "unknown") for r in rows if r.get("verdict") is None)
    models = [str(m) for m in meta.get("models") or []]
    bias = {
        "position": position_bias(*per_order) if per_order is not None else None,
        "length": length_bias(
            human.frame["response_a"].to_list(), human.frame["response_b"].to_list(), verdicts
        ),
        "self_preference": _self_preference(models, human, verdicts),
    }
    return {
        **meta,
        **{
            k: summary[k]
            for k in (
                "kappa",
                "kappa_no_ties",
                "accuracy",
                "n",
                "n_unscored",
                "ci95",
                "confusion",
                "label_counts",
            )
        },
        "kappa_se": kappa_se(labels, verdicts),
        "class_recall": class_recall(summary["confusion"]),
        "human_likeness": human_likeness(human, verdicts),
        "length_control": length_control(
            human.frame["response_a"].to_list(), human.frame["response_b"].to_list(), verdicts, labels
        ),
        "unscored_reasons": dict(reasons.most_common()),
        "bias": bias,
        "jurors": juror_agreement(rows) if meta.get("kind") == "jury" else None,
        "disagreements": disagreements(rows, human),
        "cost": _cost(rows, usage),
    }


def order_verdicts(rows: list[dict[str, Any]]) -> tuple[list[str | None], list[str | None]] | None:
    """The verdicts of each item shown A-first and B-first (item orientation), from `order: both` rows'
    votes; None when the rows do not carry both orders."""
    ab: list[str | None] = []
    ba: list[str | None] = []
    for row in rows:
        votes = row.get("votes")
        votes = json.loads(votes) if isinstance(votes, str) else votes
        if row.get("order") != "both" or not isinstance(votes, list) or len(votes) != 2:
            return None
        ab.append(votes[0])
        ba.append(votes[1])
    return ab, ba


def rank(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries sorted by kappa, best first (undefined kappas last), each with its `rank`."""
    ordered = sorted(entries, key=lambda e: (e["kappa"] is None, -(e["kappa"] or 0.0), e["setting_id"]))
    return [{"rank": i + 1, **e} for i, e in enumerate(ordered)]


# ---------------------------------------------------------------- existing judgments


def read_judgments(path: str | Path) -> pl.DataFrame:
    """A judgments file (parquet, jsonl, json or csv) with at least `item_id` and `verdict`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"judgments file not found: {path}")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif path.suffix in (".jsonl", ".ndjson"):
            frame = pl.read_ndjson(path, infer_schema_length=None)
        elif path.suffix == ".json":
            frame = pl.DataFrame(json.loads(path.read_text(encoding="utf-8")), infer_schema_length=None)
        elif path.suffix == ".csv":
            frame = pl.read_csv(path)
        else:
            raise UserError(f"{path}: judgments must be .parquet, .jsonl, .json or .csv")
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"{path}: cannot read judgments ({str(exc).splitlines()[0] if str(exc) else exc})"
        ) from None
    missing = [c for c in ("item_id", "verdict") if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path}: judgments lack column(s) {', '.join(missing)}; have {', '.join(frame.columns)}"
        )
    return frame


def _verdict(value: Any, where: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    mapped = {"a": "A", "b": "B", "tie": "tie", "c": "tie", "": None, "none": None, "null": None}.get(
        text.lower(), "?"
    )
    if mapped == "?":
        raise UserError(f"{where}: verdict {value!r} is not A, B, tie or empty")
    return mapped


def _list_value(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    return [str(v) for v in value] if isinstance(value, list) else ([] if value is None else [str(value)])


def score_judgments(
    frame: pl.DataFrame, human: HumanSet, *, n_boot: int = 1000, seed: int = 0, source: str = "judgments"
) -> list[dict[str, Any]]:
    """Agreement entries for judgments already made, one per `judge_id` (no model is called)."""
    known = set(human.frame["id"].to_list())
    if "judge_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(source).alias("judge_id"))
    records = frame.with_columns(pl.col("item_id").cast(pl.String)).to_dicts()
    if not any(r["item_id"] in known for r in records):
        example = records[0]["item_id"] if records else "(none)"
        raise UserError(
            f"no judgment item_id matches the human set's ids (e.g. {example!r} vs {human.frame['id'][0]!r})"
        )
    entries = []
    for judge_id, group in itertools.groupby(
        sorted(records, key=lambda r: str(r["judge_id"])), key=lambda r: str(r["judge_id"])
    ):
        rows = []
        for r in group:
            if r["item_id"] in known:
                rows.append(
                    {**r, "verdict": _verdict(r["verdict"], f"judge {judge_id}, item {r['item_id']}")}
                )
        ids = {r["item_id"] for r in rows}
        subset = HumanSet(
            human.name, human.frame.filter(pl.col("id").is_in(list(ids))), human.annotators, human.sample
        )
        first = rows[0]
        meta = {
            "setting_id": judge_id,
            "kind": first.get("kind") or "judge",
            "models": _list_value(first.get("models")),
            "protocol": first.get("protocol"),
            "scale": first.get("scale"),
            "order": first.get("order"),
            "structured": None,
            "reducer": None,
        }
        ordered = {r["item_id"]: r for r in rows}
        aligned = [ordered[i] for i in subset.frame["id"]]
        # Judgments made in both orders carry both verdicts in `votes`: position bias comes for free.
        per_order = (
            order_verdicts(aligned) if all(r.get("kind", "judge") != "jury" for r in aligned) else None
        )
        entries.append(score_setting(meta, aligned, subset, per_order=per_order, n_boot=n_boot, seed=seed))
    return rank(entries)
