"""The run's tables (`candidates`, `judgments`, `pairs`, `mapl_intra`, `failures`), merged from its
shard files and streamed to disk.

Each table is a lazy concatenation of shard files sunk straight into its parquet file, so merging
holds a few row groups at a time, not the table: a build of 100,000 prompts merges in the memory
of a small one. The rows, their order and the column types are those of concatenating the shard
files in memory (`RunFolder.read_stage`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from factory._util.atomic_files import atomic_write_parquet, create_temporary_sibling
from factory.records import Failure
from factory.run.folder import RunFolder, failures_frame

STAGE_TABLES = (("generate", "candidates"), ("judge", "judgments"))
STAGES = ("generate", "judge", "pairs", "rationales", "variants")
# Rows per row group of a merged table: the sink buffers about one row group, and polars' default
# (over 100,000 rows of long texts) would take hundreds of MiB at 100,000 prompts.
_ROW_GROUP = 10_000


def _sink(path: Path, frame: pl.LazyFrame | None) -> None:
    """Write `frame` (None: an empty table) to `path` atomically, streaming."""
    if frame is None:
        atomic_write_parquet(path, pl.DataFrame())
        return
    fd, tmp = create_temporary_sibling(path)
    os.close(fd)
    try:
        frame.sink_parquet(tmp, row_group_size=_ROW_GROUP)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _has_rows(frame: pl.LazyFrame) -> bool:
    return frame.select(pl.len()).collect().item() > 0


def _concat(frames: Iterable[pl.LazyFrame | None]) -> pl.LazyFrame | None:
    kept = [f for f in frames if f is not None and _has_rows(f)]
    return pl.concat(kept, how="diagonal_relaxed") if kept else None


def pair_sources(run: RunFolder) -> dict[str, pl.LazyFrame | None]:
    """The `pairs` (judged pairs with rationales, then MAPL inter-sample pairs) and `mapl_intra`
    tables as lazy frames over the `rationales` and `variants` stage files."""
    variants = run.scan_stage("variants")
    inter = intra = None
    if variants is not None:
        # Filtered after the shards are concatenated: the pairs table keeps every variants column.
        inter = variants.filter(pl.col("source") == "mapl_inter")
        intra = variants.filter(pl.col("source") == "mapl_intra")
    return {"pairs": _concat([run.scan_stage("rationales"), inter]), "mapl_intra": intra}


def merge_tables(run: RunFolder, loading_failures: list[Failure]) -> dict[str, int]:
    """Write the run's tables from its shard files; return their row counts."""
    frames: dict[str, pl.LazyFrame | None] = {table: run.scan_stage(stage) for stage, table in STAGE_TABLES}
    frames.update(pair_sources(run))
    failures = [failures_frame(loading_failures).lazy()]
    failures += [f for f in (run.scan_stage(stage, "failures") for stage in STAGES) if f is not None]
    frames["failures"] = pl.concat(failures, how="vertical_relaxed")
    counts = {}
    for table, frame in frames.items():
        _sink(run.table(table), frame)
        counts[table] = pl.scan_parquet(run.table(table)).select(pl.len()).collect().item()
    return counts
