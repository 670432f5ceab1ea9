"""Representative samples of a human set: seeded, stratified by label and spread over prompts.

A calibration on "the first N items" measures whatever the file happens to start with: PandaLM's
first 50 items are unanimous and tie-free, its first 20 come from 5 prompts. `stratified_sample`
instead gives every label its share of the sample (largest remainders, so each label count is
within one item of `n` x the set's share) and, inside each label, takes items round robin over the
prompts, always from the prompt least used so far, so no prompt is over-represented. Everything is
drawn from one seeded generator: the same set, `n` and seed give the same sample.

The `SampleRecord` says how the sample was drawn and what it holds, for `agreement.json`.

Example:
    >>> rows, record = stratified_sample(rows, 200, seed=0)
    >>> record["label_shares"]["set"], record["label_shares"]["sample"]
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

Row = dict[str, Any]
LABELS = ("A", "B", "tie")
METHOD = "stratified by label (largest remainder), round robin over prompts within each label"


def label_quotas(counts: Counter[str], n: int, rng: random.Random) -> dict[str, int]:
    """Items per label for a sample of `n` < the set's size: the floor of each label's exact share, then
    one more to the labels with the largest remainders (ties drawn at random). Each quota is within one
    item of the exact share, so never above what the label holds."""
    total = sum(counts.values())
    exact = {label: n * count / total for label, count in counts.items()}
    quotas = {label: math.floor(share) for label, share in exact.items()}
    order = sorted(exact, key=lambda label: (-(exact[label] - quotas[label]), rng.random()))
    for label in order[: n - sum(quotas.values())]:
        quotas[label] += 1
    return quotas


def _spread_over_prompts(
    items: list[Row], quota: int, used: Counter[str], rank: dict[str, int], rng: random.Random
) -> list[Row]:
    """`quota` of `items`, each from the prompt with the fewest items taken so far (all labels counted)."""
    by_prompt: dict[str, list[Row]] = {}
    for item in items:
        by_prompt.setdefault(item["prompt"], []).append(item)
    for group in by_prompt.values():
        rng.shuffle(group)
    taken: list[Row] = []
    while len(taken) < quota:
        prompt = min((p for p, group in by_prompt.items() if group), key=lambda p: (used[p], rank[p]))
        taken.append(by_prompt[prompt].pop())
        used[prompt] += 1
    return taken


def stratified_sample(rows: Sequence[Row], n: int, seed: int) -> tuple[list[Row], dict[str, Any]]:
    """`n` of `rows` (each with `id`, `prompt`, `label`), in the set's order, and the record of the draw.

    With `n` at or above the set's size the whole set is returned (method `all`).
    """
    if n >= len(rows):
        chosen = list(rows)
        method = "all"
    else:
        rng = random.Random(f"human-set-sample:{seed}")
        prompts = list(dict.fromkeys(row["prompt"] for row in rows))
        rng.shuffle(prompts)
        rank = {prompt: i for i, prompt in enumerate(prompts)}
        by_label: dict[str, list[Row]] = {}
        for row in rows:
            by_label.setdefault(row["label"], []).append(row)
        quotas = label_quotas(Counter({k: len(v) for k, v in by_label.items()}), n, rng)
        used: Counter[str] = Counter()
        picked: set[int] = set()
        for label in sorted(by_label, key=lambda x: (LABELS.index(x) if x in LABELS else len(LABELS), x)):
            picked |= {id(r) for r in _spread_over_prompts(by_label[label], quotas[label], used, rank, rng)}
        chosen = [row for row in rows if id(row) in picked]
        method = METHOD
    return chosen, sample_record(rows, chosen, method=method, seed=seed)


def _shares(rows: Sequence[Row]) -> tuple[dict[str, int], dict[str, float]]:
    counts = Counter(row["label"] for row in rows)
    total = max(1, len(rows))
    return {x: counts[x] for x in LABELS}, {x: counts[x] / total for x in LABELS}


def sample_record(rows: Sequence[Row], chosen: Sequence[Row], *, method: str, seed: int) -> dict[str, Any]:
    """What agreement.json says about a sample: how it was drawn, its ids (and their hash), its shares.
    The whole set (`method` all) is named by its hash alone; a sample lists its ids."""
    ids = [str(row["id"]) for row in chosen]
    set_counts, set_shares = _shares(rows)
    sample_counts, sample_shares = _shares(chosen)
    per_prompt = Counter(row["prompt"] for row in chosen)
    return {
        "method": method,
        "seed": seed,
        "n": len(chosen),
        "n_set": len(rows),
        "item_ids": ids if method != "all" else None,
        # Order-free: the same items give the same hash whatever order a file lists them in.
        "item_ids_sha256": hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest(),
        "label_counts": {"set": set_counts, "sample": sample_counts},
        "label_shares": {"set": set_shares, "sample": sample_shares},
        "prompts": {
            "set": len({row["prompt"] for row in rows}),
            "sample": len(per_prompt),
            "max_items_per_prompt": max(per_prompt.values(), default=0),
        },
    }
