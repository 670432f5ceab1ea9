"""The judge-agreement report: self-contained, escaped, and carrying the figures of agreement.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from judges.calibration.agreement import build_agreement
from judges.humans.human_sets import load_human_set
from judges.metrics.scoring import score_setting
from judges.report import PUBLISHED, render_report

SCRIPT = "<script>alert('judge')</script>"
IMG = '<img src="x" onerror="alert(2)">'


def hostile_set(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.jsonl"
    rows = [
        {
            "id": f"x{i}",
            "prompt": f"Question {i} {IMG}",
            "response_a": f"Answer A {i} {SCRIPT}",
            "response_b": f"Answer B {i}",
            "labels": ["A", "A", "B"] if i % 2 else ["B", "B", "tie"],
        }
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows_for(human: Any, verdicts: list[str | None], model: str) -> list[dict[str, Any]]:
    return [
        {
            "item_id": item_id,
            "verdict": v,
            "raw": json.dumps([f"I pick {v}. {SCRIPT}"]),
            "unscored_reason": None if v else f"invalid_verdict {SCRIPT}",
            "latency_s": 0.5,
            "cost_usd": 0.001,
            "prompt_tokens": 100,
            "completion_tokens": 20,
        }
        for item_id, v in zip(human.frame["id"], verdicts, strict=True)
    ]


@pytest.fixture()
def agreement(tmp_path: Path) -> dict[str, Any]:
    human = load_human_set(hostile_set(tmp_path))
    entries = []
    for rank, (model, verdicts) in enumerate(
        [
            (f"openai/evil{SCRIPT}", ["B", "A", "B", "A", "tie", "A", None, "B"]),
            ("openai/plain", ["A", "A", "A", "A", "A", "A", "A", "A"]),
        ],
        start=1,
    ):
        meta = {
            "setting_id": f"judge[{model}]/combined10/fixed",
            "kind": "judge",
            "models": [model],
            "protocol": "combined",
            "scale": 10,
            "order": "fixed",
            "structured": False,
            "reducer": None,
        }
        entries.append(
            {"rank": rank, **score_setting(meta, rows_for(human, verdicts, model), human, n_boot=50)}
        )
    return build_agreement(human, entries, run_id="calibrate-test", source="models")


def test_report_is_self_contained_and_escapes_untrusted_text(
    tmp_path: Path, agreement: dict[str, Any]
) -> None:
    paths = render_report(agreement, tmp_path / "out")
    html = paths["html"].read_text(encoding="utf-8")
    # No external asset, no script at all: the page is one file that renders offline.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    assert SCRIPT not in html and IMG not in html
    assert "&lt;script&gt;alert(" in html and "&lt;img src=" in html  # the tags show as text
    assert html.count("<svg") >= 3  # forest plot, confusion matrices, bias
    # The markdown carries no raw HTML either.
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "<script" not in md and "&lt;script&gt;" in md


def test_report_carries_the_figures(tmp_path: Path, agreement: dict[str, Any]) -> None:
    html = render_report(agreement, tmp_path)["html"].read_text(encoding="utf-8")
    best = agreement["settings"][0]
    assert f"{best['kappa']:.3f}" in html
    ceiling = agreement["human_ceiling"]
    assert ceiling is not None and f"{ceiling['fleiss_kappa']:.3f}" in html
    # Published figures are present and labelled as such, never as this run's.
    assert "not measured here" in html and f"{PUBLISHED[0][1]:.3f}" in html
    assert 'id="injection"' not in html
    # The judge's own words appear in the disagreement examples, escaped.
    assert "I pick" in html and 'id="examples"' in html


def test_injection_section_renders_when_the_file_is_there(tmp_path: Path, agreement: dict[str, Any]) -> None:
    (tmp_path / "injection.json").write_text(
        json.dumps(
            {
                "protocols": {
                    "combined": {"before": 0.42, "after": 0.05, "n": 40},
                    SCRIPT: {"before": 1, "after": 0, "n": 2},
                }
            }
        )
    )
    paths = render_report(agreement, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert 'id="injection"' in html and "42%" in html and "5%" in html and "<script" not in html
    assert "| combined | 42% | 5% | 40 |" in paths["markdown"].read_text(encoding="utf-8")
    (tmp_path / "injection.json").write_text("{not json")
    html = render_report(agreement, tmp_path)["html"].read_text(encoding="utf-8")
    assert "injection.json could not be read" in html


def test_gate_banner(tmp_path: Path, agreement: dict[str, Any]) -> None:
    gate = {
        "enabled": True,
        "passed": False,
        "error": None,
        "advice": "Change the judge.",
        "checks": [{"name": "min_kappa", "value": 0.005, "threshold": 0.4, "passed": False, "note": None}],
    }
    paths = render_report(agreement, tmp_path, gate=gate)
    html = paths["html"].read_text(encoding="utf-8")
    assert "Quality gate FAILED" in html and "not approved" in html and "0.005" in html and "0.400" in html
    assert "## Quality gate: FAILED" in paths["markdown"].read_text(encoding="utf-8")
