"""Position handling: which order(s) a pair is shown in, and how verdicts map back to the item.

* `fixed`: the item's answer_a is shown as A (the Fellowship paper never swaps; comparable with it).
* `random`: a seeded coin per item, from `(seed, item_id)` only, so reruns and resumed builds show
  every item the same way; a flipped item is recorded with order "BA" and `flipped=True`.
* `both`: the pair is judged in both orders. Agreeing verdicts stand; any disagreement becomes a tie,
  as MT-Bench does, and is recorded with `flipped=True`. Both verdicts are kept in `votes`.

Whatever was shown, the verdicts and scores an `Outcome` carries out of here are in the item's
orientation: A is the item's answer_a.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from judges.engine.outcome import Outcome, first_stop, unique
from judges.engine.settings import Order


def seeded_flip(seed: int, item_id: str) -> bool:
    """The random-order coin of one item: a pure function of the seed and the item id.

    sha256 rather than `hash()`, which is salted per process and would reshuffle on resume.

    >>> seeded_flip(0, "item-1") == seeded_flip(0, "item-1")
    True
    """
    digest = hashlib.sha256(f"{seed}\x1f{item_id}".encode()).digest()
    return bool(digest[0] & 1)


def views(order: Order, seed: int, item_id: str) -> tuple[bool, ...]:
    """The orientations to show, as `flipped` flags: (False,), (True,) or (False, True)."""
    if order == "fixed":
        return (False,)
    if order == "random":
        return (seeded_flip(seed, item_id),)
    return (False, True)


def to_item(shown: Outcome, flipped: bool) -> Outcome:
    """A judgment made on the shown orientation, expressed in the item's orientation."""
    item = shown.swapped() if flipped else shown
    return replace(item, order="BA" if flipped else "AB", flipped=flipped, votes=(item.verdict,))


def combine_orders(order: Order, per_view: Sequence[Outcome]) -> Outcome:
    """One outcome from the per-view outcomes (already in item orientation, in `views()` order).

    With one view it is returned as is. With both orders: a stop signal on either side wins (the
    build must stop); an unscored side makes the item unscored (consistency cannot be checked) with
    that side's reason; otherwise equal verdicts stand and unequal ones become a tie. Scores are the
    mean of the two sides where both gave them.
    """
    if order != "both":
        return per_view[0]
    ab, ba = per_view
    base = Outcome(
        raws=ab.raws + ba.raws,
        usage=ab.usage + ba.usage,
        models=unique(ab.models + ba.models),
        scale=ab.scale,
        order="both",
        votes=(ab.verdict, ba.verdict),
    )
    failed = first_stop(per_view) or next((o for o in per_view if not o.scored), None)
    if failed is not None:
        return replace(base, reason=failed.reason, stop=failed.stop)
    consistent = ab.verdict == ba.verdict
    return replace(
        base,
        verdict=ab.verdict if consistent else "tie",
        score_a=_mean_pair(ab.score_a, ba.score_a),
        score_b=_mean_pair(ab.score_b, ba.score_b),
        flipped=not consistent,
    )


def _mean_pair(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else (x + y) / 2
