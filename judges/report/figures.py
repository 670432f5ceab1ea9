"""What the judge-agreement report shows: agreement.json read into the figures, texts and charts that
the HTML page and the markdown both render (so the two can never disagree).

Setting ids and reasons carry model names and model output, which are untrusted: the SVG builders
escape what they draw, and each renderer escapes what it writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from judges.report.svg import (
    BLUE,
    GREEN,
    ORANGE,
    ForestRow,
    RatePoint,
    confusion_heatmap,
    forest_plot,
    hbars,
    rate_plot,
)

# Published figures, for context only: never mixed with what this run measured.
PUBLISHED_SOURCE = (
    "Fellowship of the LLMs (arXiv 2408.08688, Table 3): the 999 PandaLM test pairs, 3-class "
    "kappa against the human majority, fixed order, combined scoring out of 10"
)
PUBLISHED: tuple[tuple[str, float, str], ...] = (
    ("GPT-4o", 0.688, "arXiv 2408.08688"),
    ("best jury", 0.673, "arXiv 2408.08688"),
    ("best debate (GPT-4o)", 0.654, "arXiv 2408.08688"),
    ("GPT-4o-mini", 0.613, "arXiv 2408.08688"),
    ("Llama-3.1-70B", 0.597, "arXiv 2408.08688"),
    ("Gemma-2-9B", 0.595, "arXiv 2408.08688"),
    ("Gemma-2-27B", 0.586, "arXiv 2408.08688"),
    ("Llama-3.1-8B", 0.523, "arXiv 2408.08688"),
    ("GPT-3.5-turbo", 0.476, "PandaLM repository"),
    ("PandaLM-7B", 0.435, "PandaLM repository"),
)
PUBLISHED_HUMAN = (0.852, 0.879)  # PandaLM annotator pairs, recomputed from the file (0.852 / 0.879 / 0.862)
MAX_PLOTTED = 40  # settings drawn in each chart; the tables and agreement.json hold all of them
MAX_CONFUSIONS = 8
BIAS_SERIES = (
    ("prefers the longer answer", BLUE),
    ("prefers the first position", ORANGE),
    ("prefers its own model", GREEN),
)


def band(kappa: float | None) -> str:
    """Landis & Koch's reading of a kappa value."""
    if kappa is None or math.isnan(kappa):
        return "undefined"
    for edge, name in (
        (0.0, "poor"),
        (0.2, "slight"),
        (0.4, "fair"),
        (0.6, "moderate"),
        (0.8, "substantial"),
    ):
        if kappa <= edge:
            return name
    return "almost perfect"


def fmt(value: Any, digits: int = 3) -> str:
    """A number for people: fixed digits, an em dash for missing or undefined values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def ci_text(entry: dict[str, Any]) -> str:
    lo, hi = entry.get("ci95") or (None, None)
    return "—" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"


_BRACKET = re.compile(r"\[([^\]]*)\]")


def short_label(entry: dict[str, Any]) -> str:
    """A chart label: rank, then the setting id with model strings cut to their last path part
    (`jury[openai/a+openai/b]` -> `jury[a+b]`), so jury members stay readable in a narrow column."""

    def models(match: re.Match[str]) -> str:
        return "[" + "+".join(m.rsplit("/", 1)[-1] for m in match.group(1).split("+")) + "]"

    return f"{entry.get('rank', '')}. {_BRACKET.sub(models, str(entry['setting_id']), count=1)}"


def _is_pandalm(agreement: dict[str, Any]) -> bool:
    return "pandalm" in str(agreement["human_set"].get("name", "")).lower()


def _ceiling(agreement: dict[str, Any]) -> tuple[tuple[float, float] | None, str]:
    ceiling = agreement.get("human_ceiling")
    if ceiling and ceiling.get("min_pairwise_kappa") is not None:
        return (ceiling["min_pairwise_kappa"], ceiling["max_pairwise_kappa"]), "human-human, this set"
    if _is_pandalm(agreement):
        return PUBLISHED_HUMAN, "human-human (published)"
    return None, ""


def tie_share(entry: dict[str, Any]) -> float | None:
    counts = (entry.get("label_counts") or {}).get("judge") or {}
    scored = sum(counts.get(k, 0) for k in ("A", "B", "tie"))
    return counts.get("tie", 0) / scored if scored else None


def gate_verdict(gate: Mapping[str, Any]) -> str:
    """pass / fail / undecided (a gate written before the verdict existed: from `passed`)."""
    return str(gate.get("verdict") or ("pass" if gate.get("passed") else "fail"))


GATE_HEADING = {"pass": "PASSED", "fail": "FAILED", "undecided": "UNDECIDED"}


def decision_text(entry: dict[str, Any]) -> str:
    """'pass', 'fail' or 'undecided: need n >= K' for a setting's kappa against the threshold."""
    from judges.calibration.decision import describe

    decision = entry.get("decision")
    return describe(decision) if decision else "—"


