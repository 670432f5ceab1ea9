"""Which items a person labels first.

Human time is the scarce resource, so the queue puts first the items where the jury is least sure of
itself: a build's review queue (``factory.dataset.review_queue``: split votes, flipped verdicts, small margins),
then any other item whose jurors disagree or whose verdict flipped when the answers swapped places. Within that group and
within the rest, items are spread across strata of the jury's vote margin, so that any prefix of the
queue (what a person gets through before stopping) covers clear and close calls in proportion,
instead of, say, only the near-ties. Items without jury information form a stratum of their own.

The queue depends only on the items and the seed, never on the annotator: several people get the same
items in the same order, which is what inter-annotator agreement needs.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Collection, Sequence

from factory._util.errors import UserError
from factory.annotate.items import Item

DEFAULT_STRATA = 4
_NO_MARGIN = -1


def build_queue(
    items: Sequence[Item],
    *,
    seed: int = 0,
    budget: int | None = None,
    strata: int = DEFAULT_STRATA,
    first: Collection[str] = (),
) -> list[Item]:
    """Order items for labelling: ``first`` (a build's review queue), then the other contested items,
    then the rest; each group margin-stratified; capped at ``budget``.

    Deterministic for a given ``seed``. Example: ``build_queue(load_items(run_dir), seed=0, budget=200)``
    """
    if budget is not None and budget < 1:
        raise UserError(f"--budget must be at least 1, got {budget}")
    if strata < 1:
        raise UserError(f"strata must be at least 1, got {strata}")
    strata_of = margin_strata(items, strata)
    rng = random.Random(seed)
    wanted = set(first)
    review = [i for i in items if i.id in wanted]
    contested = [i for i in items if i.contested and i.id not in wanted]
    rest = [i for i in items if not i.contested and i.id not in wanted]
    queue = (
        _stratified(review, strata_of, rng)
        + _stratified(contested, strata_of, rng)
        + _stratified(rest, strata_of, rng)
    )
    return queue[:budget] if budget is not None else queue


def margin_strata(items: Sequence[Item], strata: int = DEFAULT_STRATA) -> dict[str, int]:
    """Item id -> margin stratum (0 = smallest margins); ``-1`` for items without a margin.

    Strata are quantiles of |margin| over all items, so each holds about the same number of items;
    equal margins always share a stratum.
    """
    margins = sorted(m for m in (i.abs_margin for i in items) if m is not None)
    out = {}
    for item in items:
        m = item.abs_margin
        if m is None:
            out[item.id] = _NO_MARGIN
        else:
            # rank of the first equal value, so ties never straddle a stratum boundary
            out[item.id] = bisect_left(margins, m) * strata // len(margins)
    return out


def _stratified(items: Sequence[Item], strata_of: dict[str, int], rng: random.Random) -> list[Item]:
    """Shuffle within each stratum, then interleave strata in proportion to their sizes."""
    groups: dict[int, list[Item]] = {}
    for item in items:
        groups.setdefault(strata_of[item.id], []).append(item)
    keyed: list[tuple[float, int, Item]] = []
    for stratum in sorted(groups):
        group = groups[stratum]
        rng.shuffle(group)
        n = len(group)
        # item k of a stratum of n sits at (k + 0.5) / n of the way down the queue: every prefix then
        # holds each stratum's fair share, within one item
        keyed.extend(((k + 0.5) / n, stratum, item) for k, item in enumerate(group))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [item for _, _, item in keyed]
