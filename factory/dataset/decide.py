"""Which rows the dataset keeps, decided in one pass before anything is written.

* Exact duplicates (same prompt, chosen and rejected) and near duplicates (Jaccard similarity of word
  3-shingles >= the threshold on both answers) among `dpo` rows, compared only within one prompt
  text; exact duplicates among `mapl_intra` rows; the first of duplicates is kept.
* KTO: every answer gets one unpaired row, the first time it is met under its prompt; an answer
  both chosen and rejected under the same prompt is left out.
* The split is by prompt id: a seeded hash ranks prompts, the first `test_fraction` are test.

All of these compare rows of one prompt text, so they are decided shard group by shard group
(`dataset_sources.shard_groups`) holding one group's signatures; what is kept for the whole run is
one byte per row (its decisions) and the set of prompt ids the split ranks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from factory.dataset.rows import dpo_rows, intra_rows, kto_candidates, messages_key
from factory.dataset.shard_parts import DatasetSources, Part, key_hash, shard_groups

# Columns the decisions read (the rows are built in full only when written).
_PAIR_COLUMNS = ["turns", "earlier_answers", "chosen", "rejected", "prompt_id"]
_INTRA_COLUMNS = ["chosen_turns", "rejected_turns", "earlier_answers", "response", "prompt_id"]
KEEP, KTO_FIRST, KTO_SECOND = 1, 2, 4  # bits of a row's decision byte


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """Word n-shingles (lower-cased); a text shorter than n words is one shingle."""
    words = text.lower().split()
    if len(words) < n:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class PairDedupe:
    """Exact and near duplicate `dpo` rows, fed in table order. Near duplicates are looked for only
    among rows of the same prompt (a handful of pairs), so the cost grows with the number of prompts,
    not with its square; `forget` drops the signatures of prompts that will not be met again."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.exact = self.near = 0
        self._seen: set[str] = set()
        self._kept: dict[str, list[tuple[frozenset[Any], frozenset[Any]]]] = {}

    def keep(self, prompt: str, chosen: str, rejected: str) -> bool:
        key = hashlib.sha256(json.dumps([prompt, chosen, rejected]).encode()).hexdigest()
        if key in self._seen:
            self.exact += 1
            return False
        self._seen.add(key)
        sig = (shingles(chosen), shingles(rejected))
        group = self._kept.setdefault(prompt, [])
        if any(min(jaccard(sig[0], c), jaccard(sig[1], r)) >= self.threshold for c, r in group):
            self.near += 1
            return False
        group.append(sig)
        return True

    def forget(self) -> None:
        self._seen.clear()
        self._kept.clear()


class KtoLabels:
    """First occurrences of (prompt, answer) among KTO candidates fed in table order, and the
    answers labelled both ways (left out). `take` returns the slots to write and forgets."""

    def __init__(self) -> None:
        self.conflicts = 0
        self._first: dict[tuple[str, str], tuple[bool, Any]] = {}
        self._conflicted: set[tuple[str, str]] = set()

    def add(self, prompt: str, completion: str, label: bool, slot: Any) -> None:
        key = (prompt, completion)
        first = self._first.setdefault(key, (label, slot))
        if first[0] != label:
            self._conflicted.add(key)

    def take(self) -> list[Any]:
        slots = [slot for key, (_, slot) in self._first.items() if key not in self._conflicted]
        self.conflicts += len(self._conflicted)
        self._first, self._conflicted = {}, set()
        return slots


def split_test_prompts(prompt_ids: Iterable[str], test_fraction: float, seed: int) -> set[str]:
    """The prompt ids of the test split: a seeded hash orders prompts, the first share is test.

    With two or more prompts and a non-zero fraction, each split gets at least one prompt."""
    ids = sorted(set(prompt_ids), key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    n = round(len(ids) * test_fraction)
    if test_fraction > 0 and len(ids) >= 2:
        n = min(max(n, 1), len(ids) - 1)
    return set(ids[:n])


@dataclass
class Decisions:
    """Per part (by index in `DatasetSources.pairs` / `.intra`), one byte per row: KEEP, and the
    KTO_FIRST / KTO_SECOND bits for the row's two `kto_candidates` written to KTO."""

    pairs: dict[int, bytearray] = field(default_factory=dict)
    intra: dict[int, bytearray] = field(default_factory=dict)
    prompt_ids: set[str] = field(default_factory=set)  # of kept rows: what the split ranks
    exact: int = 0
    near: int = 0
    kto_conflicts: int = 0


def _prompt_texts(sources: DatasetSources) -> Iterable[tuple[int, set[int]]]:
    """(shard, hashes of the prompt texts its rows are compared by), shard by shard."""
    shards = sorted({p.shard for p in sources.pairs + sources.intra})
    for shard in shards:
        keys: set[int] = set()
        for part in (p for p in sources.pairs if p.shard == shard):
            keys.update(key_hash(messages_key(r["prompt"])) for r in dpo_rows(part.load(_PAIR_COLUMNS)))
        for part in (p for p in sources.intra if p.shard == shard):
            for r in intra_rows(part.load(_INTRA_COLUMNS)):
                keys.update(
                    (key_hash(messages_key(r["prompt_chosen"])), key_hash(messages_key(r["prompt_rejected"])))
                )
        yield shard, keys


def _members(parts: list[Part], shards: set[int]) -> list[tuple[int, Part]]:
    return [(i, p) for i, p in enumerate(parts) if p.shard in shards]


def decide(sources: DatasetSources, threshold: float) -> Decisions:
    """Every keep/drop decision of the dataset, in the order the rows are written."""
    out = Decisions()
    dedupe = PairDedupe(threshold)
    kto = KtoLabels()
    for group in shard_groups(_prompt_texts(sources)):
        shards = set(group)
        for i, part in _members(sources.pairs, shards):
            rows = dpo_rows(part.load(_PAIR_COLUMNS))
            flags = out.pairs[i] = bytearray(len(rows))
            for r, row in enumerate(rows):
                prompt = messages_key(row["prompt"])
                if dedupe.keep(prompt, row["chosen"][0]["content"], row["rejected"][0]["content"]):
                    flags[r] = KEEP
                    out.prompt_ids.add(row["prompt_id"])
                    _offer(kto, row, ("pairs", i, r))
        seen: set[str] = set()
        for i, part in _members(sources.intra, shards):
            rows = intra_rows(part.load(_INTRA_COLUMNS))
            flags = out.intra[i] = bytearray(len(rows))
            for r, row in enumerate(rows):
                key = json.dumps(
                    [row["prompt_chosen"], row["prompt_rejected"], row["response"]], ensure_ascii=False
                )
                if key in seen:
                    out.exact += 1
                    continue
                seen.add(key)
                flags[r] = KEEP
                out.prompt_ids.add(row["prompt_id"])
                _offer(kto, row, ("intra", i, r))
        for kind, i, r, bit in kto.take():
            (out.pairs if kind == "pairs" else out.intra)[i][r] |= bit
        dedupe.forget()
    out.exact += dedupe.exact
    out.near, out.kto_conflicts = dedupe.near, kto.conflicts
    return out


def _offer(kto: KtoLabels, row: dict[str, Any], at: tuple[str, int, int]) -> None:
    for (prompt, completion, label, _), bit in zip(kto_candidates(row), (KTO_FIRST, KTO_SECOND), strict=True):
        kto.add(messages_key(prompt), completion[0]["content"], label, (*at, bit))
