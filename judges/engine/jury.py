"""Jury reducers: how the jurors' verdicts (item orientation) become the jury's one verdict.

* `plurality`: the label (A, B or tie) with strictly the most votes wins; a split with no strict
  plurality (A, B, tie, or 2 A vs 2 B) is a tie. This is the Fellowship paper's rule
  (`judges.engine.votes.plurality`, the one vote of the project).
* `mean_score`: the mean of each answer's score over the jurors, every juror's scores first brought
  to the unit interval (score / its scale) so jurors on different scales weigh the same. A juror
  without scores (direct protocol) counts as A=1, B=0 for a verdict of A, 0/1 for B and 0.5/0.5 for a
  tie. The higher mean wins; equal means are a tie. The row's scores are these means times the
  jury's scale.
* `weighted`: each juror's vote counts its weight (its measured kappa against humans; a weight
  below 0, a juror worse than chance, counts as 0). The label with the highest total wins; equal top
  totals are a tie.

Unscored jurors are left out of every reducer; a jury whose jurors are all unscored is unscored.
A juror stopped by a budget or an open circuit makes the whole jury stop with that reason.
For plurality and weighted juries the row's scores are, for information, the mean unit scores of
the jurors that gave scores (None when none did).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from judges.engine.outcome import Outcome, Usage, first_stop, unique
from judges.engine.settings import Reducer
from judges.engine.votes import plurality, weighted_vote
from judges.protocols import verdict_from_scores
from judges.verdicts import Verdict

_DIRECT_UNIT: dict[str, tuple[float, float]] = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5)}


def unit_scores(outcome: Outcome, *, verdict_as_score: bool) -> tuple[float, float] | None:
    """A scored juror's scores on [0, 1]; a verdict-only juror's as 1/0 when `verdict_as_score`."""
    if outcome.score_a is not None and outcome.score_b is not None and outcome.scale:
        return outcome.score_a / outcome.scale, outcome.score_b / outcome.scale
    if verdict_as_score and outcome.verdict is not None:
        return _DIRECT_UNIT[outcome.verdict]
    return None


def reduce_jury(
    reducer: Reducer, jurors: Sequence[Outcome], *, scale: int, weights: Sequence[float] | None = None
) -> Outcome:
    """The jury's outcome from its jurors' outcomes (same order as `weights`).

    >>> reduce_jury("plurality", [Outcome(verdict="A"), Outcome(verdict="A"), Outcome(verdict="B")], scale=10).verdict
    'A'
    """
    orders = {j.order for j in jurors}
    base = Outcome(
        raws=tuple(raw for j in jurors for raw in j.raws),
        usage=Usage.total(j.usage for j in jurors),
        models=unique(m for j in jurors for m in j.models),
        scale=scale,
        order=orders.pop() if len(orders) == 1 else "mixed",
        flipped=any(j.flipped for j in jurors),
        votes=tuple(j.verdict for j in jurors),
    )
    stop = first_stop(jurors)
    if stop is not None:
        return replace(base, reason=stop.reason, stop=stop.stop)
    scored = [i for i, j in enumerate(jurors) if j.scored]
    if not scored:
        reasons = "; ".join(unique(str(j.reason) for j in jurors))
        return replace(base, reason=f"all_jurors_unscored: {reasons}")
    units = [u for i in scored if (u := unit_scores(jurors[i], verdict_as_score=reducer == "mean_score"))]
    mean_a = sum(u[0] for u in units) / len(units) * scale if units else None
    mean_b = sum(u[1] for u in units) / len(units) * scale if units else None
    verdicts: list[Verdict] = [jurors[i].verdict for i in scored]  # type: ignore[misc]
    if reducer == "plurality":
        verdict = plurality(verdicts)
    elif reducer == "weighted":
        if weights is None or len(weights) != len(jurors):
            raise ValueError("the weighted reducer needs one weight per juror")
        verdict = weighted_vote(verdicts, [weights[i] for i in scored])
    else:
        assert mean_a is not None and mean_b is not None  # every scored juror yields unit scores here
        # Rounding keeps float noise in the means (0.1 + 0.2) from breaking an exact tie.
        verdict = verdict_from_scores(round(mean_a, 9), round(mean_b, 9))
    return replace(base, verdict=verdict, score_a=mean_a, score_b=mean_b)
