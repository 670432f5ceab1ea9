"""The judge-agreement report as markdown: the same figures as the HTML page, as tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from judges.report.figures import (
    GATE_HEADING,
    PUBLISHED,
    PUBLISHED_SOURCE,
    ci_text,
    context,
    decision_text,
    fmt,
    gate_verdict,
    length_cells,
    pct,
    recall,
    tie_share,
)


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
                    ci_text({"ci95": c.get("interval")}),
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
                ci_text(e),
                fmt(e["kappa_no_ties"]),
                fmt(e["accuracy"]),
                e["n"],
                e["n_unscored"],
                pct(tie_share(e)),
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
                fmt(recall(e, "A"), 2),
                fmt(recall(e, "B"), 2),
                fmt(recall(e, "tie"), 2),
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
                [b["name"], b["description"], fmt(b["kappa"]), ci_text(b), fmt(b["accuracy"])]
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
