"""The annotation page in a real (headless) Chromium: keyboard labelling, resume after reload, escaping.

Needs Debian's Chromium (`apt-get install -y chromium`) and the `playwright` Python package; the
browser Playwright would download is never used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from factory.annotate import (
    AnnotationServer,
    build_queue,
    fold_labels,
    load_items,
    open_session,
    shown_order,
    write_canonical,
)

pytestmark = pytest.mark.browser

KEYS = ["1", "2", "3", "a", "t"]  # left, right, tie, left, tie
KEY_CHOICE = {"1": "left", "a": "left", "2": "right", "b": "right", "3": "tie", "t": "tie"}

if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def write_items(path: Path, n: int, response_b: str | None = None) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = {
                "id": f"q{i}",
                "prompt": f"Question {i}: name a prime number larger than {i * 10}.",
                "response_a": f"{i * 10 + 1} might be one; check it.\nA prime has exactly two divisors.",
                "response_b": response_b if response_b is not None else f"The answer is {i * 10 + 3}.",
            }
            fh.write(json.dumps(row) + "\n")
    return path


def label_in_browser(browser: object, tmp_path: Path, keys: list[str] = KEYS) -> tuple[Path, Path]:
    """Serve an 8-item calibration file, label ``len(keys)`` items by keyboard, reload, check the page
    resumes at the next item in queue order, then fold the labels. Returns (labels file, canonical file);
    the canonical file is what ``factory calibrate`` reads."""
    source = write_items(tmp_path / "calib.jsonl", 8)
    queue = build_queue(load_items(source))
    with AnnotationServer(open_session(source, "ana")) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
        page.goto(server.page_url("ana"))
        progress = page.locator("#progress-text")
        sync_api.expect(progress).to_have_text("0 of 8 done")
        for k, key in enumerate(keys, start=1):
            sync_api.expect(page.locator("#prompt")).to_have_text(queue[k - 1].prompt)
            page.keyboard.press(key)
            sync_api.expect(progress).to_have_text(f"{k} of 8 done")
        page.reload()
        sync_api.expect(progress).to_have_text(f"{len(keys)} of 8 done")
        sync_api.expect(page.locator("#prompt")).to_have_text(queue[len(keys)].prompt)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "annotate.png"))
        page.close()
        labels = server.session.labels_path
    canonical = tmp_path / "human_calibration.jsonl"
    write_canonical(labels, canonical)
    return labels, canonical


def test_keyboard_labels_resume_after_reload_and_fold_to_canonical(browser: object, tmp_path: Path) -> None:
    labels, canonical = label_in_browser(browser, tmp_path)
    queue = build_queue(load_items(tmp_path / "calib.jsonl"))
    rows = [json.loads(line) for line in canonical.read_text().splitlines()]
    assert [r["id"] for r in rows] == [item.id for item in queue[: len(KEYS)]]
    for row, key in zip(rows, KEYS):
        assert set(row) == {"id", "prompt", "response_a", "response_b", "labels"}
        (entry,) = row["labels"]
        assert set(entry) == {"annotator", "label", "time", "shown_order", "note"}
        order = shown_order("ana", row["id"])
        expected = {"left": order[0], "right": order[1], "tie": "tie"}[KEY_CHOICE[key]]
        assert (entry["annotator"], entry["label"], entry["shown_order"]) == ("ana", expected, order)
    assert {r["labels"][0]["label"] for r in rows} <= {"A", "B", "tie"}
    assert fold_labels(labels) == rows


def test_undo_note_and_finish_by_mouse(browser: object, tmp_path: Path) -> None:
    source = write_items(tmp_path / "calib.jsonl", 2)
    with AnnotationServer(open_session(source, "ben")) as server:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(server.page_url("ben"))
        first = page.locator("#prompt").inner_text()
        page.keyboard.press("n")  # focuses the note; the key itself is not typed
        page.keyboard.type("left one is vague")
        sync_api.expect(page.locator("#note")).to_have_value("left one is vague")
        page.keyboard.press("Escape")
        page.click("#btn-right")
        sync_api.expect(page.locator("#progress-text")).to_have_text("1 of 2 done")
        page.keyboard.press("u")
        sync_api.expect(page.locator("#progress-text")).to_have_text("0 of 2 done")
        sync_api.expect(page.locator("#prompt")).to_have_text(first)
        sync_api.expect(page.locator("#note")).to_have_value("left one is vague")
        page.click("#btn-tie")
        # keys pressed while a label is being saved are dropped (they were meant for the old item)
        sync_api.expect(page.locator("#progress-text")).to_have_text("1 of 2 done")
        page.keyboard.press("b")
        sync_api.expect(page.locator("#done")).to_be_visible()
        sync_api.expect(page.locator("#done-text")).to_contain_text("all 2 items")
        page.close()
    rows = fold_labels(server.session.labels_path)
    first = rows[0]["labels"][0]
    assert (first["label"], first["note"]) == ("tie", "left one is vague")
    assert len(rows) == 2


def test_markup_in_responses_is_shown_as_text_and_never_runs(browser: object, tmp_path: Path) -> None:
    payload = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    source = write_items(tmp_path / "evil.jsonl", 2, response_b=payload)
    with AnnotationServer(open_session(source, "eve")) as server:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(server.page_url("eve"))
        sync_api.expect(page.locator("#progress-text")).to_have_text("0 of 2 done")
        text = page.locator("body").inner_text()
        assert "<script>window.__pwned=1</script>" in text and 'onerror="window.__pwned=2"' in text
        page.wait_for_timeout(200)  # give an image error handler the chance to fire, if one existed
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("main img, main script").count() == 0
        page.close()
