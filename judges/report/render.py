"""Render agreement.json into the judge-agreement report: one self-contained HTML file and markdown.

The HTML has no external asset, script or font: styles are inline in the template and charts are
inline SVG (`judges.report.svg`). Every text that reaches the page is escaped by Jinja's
autoescape or by the SVG builders, because setting ids and reasons carry model names and model
output, which are untrusted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory._util.atomic_files import atomic_write_text
from factory._util.templates import template_env
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


def _ci(entry: dict[str, Any]) -> str:
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


def _tie_share(entry: dict[str, Any]) -> float | None:
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


def _recall(entry: dict[str, Any], label: str) -> float | None:
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
        f"(95% interval {_ci(best)}, {band(best['kappa'])} agreement) on {best['n']} items"
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
    if _recall(best, "tie") == 0.0:
        out.append("The setting never gives the human label on tied items (tie recall 0).")
    likeness = best.get("human_likeness") or {}
    if likeness.get("z") is not None:
        out.append(
            f"Human-likeness (Judge's Verdict): z = {likeness['z']:.2f}, {likeness['band']} (judge-annotator "
            f"kappa {likeness['judge_mean_kappa']:.3f} vs annotator pairs {likeness['human_mean_kappa']:.3f})."
        )
    ties = _tie_share(best)
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


def _injection(folder: Path) -> dict[str, Any] | None:
    path = folder / "injection.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [
            {
                "protocol": str(name),
                "before": _rate(v.get("before")),
                "after": _rate(v.get("after")),
                "n": v.get("n"),
            }
            for name, v in data["protocols"].items()
        ]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        return {"error": f"injection.json could not be read ({type(exc).__name__}: {exc})", "rows": []}
    return {"error": None, "rows": rows}


def _rate(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
        "recall": _recall,
        "length_cells": length_cells,
        "fmt": fmt,
        "pct": pct,
        "ci": _ci,
        "band": band,
        "tie_share": _tie_share,
    }


def render_html(
    agreement: dict[str, Any], gate: Mapping[str, Any] | None = None, injection: dict[str, Any] | None = None
) -> str:
    """The report as one self-contained HTML document."""
    template = template_env(Path(__file__).parent, html=True).get_template("template.html.j2")
    return template.render(**context(agreement, gate, injection))


def _md(value: Any) -> str:
    # Cells of a markdown table: no pipes, no raw HTML (untrusted text), one line.
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(
    agreement: dict[str, Any], gate: Mapping[str, Any] | None = None, injection: dict[str, Any] | None = None
) -> str:
    """The same figures as the HTML report, as markdown tables."""
    ctx = context(agreement, gate, injection)
    hs = agreement["human_set"]
    counts = hs["label_counts"]
    lines = [
        f"# Judge agreement: {_md(hs['name'])}",
        "",
        (
            f"Run `{_md(agreement['run_id'])}`, {_md(agreement['created_at'])}; {hs['n_items']} human-labelled "
            f"items (labels A {counts['A']}, B {counts['B']}, tie {counts['tie']})."
        ),
        "",
    ]
    lines += [f"- {_md(f)}" for f in ctx["findings"]] + [""]
    if gate is not None:
        lines += ["## Quality gate: " + GATE_HEADING[gate_verdict(gate)], ""]
        if gate.get("error"):
            lines += [f"Error: {_md(gate['error'])}", ""]
        lines += _table(
            ["check", "value", "interval", "threshold", "result", "note"],
            [
                [
                    c["name"],
                    fmt(c["value"]),
                    _ci({"ci95": c.get("interval")}),
                    fmt(c["threshold"]),
                    c.get("status") or ("pass" if c["passed"] else "fail"),
                    c.get("note") or "",
                ]
                for c in gate.get("checks", [])
            ],
        )
    lines += ["## Settings ranked by kappa", ""]
    lines += _table(
        [
            "#",
            "setting",
            "kind",
            "kappa",
            "95% CI",
            "kappa (no ties)",
            "accuracy",
            "n",
            "unscored",
            "ties",
            "cost USD",
            "latency s/item",
        ],
        [
            [
                e["rank"],
                e["setting_id"],
                e["kind"],
                fmt(e["kappa"]),
                _ci(e),
                fmt(e["kappa_no_ties"]),
                fmt(e["accuracy"]),
                e["n"],
                e["n_unscored"],
                pct(_tie_share(e)),
                fmt(e["cost"]["cost_usd"], 4),
                fmt(e["cost"]["latency_mean_s"], 2),
            ]
            for e in agreement["settings"]
        ],
    )
    lines += ["## Against the threshold, the baselines and the humans", ""]
    lines += _table(
        ["setting", "verdict", "vs best baseline", "recall A", "recall B", "recall tie", "human z", "band"],
        [
            [
                e["setting_id"],
                decision_text(e),
                fmt((e.get("vs_baselines") or {}).get("margin")),
                fmt(_recall(e, "A"), 2),
                fmt(_recall(e, "B"), 2),
                fmt(_recall(e, "tie"), 2),
                fmt((e.get("human_likeness") or {}).get("z"), 2),
                (e.get("human_likeness") or {}).get("band") or "—",
            ]
            for e in agreement["settings"]
        ],
    )
    if ctx["baselines"]:
        lines += ["## Trivial baselines on the same items", ""]
        lines += _table(
            ["baseline", "rule", "kappa", "95% CI", "accuracy"],
            [
                [b["name"], b["description"], fmt(b["kappa"]), _ci(b), fmt(b["accuracy"])]
                for b in ctx["baselines"]
            ],
        )
    lines += ["## Length control", ""]
    lines += _table(
        [
            "setting",
            "agreement",
            "agreement, length-controlled",
            "acc. humans chose longer",
            "acc. humans chose shorter",
            "A wins (judge)",
            "A wins LC (judge)",
            "A wins LC (humans)",
            "length coef judge",
            "length coef humans",
        ],
        [_length_row(e) for e in agreement["settings"]],
    )
    sample = ctx["sample"]
    if sample:
        lines += ["## Sample", ""]
        lines += [
            (
                f"Method: {_md(sample['method'])}; seed {sample['seed']}; {sample['n']} of {sample['n_set']} "
                f"items; item ids sha256 `{sample['item_ids_sha256'][:16]}`; prompts "
                f"{sample['prompts']['sample']} of {sample['prompts']['set']} (at most "
                f"{sample['prompts']['max_items_per_prompt']} items each)."
            ),
            "",
        ]
        lines += _table(
            ["label", "set", "sample"],
            [
                [
                    k,
                    f"{sample['label_counts']['set'][k]} ({pct(sample['label_shares']['set'][k])})",
                    f"{sample['label_counts']['sample'][k]} ({pct(sample['label_shares']['sample'][k])})",
                ]
                for k in ("A", "B", "tie")
            ],
        )
    ceiling = agreement.get("human_ceiling")
    if ceiling:
        lines += ["## Human-human agreement (the ceiling)", ""]
        lines += _table(
            ["annotators", "Cohen's kappa", "items"],
            [[f"{p['a']} vs {p['b']}", fmt(p["kappa"]), p["n"]] for p in ceiling["pairwise"]],
        )
        lines += [
            f"Fleiss' kappa over {ceiling['n_items_complete']} fully labelled items: {fmt(ceiling['fleiss_kappa'])}",
            "",
        ]
    lines += ["## Bias", ""]
    bias_rows = []
    for e in agreement["settings"]:
        b = e.get("bias") or {}
        position, length = b.get("position") or {}, b.get("length") or {}
        own = (b.get("self_preference") or [{}])[0]
        bias_rows.append(
            [
                e["setting_id"],
                fmt(position.get("flip_rate")),
                fmt(position.get("inconsistent_rate")),
                fmt(position.get("first_position_rate")),
                fmt(length.get("longer_preferred_rate")),
                length.get("n", 0),
                fmt(own.get("own_win_rate")),
                fmt(own.get("human_own_win_rate")),
            ]
        )
    lines += _table(
        [
            "setting",
            "flip rate",
            "inconsistent",
            "first position",
            "longer preferred",
            "n (length)",
            "own model wins",
            "humans: own model wins",
        ],
        bias_rows,
    )
    if ctx["juries"]:
        lines += ["## Jurors", ""]
        lines += _table(
            ["jury", "Krippendorff's alpha", "mean inter-juror kappa"],
            [
                [
                    e["setting_id"],
                    fmt(e["jurors"]["krippendorff_alpha"]),
                    fmt(e["jurors"]["mean_inter_juror_kappa"]),
                ]
                for e in ctx["juries"]
            ],
        )
    if injection is not None:
        lines += ["## Prompt injection (attack success rate)", ""]
        if injection.get("error"):
            lines += [_md(injection["error"]), ""]
        lines += _table(
            ["protocol", "before", "after", "n"],
            [[r["protocol"], pct(r["before"]), pct(r["after"]), r["n"]] for r in injection["rows"]],
        )
    lines += ["## Published reference figures (not measured here)", "", _md(PUBLISHED_SOURCE) + ".", ""]
    lines += _table(["judge", "kappa", "source"], [[n, f"{v:.3f}", s] for n, v, s in PUBLISHED])
    return "\n".join(lines)


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


def _length_row(entry: dict[str, Any]) -> list[Any]:
    cells = length_cells(entry)
    return [
        entry["setting_id"],
        *(
            fmt(cells[k], 2)
            for k in (
                "agreement",
                "agreement_lc",
                "longer",
                "shorter",
                "a_wins",
                "a_wins_lc",
                "human_a_wins_lc",
                "coef",
                "human_coef",
            )
        ),
    ]


def render_report(
    agreement: dict[str, Any], folder: str | Path, *, gate: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write `report.html` and `report.md` into `folder` (reading `injection.json` there if present)."""
    folder = Path(folder)
    injection = _injection(folder)
    html_path, md_path = folder / "report.html", folder / "report.md"
    atomic_write_text(html_path, render_html(agreement, gate, injection))
    atomic_write_text(md_path, render_markdown(agreement, gate, injection))
    return {"html": html_path, "markdown": md_path}
