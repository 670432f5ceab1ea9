"""Bradley-Terry strengths from pairwise outcomes: P(i beats j) = s_i / (s_i + s_j).

Fitted by Hunter's MM algorithm (Ann. Statist. 2004), which climbs the likelihood at every step and
needs no step size. Two things keep it finite whatever the data: a tie counts half a win to each
side, and a small prior plays every candidate against a virtual opponent of strength 1 (`prior`
wins and `prior` losses each), so a candidate that won every comparison gets a large but finite
strength, and candidates never compared with each other stay comparable through the virtual one.

Strengths are returned on the log scale, centred on 0 (only differences mean anything): a gap of
`g` is odds of `exp(g)` to 1 that the stronger one is preferred.

>>> log_s = fit_bradley_terry(3, [(0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0)] * 5)
>>> [int(i) for i in log_s.argsort()[::-1]]
[0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_PRIOR = 0.1
"""Virtual wins and losses per candidate: enough to keep a clean sweep finite, too few to matter otherwise."""


def fit_bradley_terry(
    n: int,
    outcomes: Iterable[tuple[int, int, float]],
    *,
    prior: float = DEFAULT_PRIOR,
    max_iter: int = 10_000,
    tol: float = 1e-10,
) -> np.ndarray:
    """Log-strengths (mean 0) of candidates 0..n-1 from `outcomes` (i, j, score of i: 1 win, 0.5 tie, 0 loss).

    Raises ValueError for an index outside 0..n-1, a score outside [0, 1], a self-comparison or a
    prior that is not positive.
    """
    if prior <= 0:
        raise ValueError(f"prior must be positive, got {prior}")
    wins = np.zeros(n)
    games = np.zeros((n, n))
    for i, j, score in outcomes:
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise ValueError(f"bad comparison ({i}, {j}) for {n} candidates")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"a comparison's score must lie in [0, 1], got {score}")
        wins[i] += score
        wins[j] += 1.0 - score
        games[i, j] += 1.0
        games[j, i] += 1.0
    if n == 0:
        return np.zeros(0)
    strength = np.ones(n)
    for _ in range(max_iter):
        # MM update: s_i = (W_i + prior) / (sum_j n_ij / (s_i + s_j) + 2 prior / (s_i + 1))
        pair_sums = strength[:, None] + strength[None, :]
        denominator = (games / pair_sums).sum(axis=1) + 2.0 * prior / (strength + 1.0)
        updated = (wins + prior) / denominator
        updated /= np.exp(np.log(updated).mean())  # fix the scale: geometric mean 1
        if np.max(np.abs(np.log(updated) - np.log(strength))) < tol:
            strength = updated
            break
        strength = updated
    log_strength = np.log(strength)
    return log_strength - log_strength.mean()


def ranking_outcomes(rankings: Iterable[Sequence[int]]) -> list[tuple[int, int, float]]:
    """The pairwise wins a best-first ranking implies: each candidate beats every one ranked below it.

    >>> ranking_outcomes([[2, 0, 1]])
    [(2, 0, 1.0), (2, 1, 1.0), (0, 1, 1.0)]
    """
    out: list[tuple[int, int, float]] = []
    for ranking in rankings:
        for k, winner in enumerate(ranking):
            out.extend((winner, loser, 1.0) for loser in ranking[k + 1 :])
    return out