def recall(entry: dict[str, Any], label: str) -> float | None:
    return (entry.get("class_recall") or {}).get(label)


def _sample_line(agreement: dict[str, Any]) -> str | None:
    sample = agreement.get("sample")
    if not sample or sample.get("method") == "all":
        return None
    shares = sample["label_shares"]

    def show(which: str) -> str:
        return "/".join(f"{shares[which][k]:.0%}" for k in ("A", "B", "tie"))

    return (
        f"The {sample['n']} items are a sample of the set's {sample['n_set']} (seed {sample['seed']}), "
        f"stratified by label (A/B/tie {show('sample')} vs the set's {show('set')}) and spread over "
        f"{sample['prompts']['sample']} prompts (at most {sample['prompts']['max_items_per_prompt']} items each)."
    )


def lead(agreement: dict[str, Any]) -> dict[str, Any]:
    """The setting the report leads with: the one a quality gate checked (`focus`), else the best."""
    entries = agreement["settings"]
    focus = agreement.get("focus")
    return next((e for e in entries if e["setting_id"] == focus), entries[0])


def _findings(agreement: dict[str, Any], gate: Mapping[str, Any] | None) -> list[str]:
    """Plain sentences a reader needs before the tables."""
    entries = agreement["settings"]
    out: list[str] = []
    if not entries:
        return ["No setting was scored."]
    best = lead(agreement)
    which = "The gated setting" if agreement.get("focus") else "Best setting"
    ceiling, _ = _ceiling(agreement)
    line = (
        f"{which}: {best['setting_id']} with kappa {fmt(best['kappa'])} "
        f"(95% interval {ci_text(best)}, {band(best['kappa'])} agreement) on {best['n']} items"
    )
    if ceiling:
        line += (
            f"; humans agree with each other at {ceiling[0]:.2f}–{ceiling[1]:.2f} on the same kind of items"
        )
    out.append(line + ".")
    sample = _sample_line(agreement)
    if sample:
        out.append(sample)
    if best.get("decision"):
        decision = best["decision"]
        out.append(
            f"Against min_kappa {fmt(decision['threshold'], 2)} through its 95% interval: "
            f"{decision_text(best)}."
        )
    versus = best.get("vs_baselines") or {}
    if versus.get("best"):
        out.append(
            f"The best trivial baseline on the same items is '{versus['best']}' at kappa "
            f"{fmt(versus['best_kappa'])}: the setting {'beats' if versus['beaten'] else 'does NOT beat'} it "
            f"(margin {fmt(versus['margin'])})."
        )
    if recall(best, "tie") == 0.0:
        out.append("The setting never gives the human label on tied items (tie recall 0).")
    likeness = best.get("human_likeness") or {}
    if likeness.get("z") is not None:
        out.append(
            f"Human-likeness (Judge's Verdict): z = {likeness['z']:.2f}, {likeness['band']} (judge-annotator "
            f"kappa {likeness['judge_mean_kappa']:.3f} vs annotator pairs {likeness['human_mean_kappa']:.3f})."
        )
    ties = tie_share(best)
    if ties is not None and ties > 0.5:
        counts = best["label_counts"]["judge"]
        out.append(
            f"{counts['tie']} of {best['n']} scored verdicts of this setting are ties: the judge rarely "
            "separates the two answers, which is what drives its kappa towards 0."
        )
    if best.get("n_unscored"):
        out.append(
            f"{best['n_unscored']} verdicts of this setting could not be read (unscored); they are left "
            "out of kappa and counted separately."
        )
    if _is_pandalm(agreement):
        out.append(
            "For scale: capable judges reached 0.52–0.69 on the full PandaLM set in published work "
            "(see 'Published reference figures'; those are not measured here)."
        )
    if gate is not None and gate.get("enabled", True):
        out.append(
            f"Quality gate {GATE_HEADING[gate_verdict(gate)]}"
            + (
                ""
                if gate.get("passed")
                else ": the data is written but not approved for training or publishing."
            )
        )
    return out


