"""The votes behind every verdict that several voters give: one rule, used by juries (the engine's and
calibration's reduced ones), by the per-order verdicts of a calibrated jury and by the human label
of an item with several annotators.

* `plurality`: the label with strictly the most votes wins; a split with no strict plurality (A, B,
  tie, or 2 A vs 2 B) is a tie (the Fellowship paper's rule). `scored_plurality` leaves unscored
  (None) votes out first.
* `weighted_vote`: each vote counts its weight (negative weights count as 0); equal top totals tie.

Kept free of heavy imports so that the human sets (which need no model gateway) can use it cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from judges.verdicts import Verdict


def plurality(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The strict plurality of A / B / tie; a split is a tie; no votes give None.

    >>> plurality(["A", "B", "tie"]), plurality(["A", "A", "B"])
    ('tie', 'A')
    """
    return weighted_vote(verdicts, [1.0] * len(verdicts))


def scored_plurality(votes: Iterable[str | None]) -> Verdict | None:
    """The plurality of the votes cast; None (an unscored juror) is left out, no vote at all gives None.

    >>> scored_plurality(["A", None, "B", "B"]), scored_plurality([None, None])
    ('B', None)
    """
    return plurality([v for v in votes if v is not None])  # type: ignore[misc]


def weighted_vote(verdicts: Sequence[Verdict], weights: Sequence[float]) -> Verdict | None:
    """The label with the highest total weight (negative weights count as 0); equal top totals tie.

    >>> weighted_vote(["A", "B", "B"], [0.7, 0.2, 0.3])
    'A'
    """
    if not verdicts:
        return None
    totals: dict[str, float] = {}
    for verdict, weight in zip(verdicts, weights, strict=True):
        totals[verdict] = totals.get(verdict, 0.0) + max(weight, 0.0)
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    if len(ranked) > 1 and abs(ranked[0][1] - ranked[1][1]) <= 1e-12:
        return "tie"
    return ranked[0][0]  # type: ignore[return-value]
