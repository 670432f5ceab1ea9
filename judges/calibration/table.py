"""Run a judge setting over a table of pairs: a file, a human-labelled set, or a polars frame.

This is how judges are evaluated against humans (calibration builds on it): every pair is judged
with bounded concurrency and the result is one judgments row per pair, in input order, with the
human `label` alongside when the table has one.

Example::

    pairs = load_pairs("pairs.jsonl", ColumnMapping(prompt="question", response_a="a", response_b="b"))
    frame = judge_table_sync(gateway, JudgeSetting(kind="jury", models=("j1", "j2", "j3")), pairs)
    frame.select("item_id", "verdict", "label")
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.concurrency import map_bounded
from factory._util.errors import UserError
from factory._util.sync import run_sync
from factory.llm import Gateway
from factory.records import Judgment
from judges.engine.pairwise import JUDGMENT_SCHEMA, judge_pair
from judges.engine.settings import JudgeSetting
from judges.humans.human_sets import ColumnMapping, HumanSet, load_human_set

PAIR_COLUMNS = ("id", "prompt", "response_a", "response_b")
_READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".jsonl": pl.read_ndjson,
    ".ndjson": pl.read_ndjson,
    ".json": pl.read_json,
    ".csv": pl.read_csv,
    ".parquet": pl.read_parquet,
}


def load_pairs(
    source: str | Path | HumanSet,
    mapping: ColumnMapping | None = None,
    *,
    limit: int | None = None,
    data_dir: str | Path | None = None,
) -> pl.DataFrame:
    """The pairs of `source` as a frame with `id, prompt, response_a, response_b` and, if labelled, `label`.

    `source` is a loaded `HumanSet`, a public set name (`pandalm`, ...), or a jsonl / json / csv /
    parquet file whose columns `mapping` names. A table with a label column (or `labels`, one per
    annotator) is read through `judges.humans.human_sets` so labels are normalised the same way; an
    unlabelled table only needs the prompt and the two responses.
    """
    if isinstance(source, HumanSet):
        return _canonical(source.frame, limit)
    path = Path(source).expanduser()
    if not path.is_file():
        return _canonical(
            load_human_set(source, mapping=mapping, data_dir=data_dir, limit=limit).frame, limit
        )
    if mapping is None and path.suffix.lower() == ".json":
        # Public formats (PandaLM, LLMBar, ...) are json files the human-set loader recognises.
        return _canonical(load_human_set(path, limit=limit).frame, limit)
    mapping = mapping or ColumnMapping()
    table = _read(path)
    if mapping.label in table.columns or "labels" in table.columns:
        return _canonical(load_human_set(path, mapping=mapping, limit=limit).frame, limit)
    missing = [c for c in (mapping.prompt, mapping.response_a, mapping.response_b) if c not in table.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; have {', '.join(table.columns)}")
    id_column = mapping.id or ("id" if "id" in table.columns else None)
    ids = (
        table[id_column].cast(pl.String)
        if id_column
        else pl.Series([f"{path.stem}-{i}" for i in range(table.height)], dtype=pl.String)
    )
    frame = pl.DataFrame(
        {
            "id": ids,
            "prompt": table[mapping.prompt].cast(pl.String),
            "response_a": table[mapping.response_a].cast(pl.String),
            "response_b": table[mapping.response_b].cast(pl.String),
        }
    )
    return _canonical(frame, limit)


def _read(path: Path) -> pl.DataFrame:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(
            f"{path}: unsupported file type {path.suffix or '(none)'}; use .jsonl, .json, .csv or .parquet"
        )
    try:
        return reader(path)
    except Exception as exc:  # polars raises several unrelated types for unreadable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot read {path.suffix[1:]} ({first})") from exc


def _canonical(frame: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    columns = [*PAIR_COLUMNS, *(["label"] if "label" in frame.columns else [])]
    out = frame.select(columns)
    return out.head(limit) if limit else out


async def judge_table(
    gateway: Gateway,
    setting: JudgeSetting,
    items: pl.DataFrame | HumanSet,
    *,
    concurrency: int = 16,
    progress: Callable[[int], None] | None = None,
    tag: str | None = None,
) -> pl.DataFrame:
    """Judge every pair of `items` (`id, prompt, response_a, response_b[, label]`) with `setting`.

    At most `concurrency` pairs are judged at once (each may make several model calls; the
    gateway's own limits still apply). `progress(1)` is called as each pair finishes. Returns one
    judgments row per pair (columns of `judges.engine.pairwise.JUDGMENT_SCHEMA`), in input order, plus
    `label` (the human label) when `items` has one. A pair whose judge failed is a row with
    `verdict=None` and its `unscored_reason`, never a missing row.
    """
    frame = load_pairs(items) if isinstance(items, HumanSet) else items
    missing = [c for c in PAIR_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"pairs table lacks column(s) {', '.join(missing)}; have {', '.join(frame.columns)}")
    duplicated = [key for key, n in Counter(frame["id"].cast(pl.String).to_list()).items() if n > 1]
    if duplicated:
        raise UserError(f"pairs table has duplicate ids, e.g. {duplicated[0]!r}: judgment rows would collide")
    records = frame.select(PAIR_COLUMNS).to_dicts()

    async def one(record: dict[str, Any]) -> Judgment:
        row = await judge_pair(
            gateway,
            setting,
            str(record["id"]),
            record["prompt"],
            record["response_a"],
            record["response_b"],
            tag=tag,
        )
        if progress is not None:
            progress(1)
        return row

    rows = await map_bounded(records, one, concurrency)
    out = pl.DataFrame(rows, schema=JUDGMENT_SCHEMA)
    if "label" in frame.columns:
        out = out.with_columns(frame["label"].cast(pl.String).alias("label"))
    return out


def judge_table_sync(
    gateway: Gateway,
    setting: JudgeSetting,
    items: pl.DataFrame | HumanSet,
    *,
    concurrency: int = 16,
    progress: Callable[[int], None] | None = None,
    tag: str | None = None,
) -> pl.DataFrame:
    """`judge_table` for synchronous callers, inside or outside a running event loop."""
    return run_sync(
        lambda: judge_table(gateway, setting, items, concurrency=concurrency, progress=progress, tag=tag)
    )
