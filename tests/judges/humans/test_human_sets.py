"""Loading human-labelled sets: the public sets from ../shared/data, local tables, downloads over loopback."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from factory._util.errors import UserError
from judges.humans.human_sets import ColumnMapping, load_human_set, majority_label
from judges.humans.public_sets import PUBLIC_SETS
from judges.metrics.agreement import fleiss_kappa, pairwise_kappas

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="reference data ../shared/data not present")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read the user's real cache or data folder, and never download from the internet.
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FACTORY_DATA_DIR", raising=False)


# ---------------------------------------------------------------- public sets


@needs_data
def test_registry_checksums_and_row_counts_match_the_reference_files() -> None:
    for entry in PUBLIC_SETS.values():
        path = DATA / entry.relpath
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256, entry.name
        assert len(load_human_set(entry.name, data_dir=DATA)) == entry.rows, entry.name
        assert entry.url.startswith("https://raw.githubusercontent.com/")


@needs_data
def test_pandalm_reproduces_the_published_human_agreement() -> None:
    hs = load_human_set("pandalm", data_dir=DATA)
    assert len(hs) == 999
    assert hs.annotators == ["annotator1", "annotator2", "annotator3"]
    assert Counter(hs.frame["label"]) == {"tie": 105, "A": 422, "B": 472}
    matrix = hs.labels_matrix()
    assert sum(len(set(row)) == 1 for row in matrix) == 879
    kappas = pairwise_kappas(matrix, names=hs.annotators)
    assert [round(k, 3) for k in kappas.values()] == [0.852, 0.879, 0.862]
    assert round(fleiss_kappa(matrix), 3) == 0.864


@needs_data
def test_pandalm_rows_join_instruction_and_input_and_keep_the_pair_key() -> None:
    raw = json.loads((DATA / "calibration/pandalm/testset-v1.json").read_text())
    hs = load_human_set("pandalm", data_dir=DATA)
    row = hs.frame.row(0, named=True)
    assert row["id"] == "pandalm-0"
    assert row["prompt"] == raw[0]["instruction"] + "\n\n" + raw[0]["input"]
    assert (row["response_a"], row["response_b"]) == (raw[0]["response1"], raw[0]["response2"])
    assert json.loads(row["meta"])["cmp_key"] == raw[0]["cmp_key"]
    assert len(hs) == len(raw)


@needs_data
@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("llmbar-natural", 100),
        ("llmbar-adversarial-neighbor", 134),
        ("llmbar-adversarial", 319),
        ("llmbar-mtbench", 200),
        ("llmbar-llmeval2", 200),
        ("hhh-helpful", 59),
        ("hhh", 221),
    ],
)
def test_public_sets_load_with_their_published_row_counts(name: str, rows: int) -> None:
    hs = load_human_set(name, data_dir=DATA)
    assert len(hs) == rows
    assert set(hs.frame["label"]) == {"A", "B"}  # these sets have no ties
    assert hs.frame["id"].n_unique() == rows


@needs_data
def test_llmbar_labels_point_at_the_output_the_authors_marked_better() -> None:
    raw = json.loads((DATA / "calibration/llmbar/LLMBar_Natural.json").read_text())
    frame = load_human_set("llmbar-natural", data_dir=DATA).frame
    for item, row in zip(raw, frame.iter_rows(named=True), strict=True):
        better = item["output_1"] if item["label"] == 1 else item["output_2"]
        assert row["response_a" if row["label"] == "A" else "response_b"] == better


@needs_data
def test_hhh_keeps_the_preferred_response_on_the_labelled_side() -> None:
    raw = json.loads((DATA / "calibration/hhh_alignment/helpful.task.json").read_text())["examples"]
    frame = load_human_set("hhh-helpful", data_dir=DATA).frame
    for example, row in zip(raw, frame.iter_rows(named=True), strict=True):
        preferred = next(text for text, score in example["target_scores"].items() if score == 1)
        assert row["response_a" if row["label"] == "A" else "response_b"] == preferred
    assert Counter(frame["label"]) == {"A": 30, "B": 29}


@needs_data
def test_evalbiasbench_is_shuffled_balanced_and_seeded() -> None:
    frame = load_human_set("evalbiasbench", data_dir=DATA).frame
    assert len(frame) == 80
    assert Counter(frame["label"]) == {"A": 40, "B": 40}
    assert len({json.loads(m)["bias"] for m in frame["meta"]}) == 6
    raw = json.loads((DATA / "calibration/evalbiasbench/biasbench.json").read_text())
    better = [item["response1"] for group in raw.values() for item in group]
    for row, text in zip(frame.iter_rows(named=True), better, strict=True):
        assert row["response_a" if row["label"] == "A" else "response_b"] == text
    same = load_human_set("evalbiasbench", data_dir=DATA, seed=0).frame["label"].to_list()
    other = load_human_set("evalbiasbench", data_dir=DATA, seed=1).frame["label"].to_list()
    assert same == frame["label"].to_list()
    assert other != same


@needs_data
def test_public_files_load_from_their_paths_too() -> None:
    assert len(load_human_set(DATA / "calibration/llmbar/LLMBar_Natural.json")) == 100
    hhh = load_human_set(DATA / "calibration/hhh_alignment")  # a folder: every subtask file
    assert len(hhh) == 221


@needs_data
def test_the_data_folder_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_DATA_DIR", str(DATA))
    assert len(load_human_set("llmbar-natural")) == 100


def test_an_explicit_data_dir_without_the_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pandalm: .*testset-v1.json not found"):
        load_human_set("pandalm", data_dir=tmp_path)


# ---------------------------------------------------------------- downloads over loopback


@pytest.fixture()
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@needs_data
def test_download_verifies_the_checksum_and_caches_the_file(
    file_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = file_server
    (root / "biasbench.json").write_bytes((DATA / "calibration/evalbiasbench/biasbench.json").read_bytes())
    hs = load_human_set("evalbiasbench", url=f"{base}/biasbench.json")
    assert len(hs) == 80
    cached = tmp_path / "cache" / "calibration/evalbiasbench/biasbench.json"
    assert cached.is_file()
    (root / "biasbench.json").unlink()  # a second load needs no server: the cache answers
    assert len(load_human_set("evalbiasbench", url=f"{base}/biasbench.json")) == 80


@needs_data
def test_a_checksum_mismatch_keeps_nothing_and_says_how_to_recover(
    file_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = file_server
    (root / "biasbench.json").write_text('{"length bias": []}')
    url = f"{base}/biasbench.json"
    with pytest.raises(UserError) as caught:
        load_human_set("evalbiasbench", url=url)
    message = str(caught.value)
    assert "evalbiasbench" in message and "checksum mismatch" in message and url in message
    assert "data_dir" in message and "\n" not in message
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_no_network_is_a_user_error_naming_the_set_and_url(file_server: tuple[str, Path]) -> None:
    base, _ = file_server
    with pytest.raises(UserError, match=r"hhh-helpful: cannot download .*/missing.json .*data_dir"):
        load_human_set("hhh-helpful", url=f"{base}/missing.json")


# ---------------------------------------------------------------- canonical jsonl and mapped tables


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_canonical_jsonl_takes_the_majority_of_annotators_and_the_latest_label_each(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"id": "q1", "prompt": "p", "response_a": "a", "response_b": "b", "label": "B"},
            {"id": "q2", "prompt": "p", "response_a": "a", "response_b": "b", "labels": ["A", "a", "B"]},
            {"id": "q3", "prompt": "p", "response_a": "a", "response_b": "b", "labels": ["A", "B"]},
            {
                "id": "q4",
                "prompt": "p",
                "response_a": "a",
                "response_b": "b",
                "labels": [
                    {"annotator": "ann", "label": "A", "time": 1},
                    {"annotator": "bob", "label": "B", "time": 2},
                    {"annotator": "ann", "label": "B", "time": 3},
                ],
            },
            {
                "id": "q5",
                "prompt": "p",
                "response_a": "a",
                "response_b": "b",
                "labels": [{"annotator": "bob", "label": "tie"}],
            },
        ],
    )
    hs = load_human_set(path)
    assert hs.name == "mine"
    assert hs.frame["label"].to_list() == ["B", "A", "tie", "B", "tie"]
    assert hs.frame["labels"].to_list()[3] == ["B", "B"]  # ann's second label replaced her first
    assert hs.annotators == ["annotator1", "annotator2", "annotator3", "ann", "bob"]
    assert hs.labels_matrix()[4] == [None, None, None, None, "tie"]


def test_mapped_csv_parquet_and_jsonl_load_alike(tmp_path: Path) -> None:
    table = pl.DataFrame(
        {
            "qid": [7, 8, 9],
            "question": ["q1", "q2", "q3"],
            "x": ["a1", "a2", "a3"],
            "y": ["b1", "b2", "b3"],
            "winner": [1, 2, 0],
        }
    )
    mapping = ColumnMapping(
        prompt="question",
        response_a="x",
        response_b="y",
        label="winner",
        id="qid",
        label_values={"1": "A", "2": "B", "0": "tie"},
    )
    table.write_csv(tmp_path / "t.csv")
    table.write_parquet(tmp_path / "t.parquet")
    table.write_ndjson(tmp_path / "t.jsonl")
    for suffix in ("csv", "parquet", "jsonl"):
        frame = load_human_set(tmp_path / f"t.{suffix}", mapping=mapping).frame
        assert frame["id"].to_list() == ["7", "8", "9"]
        assert frame["label"].to_list() == ["A", "B", "tie"]
        assert frame["prompt"].to_list() == ["q1", "q2", "q3"]


def test_majority_label_calls_a_split_a_tie() -> None:
    assert majority_label(["A", "B", "tie"]) == "tie"
    assert majority_label(["A", "A", "B"]) == "A"
    assert majority_label(["B"]) == "B"


# ---------------------------------------------------------------- errors users can fix


@pytest.mark.parametrize(
    ("content", "mapping", "expected"),
    [
        ('{"id": "1", "prompt": "p", "response_a": "a"', None, "not valid JSON"),
        ('{"id": "1", "prompt": "p", "response_a": "a", "label": "A"}', None, "lacks column.*response_b"),
        (
            '{"id": "1", "prompt": "p", "response_a": "a", "response_b": "b", "label": "C"}',
            None,
            "unknown label 'C'",
        ),
        (
            '{"id": "1", "prompt": "p", "response_a": "a", "response_b": "b", "label": 3}',
            ColumnMapping(label_values={"1": "A", "2": "B"}),
            "label value 3 is not in label_values",
        ),
        ('{"id": "1", "prompt": "p", "response_a": "a", "response_b": "b"}', None, "lacks column.*label"),
        (
            '{"id": "1", "prompt": "p", "response_a": "a", "response_b": "b", "labels": "AB"}',
            None,
            "labels must be a list",
        ),
        (
            '{"id": "1", "prompt": "p", "response_a": "a", "response_b": "b", "label": "A"}\n' * 2,
            None,
            "duplicate ids",
        ),
    ],
)
def test_bad_tables_give_one_line_errors(
    tmp_path: Path, content: str, mapping: ColumnMapping | None, expected: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=expected) as caught:
        load_human_set(path, mapping=mapping)
    assert "\n" not in str(caught.value)


def test_unknown_names_missing_files_and_odd_inputs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'pandalmm' is neither a known set name.*pandalm"):
        load_human_set("pandalmm")
    with pytest.raises(UserError, match="neither a known set name nor an existing file"):
        load_human_set(tmp_path / "nope.jsonl")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="unsupported file type .txt"):
        load_human_set(tmp_path / "notes.txt")
    (tmp_path / "odd.json").write_text('{"rows": 3}')
    with pytest.raises(UserError, match="not a known human-set format"):
        load_human_set(tmp_path / "odd.json")
    (tmp_path / "pandalm.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "instruction": "i",
                    "input": "",
                    "response1": "a",
                    "response2": "b",
                    "annotator1": 1,
                    "annotator2": 5,
                    "annotator3": 1,
                }
            ]
        )
    )
    with pytest.raises(UserError, match="annotator2 is 5, expected 0, 1 or 2"):
        load_human_set(tmp_path / "pandalm.json")
    with pytest.raises(UserError, match="hf://owner/name"):
        load_human_set("hf://just-a-name")
    with pytest.raises(UserError, match="stands for 4 sets"):
        load_human_set("hhh", url="http://127.0.0.1:9/x.json")
    with pytest.raises(UserError, match="limit"):
        load_human_set("pandalm", limit=0)
