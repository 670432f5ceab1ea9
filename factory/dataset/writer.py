"""The dataset written at the end of a build: TRL formats, dedupe, a leak-free split, Hub layout.

From the run's `pairs` (judged and MAPL inter-sample pairs) and `mapl_intra` rows:

* `dpo`: TRL's conversational preference format, `prompt` (the conversation up to the last user
  turn: user / assistant / user for a two-turn prompt), `chosen` / `rejected` (one assistant message
  each), plus `rationale` and provenance columns (`pair_id`, `prompt_id`, `source`, `chosen_model`,
  `rejected_model`, `judge_setting`, `margin`, `votes`, `constraints`, `checks`);
* `kto`: TRL's unpaired format, `prompt`, `completion`, `label` (bool): every chosen answer is
  desirable and every rejected one undesirable; an answer that is both (all_pairs) is left out; MAPL
  intra rows give the fixed answer under its satisfied prompt (True) and its violated prompt (False);
* `mapl_intra`: prompt-level preferences, `prompt_chosen`, `prompt_rejected`, `response`.

Exact duplicates (same prompt, chosen and rejected) and near duplicates (Jaccard similarity of word
3-shingles >= `dataset.near_duplicate_threshold` on both answers, compared only within one prompt) are
removed. The split is by prompt id (a seeded hash ranks prompts; the first `test_fraction` of them
are test), the same for all three configs, so no prompt is in both splits.

The rows are streamed: a first pass over the sources decides what is kept (`factory.dataset.decide`),
a second builds the rows part by part (a shard at a time) and appends them to the parquet files,
and the `DatasetDict` is read back from those files (memory-mapped Arrow), so memory does not grow
with the size of the build.

Output, written atomically (built in a temporary folder, then swapped in):
`dataset/{dpo,kto,mapl_intra}/{train,test}-00000-of-00001.parquet`, `dataset/README.md` (the card, whose
configs carry their files' sha256 so each build has its own `datasets` cache entry) and
`dataset_dict/` (`DatasetDict.save_to_disk` of the DPO config).

    counts = write_dataset(run, config, DatasetSources.from_run(run), manifest)
    load_dataset(str(run.root / "dataset"), "dpo")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from factory._util.atomic_files import atomic_write_text
from factory.config import BuildConfig
from factory.dataset.decide import KEEP, KTO_FIRST, KTO_SECOND, Decisions, decide, split_test_prompts
from factory.dataset.rows import CONFIGS, SCHEMAS, SPLITS, Row, dpo_rows, intra_rows, kto_row
from factory.dataset.shard_parts import DatasetSources
from factory.run.folder import RunFolder

_OWNED = {
    "README.md",
    *CONFIGS,
}  # what we write into dataset/; other files there (agreement.json ...) are kept
_BATCH_ROWS = 5_000  # rows buffered per file before a row group is written
_ARROW_BATCH_ROWS = 5_000  # rows per record batch when a split is copied into Arrow for `dataset_dict/`


class SplitFiles:
    """`<config>/<split>-00000-of-00001.parquet` files under a folder, appended to in batches; a file
    is created with its first row, so an empty split has none."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counts = {f"{name}_{split}": 0 for name in CONFIGS for split in SPLITS}
        self._buffers: dict[tuple[str, str], list[Row]] = {}
        self._writers: dict[tuple[str, str], pq.ParquetWriter] = {}

    def path(self, name: str, split: str) -> Path:
        return self.folder / name / f"{split}-00000-of-00001.parquet"

    def add(self, name: str, split: str, row: Row) -> None:
        buffer = self._buffers.setdefault((name, split), [])
        buffer.append(row)
        self.counts[f"{name}_{split}"] += 1
        if len(buffer) >= _BATCH_ROWS:
            self._flush(name, split)

    def _flush(self, name: str, split: str) -> None:
        rows = self._buffers.pop((name, split), [])
        if not rows:
            return
        table = pl.DataFrame(rows, schema=SCHEMAS[name]).to_arrow()
        writer = self._writers.get((name, split))
        if writer is None:
            self.path(name, split).parent.mkdir(parents=True, exist_ok=True)
            writer = self._writers[(name, split)] = pq.ParquetWriter(
                self.path(name, split), table.schema, compression="zstd"
            )
        writer.write_table(table)

    def close(self) -> dict[str, list[str]]:
        """Finish every file; return the splits written per config (what the card declares)."""
        for name, split in list(self._buffers):
            self._flush(name, split)
        for writer in self._writers.values():
            writer.close()
        return {
            name: [s for s in SPLITS if self.counts[f"{name}_{s}"]]
            for name in CONFIGS
            if any(self.counts[f"{name}_{s}"] for s in SPLITS)
        }


