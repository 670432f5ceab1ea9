"""Contested pairs to people (factory/dataset/review_queue.py): the review queue a build writes, and labels applied
back to the pairs and the dataset without any model call."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _reliability import run_cli
from _review import build, dpo_rows, odd, server

from factory._util.json_columns import load_json
from factory.annotate import LabelStore, build_queue, load_items, open_session
from factory.config import ReviewSettings
from factory.dataset.review_queue import Decision, contested_reasons, overlay


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with server() as fake:
        run_dir = build(tmp_path_factory.mktemp("review"), fake.base_url)
        yield run_dir, fake


def test_a_split_jury_sends_exactly_its_contested_pairs_to_the_queue(run) -> None:  # type: ignore[no-untyped-def]
    run_dir, _ = run
    pairs = pl.read_parquet(run_dir / "pairs.parquet").to_dicts()
    queue = pl.read_parquet(run_dir / "review_queue.parquet").to_dicts()
    assert len(pairs) == 4
    split = {p["pair_id"] for p in pairs if odd(p)}
    assert {q["pair_id"] for q in queue} == split and len(split) == 2
    assert all(json.loads(q["reasons"]) == ["split"] for q in queue)
    assert all(sorted(load_json(p["votes"])) == ["A", "A", "B"] for p in pairs if odd(p))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["review"]["queued"] == 2 and manifest["review"]["reviewed"] == 0
    # factory annotate opens the queue first
    session = open_session(run_dir, "ana")
    assert {item.id for item in session.queue[:2]} == split
    session.store.close()


def test_review_settings_choose_the_reasons() -> None:
    pair = {"votes": '["A", "A"]', "flipped": True, "margin": 0.5}
    assert contested_reasons(pair, ReviewSettings()) == ["flipped"]
    assert contested_reasons(pair, ReviewSettings(flipped=False, max_margin=1.0)) == ["small_margin"]
    assert contested_reasons({"votes": '["A", "tie"]', "margin": 3.0}, ReviewSettings(max_margin=1.0)) == [
        "split"
    ]


def test_queue_puts_the_review_items_first_whatever_the_margins(tmp_path: Path) -> None:
    rows = [{"id": f"p{i}", "prompt": "q", "response_a": "a", "response_b": f"b{i}"} for i in range(6)]
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    queue = build_queue(load_items(source), first={"p4", "p1"})
    assert {i.id for i in queue[:2]} == {"p1", "p4"} and len(queue) == 6


def test_overlay_flips_drops_and_marks_provenance() -> None:
    frame = pl.DataFrame(
        [
            {
                "pair_id": "x",
                "chosen": "c",
                "rejected": "r",
                "chosen_id": "1",
                "rejected_id": "2",
                "margin": 3.0,
                "votes": '["A", "B"]',
                "rationale": "c is better",
                "provenance": '{"rule": "paper"}',
            },
            {
                "pair_id": "y",
                "chosen": "c",
                "rejected": "r",
                "chosen_id": "1",
                "rejected_id": "3",
                "margin": 1.0,
                "votes": '["A"]',
                "rationale": "why",
                "provenance": "{}",
            },
            {
                "pair_id": "z",
                "chosen": "c",
                "rejected": "r",
                "chosen_id": "4",
                "rejected_id": "5",
                "margin": 1.0,
                "votes": '["A"]',
                "rationale": "why",
                "provenance": "{}",
            },
        ]
    )
    out = overlay(
        frame,
        {
            "x": Decision("B", ("ana",), ("B",), "2026-01-01T00:00:00.000Z"),
            "y": Decision("tie", ("ana", "ben"), ("A", "B"), None),
        },
    ).to_dicts()
    assert [r["pair_id"] for r in out] == ["x", "z"]
    x = out[0]
    assert (x["chosen"], x["rejected"], x["chosen_id"], x["margin"], x["rationale"]) == (
        "r",
        "c",
        "2",
        None,
        None,
    )
    assert (
        json.loads(x["votes"]) == ["B", "A"] and x["decided_by"] == "human" and out[1]["decided_by"] is None
    )
    human = json.loads(x["provenance"])["human"]
    assert (human["decided_by"], human["annotators"], human["judge_margin"]) == ("human", ["ana"], 3.0)


def test_labels_rebuild_the_dataset_without_a_model_call(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir, fake = run
    queue = [r["pair_id"] for r in pl.read_parquet(run_dir / "review_queue.parquet").to_dicts()]
    items = {item.id: item for item in load_items(run_dir)}
    store = LabelStore(run_dir / "human_labels.jsonl")
    try:
        store.add_label(items[queue[0]], "ana", "B", "AB")
        store.add_label(items[queue[1]], "ana", "tie", "BA")
    finally:
        store.close()
    calls = fake.stats.calls
    result = run_cli("annotate", str(run_dir), "--apply")
    assert result.returncode == 0, result.stderr
    assert "1 flipped, 1 dropped" in result.stdout and "no model was called" in result.stdout
    assert fake.stats.calls == calls
    manifest = json.loads((run_dir / "manifest.json").read_text())
    review = manifest["review"]
    assert (review["reviewed"], review["kept"], review["flipped"], review["dropped"]) == (2, 0, 1, 1)
    assert manifest["counts"]["pairs"] == 3 and manifest["gate"]["figures"]["review_n"] == 2
    rows = {r["pair_id"]: r for r in dpo_rows(run_dir)}
    assert queue[1] not in rows and len(rows) == 3
    flipped = rows[queue[0]]
    assert flipped["decided_by"] == "human" and flipped["chosen"][0]["content"] == items[queue[0]].response_b
    assert {r["decided_by"] for pid, r in rows.items() if pid != queue[0]} == {"judge"}
    assert "Human review" in (run_dir / "dataset" / "README.md").read_text()
    # the labels feed back: a second apply gives the same dataset, and annotate still shows the judge's pairs
    assert run_cli("annotate", str(run_dir), "--apply").returncode == 0
    assert {r["pair_id"] for r in dpo_rows(run_dir)} == set(rows)
    assert (
        load_items(run_dir)[0].id in items
        and items[queue[0]].response_a
        == load_items(run_dir)[[i.id for i in load_items(run_dir)].index(queue[0])].response_a
    )
