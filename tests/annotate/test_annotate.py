"""The annotation tool: queue order, the labels file (append, fold, undo, resume), the HTTP API, the CLI
(including a server killed mid-session), and the Argilla round trip."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from factory._util.errors import UserError
from factory.annotate import (
    AnnotationServer,
    Item,
    LabelStore,
    build_queue,
    export_argilla,
    export_canonical,
    fold_labels,
    import_argilla,
    load_items,
    margin_strata,
    open_session,
    shown_order,
    write_canonical,
)
from factory.cli.annotate_cmd import register

REPO = Path(__file__).resolve().parents[2]


# --- fixtures and helpers ---------------------------------------------------------------------------


def write_canonical_items(path: Path, n: int) -> Path:
    rows = [
        {
            "id": f"q{i}",
            "prompt": f"Question {i}?",
            "response_a": f"answer A{i}",
            "response_b": f"answer B{i}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def calib_file(tmp_path: Path) -> Path:
    return write_canonical_items(tmp_path / "calib.jsonl", 8)


def make_run(run_dir: Path) -> Path:
    """A run folder whose pairs carry jury info: 2 split votes, 1 flipped, 9 unanimous with spread margins."""
    run_dir.mkdir()
    rows = []
    for i in range(12):
        votes = ["A", "A", "A"]
        flipped = False
        if i in (3, 7):
            votes = ["A", "B", "tie"] if i == 3 else ["A", "A", "B"]
        if i == 10:
            flipped = True
        rows.append(
            {
                "pair_id": f"p{i}",
                "prompt": f"Prompt {i}",
                "chosen": f"good {i}",
                "rejected": f"bad {i}",
                "votes": json.dumps([{"judge_id": f"j{k}", "verdict": v} for k, v in enumerate(votes)]),
                "flipped": flipped,
                "margin": float(i) / 2,
            }
        )
    rows[11]["prompt"] = json.dumps([{"role": "user", "content": "Prompt 11, as chat turns"}])
    pl.DataFrame(rows).write_parquet(run_dir / "pairs.parquet")
    return run_dir


def call(
    base: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(
        base.rstrip("/") + path, data=data, headers=hdrs, method="POST" if data else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"{}")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def served(calib_file: Path):
    server = AnnotationServer(open_session(calib_file, "ana")).start()
    yield server
    server.close()


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a callback keeps "annotate" a sub-command, as in the real app
        """factory"""

    register(app)
    return app


# --- loading and the queue --------------------------------------------------------------------------


def test_run_folder_items_keep_chosen_as_a_and_jury_info(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    items = load_items(run)
    assert [i.id for i in items] == [f"p{i}" for i in range(12)]
    assert (items[0].response_a, items[0].response_b) == ("good 0", "bad 0")
    assert items[3].votes == ("A", "B", "tie") and items[3].contested
    assert items[10].contested and not items[0].contested
    assert items[11].prompt == "Prompt 11, as chat turns"  # conversational prompts are shown as their text


def test_contested_items_come_first_then_the_rest(tmp_path: Path) -> None:
    queue = build_queue(load_items(make_run(tmp_path / "run")), seed=1)
    assert {i.id for i in queue[:3]} == {"p3", "p7", "p10"}
    assert len(queue) == 12 and len({i.id for i in queue}) == 12


def test_queue_prefixes_cover_margin_strata_in_proportion() -> None:
    items = [
        Item(id=f"i{k}", prompt="p", response_a="a", response_b="b", votes=("A", "A"), margin=k / 40)
        for k in range(40)
    ]
    strata = margin_strata(items, 4)
    assert Counter(strata.values()) == {0: 10, 1: 10, 2: 10, 3: 10}
    queue = build_queue(items, seed=3, strata=4)
    for k in (4, 8, 12, 20):
        counts = Counter(strata[i.id] for i in queue[:k])
        assert set(counts.values()) == {k // 4}, (k, counts)


def test_budget_caps_the_queue_and_the_seed_fixes_it(tmp_path: Path, calib_file: Path) -> None:
    items = load_items(calib_file)
    assert len(build_queue(items, budget=5)) == 5
    assert [i.id for i in build_queue(items, seed=7)] == [i.id for i in build_queue(items, seed=7)]
    assert [i.id for i in build_queue(items, seed=7)] != [i.id for i in build_queue(items, seed=8)]
    assert sorted(i.id for i in build_queue(items)) == sorted(i.id for i in items)
    with pytest.raises(UserError, match="budget"):
        build_queue(items, budget=0)


def test_bad_sources_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_items(tmp_path / "nope.jsonl")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(UserError, match="pairs.parquet"):
        load_items(tmp_path / "empty_run")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "prompt": "x", "response_a": "y"}\n')
    with pytest.raises(UserError, match="missing response_b"):
        load_items(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": 1, "prompt": "x", "response_a": "y", "response_b": "z"}\n' * 2)
    with pytest.raises(UserError, match="duplicate id"):
        load_items(dup)


# --- orientation ------------------------------------------------------------------------------------


def test_displayed_order_is_mapped_back_to_the_items_orientation(
    served: AnnotationServer, calib_file: Path
) -> None:
    items = {i.id: i for i in load_items(calib_file)}
    orders = set()
    for _ in range(3):
        status, nxt = call(served.url, "/api/next?annotator=ana")
        item, order = items[nxt["item"]["id"]], shown_order("ana", nxt["item"]["id"])
        orders.add(order)
        texts = {"A": item.response_a, "B": item.response_b}
        assert (nxt["item"]["left"], nxt["item"]["right"]) == (texts[order[0]], texts[order[1]])
        assert "shown_order" not in nxt["item"]  # the page never learns which side is the build's A
        status, _ = call(served.url, "/api/label", {"annotator": "ana", "id": item.id, "choice": "left"})
        assert status == 200
    rows = fold_labels(served.session.labels_path)
    for row in rows:
        (entry,) = row["labels"]
        assert entry["label"] == entry["shown_order"][0]  # "left" means whichever response was on the left
    # placement is random per annotator: over 8 items both sides occur, and two people differ somewhere
    all_orders = {shown_order("ana", i) for i in items}
    assert all_orders == {"AB", "BA"}
    assert any(shown_order("ana", i) != shown_order("ben", i) for i in items)


# --- labels file: append, fold, undo, resume --------------------------------------------------------


def test_label_undo_and_resume_after_restart(calib_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    queue = build_queue(load_items(calib_file))
    with AnnotationServer(open_session(calib_file, "ana", out=out)) as server:
        for choice in ("left", "tie", "right"):
            _, nxt = call(server.url, "/api/next")
            status, after = call(
                server.url,
                "/api/label",
                {"annotator": "ana", "id": nxt["item"]["id"], "choice": choice, "note": "hm"},
            )
            assert status == 200
        assert (after["done"], after["total"]) == (3, 8)
        status, undone = call(server.url, "/api/undo", {"annotator": "ana"})
        assert undone["undone"] == {"id": queue[2].id, "choice": "right", "note": "hm"}
        assert undone["item"]["id"] == queue[2].id and undone["done"] == 2
        # labelling the same item twice (a second tab, a repeated key) is refused, the first label kept
        status, again = call(
            server.url, "/api/label", {"annotator": "ana", "id": queue[0].id, "choice": "right"}
        )
        assert status == 409 and again["item"]["id"] == queue[2].id

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["label", "label", "label", "undo"]
    for line in lines:  # every line is a canonical row with the event's own label
        assert {"id", "prompt", "response_a", "response_b", "labels"} <= line.keys()
    rows = fold_labels(out)
    assert [r["id"] for r in rows] == [queue[0].id, queue[1].id]
    assert rows[1]["labels"][0]["label"] == "tie"

    # a new server on the same file resumes at the first item without a current label
    with AnnotationServer(open_session(calib_file, "ana", out=out)) as server:
        _, nxt = call(server.url, "/api/next")
        assert nxt["item"]["id"] == queue[2].id and (nxt["done"], nxt["total"]) == (2, 8)
        _, prog = call(server.url, "/api/progress?annotator=ben")
        assert prog == {"annotator": "ben", "done": 0, "total": 8}


def test_several_annotators_fold_into_one_row_each_item(calib_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    items = load_items(calib_file)
    store = LabelStore(out)
    store.add_label(items[0], "ana", "A", "AB")
    store.add_label(items[0], "ben", "B", "BA", note="both weak")
    store.add_label(items[1], "ben", "tie", "AB")
    store.add_label(items[1], "ben", "A", "AB")  # relabel: the latest wins
    store.undo("ben")  # ... and undo restores the earlier label
    store.close()
    rows = {r["id"]: r for r in fold_labels(out)}
    assert [(e["annotator"], e["label"]) for e in rows[items[0].id]["labels"]] == [("ana", "A"), ("ben", "B")]
    assert [(e["annotator"], e["label"]) for e in rows[items[1].id]["labels"]] == [("ben", "tie")]

    canonical = export_canonical(out, items, include_unlabelled=True)
    assert len(canonical) == 8 and canonical[2]["labels"] == []
    assert write_canonical(out, tmp_path / "canon.jsonl") == 2
    written = [json.loads(line) for line in (tmp_path / "canon.jsonl").read_text().splitlines()]
    assert all(
        "event" not in r and set(r) == {"id", "prompt", "response_a", "response_b", "labels"} for r in written
    )


def test_a_torn_last_line_is_skipped_and_not_glued_to_the_next(calib_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    items = load_items(calib_file)
    store = LabelStore(out)
    store.add_label(items[0], "ana", "A", "AB")
    store.close()
    with open(out, "a") as fh:
        fh.write('{"event": "label", "id": "q1", "prom')  # what a kill in mid-write leaves
    store = LabelStore(out)
    store.add_label(items[2], "ana", "B", "AB")
    store.close()
    assert [r["id"] for r in fold_labels(out)] == ["q0", "q2"]


def test_killed_cli_server_loses_no_label(calib_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    code = (
        "import typer; from factory.cli.annotate_cmd import register\n"
        "app = typer.Typer()\n@app.callback()\ndef main() -> None: pass\nregister(app); app()"
    )
    cmd = [
        sys.executable,
        "-c",
        code,
        "annotate",
        str(calib_file),
        "--annotator",
        "ana",
        "--port",
        "0",
        "--no-browser",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        assert "Annotating 8 items as ana (0 done)" in line
        for choice in ("left", "right", "tie"):
            _, nxt = call(match.group(0), "/api/next?annotator=ana")
            status, _ = call(
                match.group(0), "/api/label", {"annotator": "ana", "id": nxt["item"]["id"], "choice": choice}
            )
            assert status == 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no flush at exit
        proc.communicate(timeout=10)  # reaps it and closes the pipes
    rows = fold_labels(out)
    assert len(rows) == 3
    assert sorted(r["labels"][0]["label"] for r in rows).count("tie") == 1


def test_cli_reports_user_mistakes(calib_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli_app(), ["annotate", str(tmp_path / "missing.jsonl"), "--annotator", "ana", "--no-browser"]
    )
    assert isinstance(result.exception, UserError) and "does not exist" in str(result.exception)
    # A number out of range is a usage error, refused by the option itself (exit 2, names the option).
    result = runner.invoke(cli_app(), ["annotate", str(calib_file), "--annotator", "ana", "--budget", "0"])
    assert result.exit_code == 2 and "--budget" in result.output
    result = runner.invoke(cli_app(), ["annotate", str(calib_file), "--annotator", "  ", "--no-browser"])
    assert isinstance(result.exception, UserError) and "--annotator" in str(result.exception)


# --- HTTP safety ------------------------------------------------------------------------------------


def test_page_is_served_with_a_nonce_csp_and_requests_from_elsewhere_are_refused(
    served: AnnotationServer,
) -> None:
    with urllib.request.urlopen(served.url, timeout=10) as res:
        csp = res.headers["Content-Security-Policy"]
        html = res.read().decode()
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    nonce = directives["script-src"].removeprefix("'nonce-").removesuffix("'")
    assert directives["script-src"] == f"'nonce-{nonce}'" and f'<script nonce="{nonce}">' in html
    assert html.count("<script") == 1 and "innerHTML" not in html
    assert not re.search(r"\b(src|href)\s*=", html)  # no external assets: the page works offline
    # a cross-site form post (not JSON), another Origin, a rebinding Host: all refused, nothing written
    req = urllib.request.Request(
        served.url + "api/label",
        data=b"annotator=ana&id=q0&choice=left",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    e.value.close()
    assert e.value.code == 415
    body = {"annotator": "ana", "id": "q0", "choice": "left"}
    assert call(served.url, "/api/label", body, {"Origin": "http://evil.example"})[0] == 403
    assert call(served.url, "/api/label", body, {"Host": "evil.example:80"})[0] == 403
    assert call(served.url, "/api/label", {**body, "choice": "maybe"})[0] == 400
    assert call(served.url, "/api/label", {**body, "id": "nope"})[0] == 404
    assert not served.session.labels_path.exists() or served.session.labels_path.read_text() == ""


# --- Argilla ----------------------------------------------------------------------------------------


def test_argilla_export_and_import_round_trip(tmp_path: Path) -> None:
    items = load_items(make_run(tmp_path / "run"))
    folder = export_argilla(items, tmp_path / "argilla", seed=0)
    settings = json.loads((folder / "settings.json").read_text())
    question = next(q for q in settings["questions"] if q["name"] == "preference")
    assert question["settings"]["type"] == "label_selection"
    assert [o["value"] for o in question["settings"]["options"]] == ["A", "B", "tie"]
    assert [f["name"] for f in settings["fields"]] == ["prompt", "response_a", "response_b"]
    records = json.loads((folder / "records.json").read_text())
    orders = Counter(r["metadata"]["shown_order"] for r in records)
    assert set(orders) == {"AB", "BA"}  # the build's chosen answer is not always in the A field

    # what Argilla hands back: one user always picks the build's chosen text, another says tie on two
    for r in records:
        picked = "A" if r["fields"]["response_a"].startswith("good") else "B"
        r["responses"] = {"preference": [{"value": picked, "user_id": "u-1"}]}
        if r["id"] in ("p0", "p1"):
            r["responses"]["preference"].append({"value": "tie", "user_id": "u-2"})
            r["responses"]["note"] = [{"value": "close call", "user_id": "u-2"}]
    records[5]["responses"] = {"preference": [{"value": "B", "user_id": "u-1", "status": "draft"}]}
    (folder / "records.json").write_text(json.dumps(records))

    rows = {r["id"]: r for r in import_argilla(folder, user_names={"u-1": "ana"})}
    assert len(rows) == 11 and records[5]["id"] not in rows  # drafts are not labels
    for item in items:
        if item.id in rows:
            row = rows[item.id]
            assert (row["response_a"], row["response_b"]) == (item.response_a, item.response_b)
            # the build's chosen text is the item's A, whichever Argilla field it sat in
            assert (row["labels"][0]["annotator"], row["labels"][0]["label"]) == ("ana", "A")
    second = rows["p0"]["labels"][1]
    assert (second["annotator"], second["label"], second["note"]) == ("u-2", "tie", "close call")