def context(
    agreement: dict[str, Any], gate: Mapping[str, Any] | None = None, injection: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the HTML template and the markdown need, with the charts drawn."""
    entries = agreement["settings"]
    plotted = entries[:MAX_PLOTTED]
    ceiling, ceiling_label = _ceiling(agreement)
    rows = [ForestRow(short_label(e), e["kappa"], *(e.get("ci95") or (None, None))) for e in plotted]
    if _is_pandalm(agreement):
        rows += [ForestRow(f"published: {name}", value, published=True) for name, value, _ in PUBLISHED]
    bias_rows = []
    for e in plotted:
        b = e.get("bias") or {}
        position, length = b.get("position") or {}, b.get("length") or {}
        own = (b.get("self_preference") or [{}])[0]
        bias_rows.append(
            (
                short_label(e),
                [
                    RatePoint(
                        "prefers the longer answer", length.get("longer_preferred_rate"), length.get("n", 0)
                    ),
                    RatePoint(
                        "prefers the first position",
                        position.get("first_position_rate"),
                        position.get("n_decisive", 0),
                    ),
                    RatePoint("prefers its own model", own.get("own_win_rate"), own.get("n", 0)),
                ],
            )
        )
    return {
        "a": agreement,
        "gate": gate,
        "injection": injection,
        "entries": entries,
        "lead": lead(agreement) if entries else None,
        "findings": _findings(agreement, gate),
        "ceiling": agreement.get("human_ceiling"),
        "ceiling_range": ceiling,
        "ceiling_label": ceiling_label,
        "published": PUBLISHED,
        "published_source": PUBLISHED_SOURCE,
        "is_pandalm": _is_pandalm(agreement),
        "truncated": max(0, len(entries) - MAX_PLOTTED),
        "forest": forest_plot(rows, ceiling, ceiling_label) if rows else None,
        "confusions": [
            (e, confusion_heatmap(e["confusion"], e["setting_id"])) for e in entries[:MAX_CONFUSIONS]
        ],
        "bias_plot": rate_plot(bias_rows, BIAS_SERIES) if bias_rows else None,
        "bias_series": [
            (name, color)
            for name, color in BIAS_SERIES
            if any(p.series == name and p.value is not None for _, points in bias_rows for p in points)
        ],
        "cost_plot": hbars([(short_label(e), e["cost"]["cost_usd"]) for e in plotted], "USD")
        if any(e["cost"]["cost_usd"] for e in plotted)
        else None,
        "latency_plot": hbars(
            [(short_label(e), e["cost"]["latency_mean_s"] or 0.0) for e in plotted],
            "s / item",
            color="#7c3aed",
        )
        if any(e["cost"]["latency_mean_s"] for e in plotted)
        else None,
        "juries": [e for e in entries if e.get("jurors")],
        "has_self": any((e.get("bias") or {}).get("self_preference") for e in entries),
        "has_position": any((e.get("bias") or {}).get("position") for e in entries),
        "sample": agreement.get("sample"),
        "baselines": agreement.get("baselines") or [],
        "gate_verdict": gate_verdict(gate) if gate is not None else None,
        "gate_heading": GATE_HEADING,
        "decision_text": decision_text,
        "recall": recall,
        "length_cells": length_cells,
        "fmt": fmt,
        "pct": pct,
        "ci": ci_text,
        "band": band,
        "tie_share": tie_share,
    }


def length_cells(entry: dict[str, Any]) -> dict[str, Any]:
    """The length-control figures of a setting, flat (missing figures as None)."""
    lc = entry.get("length_control") or {}
    agree = lc.get("agreement") or {}
    wins = lc.get("win_rate_a") or {}
    judge, human = wins.get("judge") or {}, wins.get("human") or {}
    return {
        "agreement": agree.get("raw"),
        "agreement_lc": agree.get("length_controlled"),
        "longer": agree.get("accuracy_humans_chose_longer"),
        "shorter": agree.get("accuracy_humans_chose_shorter"),
        "a_wins": judge.get("raw"),
        "a_wins_lc": judge.get("length_controlled"),
        "human_a_wins_lc": human.get("length_controlled"),
        "coef": judge.get("length_coef"),
        "human_coef": human.get("length_coef"),
    }
