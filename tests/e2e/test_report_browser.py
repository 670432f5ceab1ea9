"""The judge-agreement report in a real (headless) Chromium: it renders, runs nothing, fetches nothing.

Needs Debian's Chromium (`apt-get install -y chromium`) and the `playwright` Python package; the
browser Playwright would download is never used. The screenshot lands in test-artifacts/report.png.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from factory.testing import FakeLLMServer, Rule
from judges.calibration.calibrate import calibrate
from judges.calibration.config import CalibrationConfig
from judges.calibration.outputs import write_outputs

pytestmark = pytest.mark.browser

HOSTILE = "<script>alert('judge')</script><img src=x onerror=alert(2)>"

if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_report(browser: Any, html: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Load the report; return what a person would see and what the page tried to do."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    seen: dict[str, Any] = {"dialogs": [], "requests": [], "errors": []}
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    seen["scripts"] = page.evaluate("document.querySelectorAll('script').length")
    seen["headings"] = page.locator("h2").all_inner_texts()
    seen["svg_sizes"] = page.evaluate(
        "[...document.querySelectorAll('svg')].map(s => { const r = s.getBoundingClientRect();"
        " return [r.width, r.height]; })"
    )
    seen["text"] = page.inner_text("body")
    if screenshot is not None:
        screenshot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return seen


def scripted(body: dict[str, Any]) -> str:
    # A judge whose reasoning carries markup; it prefers A on even-length prompts.
    text = body["messages"][-1]["content"]
    a, b = (8, 4) if len(text) % 2 else (4, 8)
    return (
        f"### Evaluation Evidence:\n{HOSTILE}\n### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"
    )


def test_report_renders_in_chromium(tmp_path: Path, browser: Any) -> None:
    data = tmp_path / "human.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"x{i}",
                    "prompt": f"Question {i}: {HOSTILE}" + "?" * (i % 3),
                    "response_a": f"Answer {i} {HOSTILE}",
                    "response_b": "Short.",
                    "labels": ["A", "B", "A"] if i % 3 else ["B", "B", "tie"],
                }
            )
            + "\n"
            for i in range(24)
        ),
        encoding="utf-8",
    )
    with FakeLLMServer(rules=[Rule(reply=scripted)]) as server:
        result = calibrate(
            CalibrationConfig(
                human_set=str(data),
                models=["openai/j1", "openai/j2"],
                api_base=server.base_url,
                orders=["fixed", "both"],
                jury_subsets=True,
                output_dir=str(tmp_path / "out"),
                bootstrap=100,
            )
        )
    (result.run_dir / "injection.json").write_text(
        json.dumps({"protocols": {"combined": {"before": 0.35, "after": 0.05, "n": 24}}})
    )
    gate = {
        "enabled": True,
        "passed": False,
        "error": None,
        "advice": "Use a capable judge model.",
        "checks": [
            {
                "name": "min_kappa",
                "value": result.agreement["settings"][0]["kappa"],
                "threshold": 0.4,
                "passed": False,
                "note": "scripted judge",
            }
        ],
    }
    paths = write_outputs(result.run_dir, result.agreement, gate=gate)

    seen = open_report(browser, paths["html"], ARTIFACTS / "report.png")
    assert seen["dialogs"] == [] and seen["scripts"] == 0 and seen["errors"] == []
    assert seen["requests"] == [paths["html"].as_uri()]  # nothing fetched beyond the file itself
    assert {
        "What this run shows",
        "Settings ranked by agreement with humans",
        "Kappa against the human ceiling",
        "Confusion matrices",
        "Bias",
        "Cost and latency",
        "Prompt injection",
    } <= set(seen["headings"])
    assert all(w > 100 and h > 50 for w, h in seen["svg_sizes"]) and len(seen["svg_sizes"]) >= 4
    assert "Quality gate FAILED" in seen["text"] and "<script>alert('judge')</script>" in seen["text"]
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
