"""Running a judge setting over a table of pairs (file, human set, frame) with bounded concurrency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory._util.errors import UserError
from factory.llm import Gateway, GatewaySettings, ModelSpec
from factory.testing import FakeLLMServer, Rule
from judges.calibration.table import judge_table, judge_table_sync, load_pairs
from judges.engine.settings import JudgeSetting
from judges.humans.human_sets import ColumnMapping, load_human_set

MARK = "GOLDEN"


def prefers_marker(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    block_a = user.split("[The Start of Assistant A's Answer]")[1].split("[The End of Assistant A's Answer]")[
        0
    ]
    a, b = (9, 3) if MARK in block_a else (3, 9)
    return f"### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"


def gateway(server: FakeLLMServer) -> Gateway:
    return Gateway(
        {"judge": ModelSpec(model="openai/judge", api_base=server.base_url)}, GatewaySettings(max_retries=0)
    )


@pytest.fixture
def foreign_jsonl(tmp_path: Path) -> Path:
    """Pairs in someone else's column names, with numeric winner codes."""
    rows = [
        {
            "qid": "q1",
            "question": "Capital of France?",
            "first": f"Paris {MARK}",
            "second": "Lyon",
            "winner": 1,
        },
        {"qid": "q2", "question": "2 + 2?", "first": "5", "second": f"4 {MARK}", "winner": 2},
        {"qid": "q3", "question": "Best colour?", "first": "Blue", "second": "Green", "winner": 0},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


MAPPING = ColumnMapping(
    id="qid",
    prompt="question",
    response_a="first",
    response_b="second",
    label="winner",
    label_values={"1": "A", "2": "B", "0": "tie"},
)


async def test_judge_table_over_a_jsonl_with_a_column_mapping(foreign_jsonl: Path) -> None:
    pairs = load_pairs(foreign_jsonl, MAPPING)
    assert pairs.columns == ["id", "prompt", "response_a", "response_b", "label"]
    done: list[int] = []
    with FakeLLMServer(rules=[Rule(reply=prefers_marker)]) as server:
        frame = await judge_table(gateway(server), JudgeSetting(), pairs, progress=done.append)
        assert server.stats.calls == 3
    assert frame["item_id"].to_list() == ["q1", "q2", "q3"]
    assert frame["label"].to_list() == ["A", "B", "tie"]
    assert frame["verdict"].to_list() == ["A", "B", "B"]  # q3 has no marked answer: the judge says B
    assert sum(done) == 3
    assert frame.schema["score_a"] == pl.Float64 and frame.schema["models"] == pl.List(pl.String)


def test_unlabelled_csv_and_the_sync_wrapper(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    pl.DataFrame(
        {
            "id": ["x", "y"],
            "prompt": ["P1", "P2"],
            "response_a": ["a1", f"a2 {MARK}"],
            "response_b": [f"b1 {MARK}", "b2"],
        }
    ).write_csv(path)
    pairs = load_pairs(path)
    assert "label" not in pairs.columns
    with FakeLLMServer(rules=[Rule(reply=prefers_marker)]) as server:
        frame = judge_table_sync(gateway(server), JudgeSetting(order="both"), pairs)
        assert server.stats.calls == 4
    assert frame["verdict"].to_list() == ["B", "A"]
    assert "label" not in frame.columns


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    pairs = pl.DataFrame(
        {
            "id": [f"i{n}" for n in range(8)],
            "prompt": [f"Q{n}" for n in range(8)],
            "response_a": ["a"] * 8,
            "response_b": ["b"] * 8,
        }
    )
    with FakeLLMServer(latency_s=0.1) as server:
        frame = await judge_table(gateway(server), JudgeSetting(), pairs, concurrency=2)
        assert server.stats.peak_in_flight == 2
    assert frame.height == 8 and frame["verdict"].null_count() == 0


async def test_a_human_set_is_judged_with_its_labels(shared_data: Path) -> None:
    human = load_human_set("pandalm", limit=4)
    with FakeLLMServer() as server:
        frame = await judge_table(gateway(server), JudgeSetting(protocol="direct"), human)
    assert frame["item_id"].to_list() == human.frame["id"].to_list()
    assert frame["label"].to_list() == human.frame["label"].to_list()
    assert frame.filter(pl.col("verdict").is_null() & pl.col("unscored_reason").is_null()).height == 0


def test_bad_tables_are_user_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "Q", "first": "a"}) + "\n")
    with pytest.raises(UserError, match="lacks column"):
        load_pairs(path, ColumnMapping(prompt="question", response_a="first", response_b="second"))
    duplicated = pl.DataFrame(
        {"id": ["x", "x"], "prompt": ["P", "P"], "response_a": ["a", "a"], "response_b": ["b", "b"]}
    )
    with pytest.raises(UserError, match="duplicate ids"):
        judge_table_sync(Gateway({}), JudgeSetting(), duplicated)
