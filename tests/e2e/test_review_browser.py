"""The review loop in a real (headless) Chromium: a build whose jury splits queues its contested pairs,
a person labels them on the annotation page, and `factory annotate RUN --apply` rebuilds the dataset
from the labels without a model call.

Needs Debian's Chromium (`apt-get install -y chromium`) and the `playwright` Python package.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS
from _reliability import run_cli
from _review import build, dpo_rows, server

from factory.annotate import AnnotationServer, load_items, open_session

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")


def test_contested_pairs_labelled_in_the_browser_rebuild_the_dataset(tmp_path: Path) -> None:
    with server() as fake:
        run_dir = build(tmp_path, fake.base_url)
        queue = [r["pair_id"] for r in pl.read_parquet(run_dir / "review_queue.parquet").to_dicts()]
        items = {item.id: item for item in load_items(run_dir)}
        assert len(queue) == 2 and len(items) == 4
        # the person prefers the judge's rejected answer on the first contested pair, calls the second a tie
        wanted = {queue[0]: items[queue[0]].response_b, queue[1]: None}
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            with AnnotationServer(open_session(run_dir, "ana")) as page_server:
                page = browser.new_page()
                page.goto(page_server.page_url("ana"))
                progress = page.locator("#progress-text")
                sync_api.expect(progress).to_have_text("0 of 4 done")
                for done in range(1, 3):
                    prompt = page.locator("#prompt").inner_text()
                    pair_id = next(pid for pid in queue if items[pid].prompt == prompt)
                    better = wanted.pop(pair_id)
                    if better is None:
                        page.keyboard.press("3")
                    else:
                        page.keyboard.press("1" if page.locator("#left").inner_text() == better else "2")
                    sync_api.expect(progress).to_have_text(f"{done} of 4 done")
                page.close()
            browser.close()
        assert wanted == {}  # the page showed the two contested pairs first
        calls = fake.stats.calls
        result = run_cli("annotate", str(run_dir), "--apply")
        assert result.returncode == 0, result.stderr
        assert fake.stats.calls == calls  # no model was called
    rows = {r["pair_id"]: r for r in dpo_rows(run_dir)}
    assert set(rows) == set(items) - {queue[1]}
    assert rows[queue[0]]["chosen"][0]["content"] == items[queue[0]].response_b
    assert rows[queue[0]]["rejected"][0]["content"] == items[queue[0]].response_a
    assert rows[queue[0]]["decided_by"] == "human"
    pairs = {p["pair_id"]: p for p in pl.read_parquet(run_dir / "pairs.parquet").to_dicts()}
    human = json.loads(pairs[queue[0]]["provenance"])["human"]
    assert (human["decided_by"], human["label"], human["annotators"]) == ("human", "B", ["ana"])
    assert human["time"]
    review = json.loads((run_dir / "manifest.json").read_text())["review"]
    assert (review["queued"], review["reviewed"], review["flipped"], review["dropped"], review["kept"]) == (
        2,
        2,
        1,
        1,
        0,
    )
    calibration = [
        json.loads(line) for line in (run_dir / "human_calibration.jsonl").read_text().splitlines()
    ]
    assert {r["id"] for r in calibration} == set(queue)
