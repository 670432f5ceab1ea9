"""Agreement and win rates with answer length controlled (AlpacaEval's length-controlled win rate).

AlpacaEval 2.0 (Dubois et al., arXiv 2404.04475) fits a logistic model of the judge's preference on
the length difference of the two answers and reads the win rate off it at zero length difference:
what the judge would say if the answers were equally long. Here, per setting, with the length
difference normalised as AlpacaEval does, x = tanh((len_a - len_b) / sd(len_a - len_b)) (characters):

* `win_rate_a`: share of decisive verdicts for answer A, raw and length-controlled
  (sigmoid of the intercept of P(A) = sigmoid(b0 + b1 x)), for the judge and for the humans on the
  same items; `length_coef` b1 is how strongly each follows length (the judge's far above the
  humans' is a length bias);
* `agreement`: the share of items (human label decisive, judge scored) where the judge gives the
  human label, raw and length-controlled (P(agree) = sigmoid(c0 + c1 x'), x' the normalised
  length advantage of the answer the humans preferred, read at x' = 0), plus the plain accuracy on
  the items where humans preferred the longer and the shorter answer.

A weak Gaussian prior (precision 1) on the slope keeps the fit finite when a judge follows length
without exception (perfect separation); a length-blind judge has slope 0 and its controlled rate
equals its raw rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from judges.verdicts import VerdictCell

SLOPE_PRIOR = 1.0


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def fit_logistic(x: Sequence[float], y: Sequence[bool]) -> tuple[float, float]:
    """(intercept, slope) of P(y) = sigmoid(b0 + b1 x) by Newton's method, the slope under a weak prior.

    An outcome that never varies has no finite intercept: it is fitted as +-20 (a rate of 1 or 0).
    """
    ys = np.asarray(y, dtype=float)
    if ys.min() == ys.max():
        return (20.0 if ys[0] else -20.0), 0.0
    design = np.column_stack([np.ones(len(ys)), np.asarray(x, dtype=float)])
    prior = np.diag([1e-9, SLOPE_PRIOR])
    theta = np.zeros(2)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (ys - p) - prior @ theta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + prior
        step = np.linalg.solve(hessian, gradient)
        theta += step
        if np.abs(step).max() < 1e-12:
            break
    return float(theta[0]), float(theta[1])


def _rates(x: Sequence[float], y: Sequence[bool]) -> dict[str, Any]:
    if not y:
        return {"raw": None, "length_controlled": None, "length_coef": None, "n": 0}
    intercept, slope = fit_logistic(x, y)
    return {
        "raw": sum(y) / len(y),
        "length_controlled": _sigmoid(intercept),
        "length_coef": slope,
        "n": len(y),
    }


def normalised_length_difference(response_a: Sequence[str], response_b: Sequence[str]) -> list[float]:
    """tanh((len_a - len_b) / sd) per item, AlpacaEval's scaling (0 everywhere when all differences are equal)."""
    diffs = [len(a) - len(b) for a, b in zip(response_a, response_b, strict=True)]
    spread = statistics.pstdev(diffs) if len(diffs) > 1 else 0.0
    return [math.tanh(d / spread) if spread else 0.0 for d in diffs]


def length_control(
    response_a: Sequence[str],
    response_b: Sequence[str],
    verdicts: Sequence[VerdictCell],
    human: Sequence[str],
) -> dict[str, Any]:
    """Length-controlled win rates of answer A (judge and humans) and length-controlled agreement."""
    x = normalised_length_difference(response_a, response_b)
    lengths = [(len(a), len(b)) for a, b in zip(response_a, response_b, strict=True)]

    def a_wins(labels: Sequence[VerdictCell]) -> dict[str, Any]:
        decisive = [(xi, v == "A") for xi, v in zip(x, labels, strict=True) if v in ("A", "B")]
        return _rates([d for d, _ in decisive], [w for _, w in decisive])

    # Agreement where the humans picked a side: x' is the length advantage of the side they picked.
    towards, agree = [], []
    longer_hits = longer_n = shorter_hits = shorter_n = 0
    for xi, (la, lb), v, h in zip(x, lengths, verdicts, human, strict=True):
        if h not in ("A", "B") or v is None:
            continue
        towards.append(xi if h == "A" else -xi)
        agree.append(v == h)
        picked, other = (la, lb) if h == "A" else (lb, la)
        if picked > other:
            longer_n, longer_hits = longer_n + 1, longer_hits + (v == h)
        elif picked < other:
            shorter_n, shorter_hits = shorter_n + 1, shorter_hits + (v == h)
    agreement = _rates(towards, agree)
    agreement["accuracy_humans_chose_longer"] = longer_hits / longer_n if longer_n else None
    agreement["accuracy_humans_chose_shorter"] = shorter_hits / shorter_n if shorter_n else None
    agreement["n_humans_chose_longer"], agreement["n_humans_chose_shorter"] = longer_n, shorter_n
    return {"win_rate_a": {"judge": a_wins(verdicts), "human": a_wins(list(human))}, "agreement": agreement}