def _write_rows(files: SplitFiles, sources: DatasetSources, decisions: Decisions, test: set[str]) -> None:
    """Every kept row into its config and split, in table order: `dpo` rows, then `mapl_intra` rows;
    each row's KTO rows as it goes (KTO lists pairs' answers before MAPL intra answers)."""
    for name, parts, flags_of, to_rows in (
        ("dpo", sources.pairs, decisions.pairs, dpo_rows),
        ("mapl_intra", sources.intra, decisions.intra, intra_rows),
    ):
        for i, part in enumerate(parts):
            flags = flags_of.get(i)
            if not flags or not any(f & KEEP for f in flags):
                continue
            for row, flag in zip(to_rows(part.load(None)), flags, strict=True):
                if not flag & KEEP:
                    continue
                split = "test" if row["prompt_id"] in test else "train"
                files.add(name, split, row)
                for candidate, bit in enumerate((KTO_FIRST, KTO_SECOND)):
                    if flag & bit:
                        files.add("kto", split, kto_row(row, candidate))


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace `final` by the finished folder `tmp` with two renames, so readers see old or new."""
    trash = final.with_name(f".{final.name}.old-{os.urandom(3).hex()}")
    if final.exists():
        os.replace(final, trash)
    os.replace(tmp, final)
    shutil.rmtree(trash, ignore_errors=True)


def _save_dataset_dict(files: dict[str, Path], target: Path, scratch: Path) -> None:
    """`DatasetDict.save_to_disk` of parquet files, each read as memory-mapped Arrow.

    Each parquet file is copied batch by batch into an Arrow stream file in `scratch`, which
    `Dataset.from_file` maps without loading it. `Dataset.from_parquet` would give the same dataset
    (same features and rows) but goes through a dataset builder, whose set-up alone took about a
    third of a second of every build's finalize."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict
    from datasets.utils import logging as hf_logging

    scratch.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, path in files.items():
        arrow = scratch / f"{split}.arrow"
        parquet = pq.ParquetFile(path)
        with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, parquet.schema_arrow) as stream:
            for batch in parquet.iter_batches(batch_size=_ARROW_BATCH_ROWS):
                stream.write_batch(batch)
        splits[split] = Dataset.from_file(str(arrow))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Saving the dataset" would be noise in a build's output
    try:
        DatasetDict(splits).save_to_disk(str(target))
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def write_dataset(
    run: RunFolder,
    config: BuildConfig,
    sources: DatasetSources | Mapping[str, pl.DataFrame],
    manifest: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Write `dataset/` (parquet per config and split, card) and `dataset_dict/`; return the counts.

    `sources` is the run's shard files (`DatasetSources.from_run`) or tables in memory (`pairs`,
    `mapl_intra`). Only non-empty splits get a file (and an entry in the card), so `load_dataset`
    never meets an empty data file. `manifest` supplies the gate figures for the card (absent: the
    card says so)."""
    from factory.dataset.card import config_patterns, data_fingerprint, render_card

    if not isinstance(sources, DatasetSources):
        sources = DatasetSources.from_frames(sources.get("pairs"), sources.get("mapl_intra"))
    decisions = decide(sources, config.dataset.near_duplicate_threshold)
    test = split_test_prompts(decisions.prompt_ids, config.dataset.test_fraction, config.run.seed)
    final = run.root / "dataset"
    tmp = run.root / f".dataset.tmp-{os.urandom(3).hex()}"
    tmp.mkdir(parents=True)
    if final.is_dir():  # keep what other steps put there (agreement.json, report.html)
        for item in final.iterdir():
            if item.name not in _OWNED:
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
    files = SplitFiles(tmp)
    _write_rows(files, sources, decisions, test)
    written = files.close()
    counts = {
        **files.counts,
        "exact_duplicates_removed": decisions.exact,
        "near_duplicates_removed": decisions.near,
        "kto_conflicts_removed": decisions.kto_conflicts,
        "test_prompts": len(test),
    }
    fingerprints = {n: data_fingerprint(tmp, config_patterns(n, splits)) for n, splits in written.items()}
    card = render_card(config, counts, written, dict(manifest or {}), run.run_id, fingerprints, folder=tmp)
    atomic_write_text(tmp / "README.md", card)

    dict_tmp = run.root / f".dataset_dict.tmp-{os.urandom(3).hex()}"
    scratch = run.root / f".hf-cache.tmp-{os.urandom(3).hex()}"
    try:
        _save_dataset_dict({s: files.path("dpo", s) for s in written.get("dpo", [])}, dict_tmp, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _swap_in(tmp, final)
    _swap_in(dict_tmp, run.root / "dataset_dict")
    return counts
