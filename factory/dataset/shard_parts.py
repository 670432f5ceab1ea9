"""Where the dataset's rows come from, in pieces small enough to hold one at a time.

The dataset is built from two tables: `pairs` (judged pairs, then MAPL inter-sample pairs) and
`mapl_intra`. A build keeps them as shard files, so a `Part` is one shard's rows of one kind, loaded
on demand; the table order is every part in list order. Tables given as frames (tests, callers
with data in memory) are one part each.

Dedupe and KTO labels compare rows of the same prompt text only, and a prompt belongs to one shard,
so the parts of one shard can be decided on their own. `shard_groups` checks that from the data:
shards that share a prompt text (a prompt set with repeated texts) are decided together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from factory.run.folder import RunFolder

Loader = Callable[[list[str] | None], pl.DataFrame]


@dataclass(frozen=True)
class Part:
    shard: int
    load: Loader  # columns (None: all; absent ones are left out) -> frame


@dataclass(frozen=True)
class DatasetSources:
    pairs: list[Part]  # in table order
    intra: list[Part]

    @classmethod
    def from_frames(cls, pairs: pl.DataFrame | None, intra: pl.DataFrame | None) -> DatasetSources:
        def part(frame: pl.DataFrame | None) -> list[Part]:
            if frame is None or frame.height == 0:
                return []
            return [
                Part(
                    0,
                    lambda columns: (
                        frame.select([c for c in columns if c in frame.columns])
                        if columns is not None
                        else frame
                    ),
                )
            ]

        return cls(part(pairs), part(intra))

    @classmethod
    def from_run(cls, run: RunFolder) -> DatasetSources:
        """The shard files of the `rationales` (judged) and `variants` (MAPL) stages."""
        judged = [Part(_shard(p), _loader(p)) for p in run.stage_files("rationales")]
        variants = run.stage_files("variants")
        inter = [Part(_shard(p), _loader(p, "mapl_inter")) for p in variants]
        intra = [Part(_shard(p), _loader(p, "mapl_intra")) for p in variants]
        return cls(judged + inter, intra)


def _shard(path: Path) -> int:
    return int(path.name[6:11])  # shard-00042.parquet


def _loader(path: Path, source: str | None = None) -> Loader:
    def load(columns: list[str] | None) -> pl.DataFrame:
        frame = pl.scan_parquet(path)
        names = frame.collect_schema().names()
        if source is not None:
            if "source" not in names:
                return pl.DataFrame()
            frame = frame.filter(pl.col("source") == source)
        if columns is not None:
            frame = frame.select([c for c in columns if c in names])
        return frame.collect()

    return load


def key_hash(text: str) -> int:
    """A 64-bit hash of a prompt text: equal texts meet, and a rare collision only merges shards."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def shard_groups(shard_keys: Iterable[tuple[int, Iterable[int]]]) -> list[list[int]]:
    """Shards, given with the hashes of their prompt texts, grouped so that no prompt text spans two
    groups; groups in order of their first shard, normally one shard each. Holds 16 bytes per
    (shard, prompt text)."""
    shards: list[int] = []
    keys, owners = [], []
    for shard, hashes in shard_keys:
        shards.append(shard)
        found = np.fromiter(hashes, dtype=np.uint64)
        keys.append(found)
        owners.append(np.full(len(found), shard, dtype=np.int64))
    parent = {s: s for s in shards}

    def root(s: int) -> int:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    if keys:
        key, owner = np.concatenate(keys), np.concatenate(owners)
        order = np.lexsort((owner, key))
        key, owner = key[order], owner[order]
        # Neighbours after sorting by text: the same text in two shards links them.
        for a, b in zip(
            owner[:-1][key[1:] == key[:-1]].tolist(), owner[1:][key[1:] == key[:-1]].tolist(), strict=True
        ):
            parent[root(b)] = root(a)
    groups: dict[int, list[int]] = {}
    for shard in sorted(parent):
        groups.setdefault(root(shard), []).append(shard)
    return sorted(groups.values())
