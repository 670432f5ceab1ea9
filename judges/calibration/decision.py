"""A kappa read against a threshold through its interval: pass, fail or undecided, and the n that decides.

The point estimate of kappa on a few dozen items moves by +-0.3 from one sample to the next, so a
gate that compares it with a threshold passes or fails by luck. `kappa_decision` compares the 95%
interval instead: its lower bound at or above the threshold passes, its upper bound below fails,
and an interval that straddles the threshold is "undecided", with the sample size that would
decide it if kappa stayed where it is: the interval narrows as 1/sqrt(n), so the half-width h
facing the threshold at n items shrinks below the gap g = |kappa - threshold| at
n' = ceil(n (h / g)^2). `kappa_se` is the large-sample standard error of Cohen's kappa (Cohen 1960),
sqrt(p_o (1 - p_o) / (n (1 - p_e)^2)), used where no bootstrap interval exists.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

Decision = Literal["pass", "fail", "undecided"]
Z95 = 1.959964


def kappa_se(human: Sequence[str], judge: Sequence[str | None]) -> float | None:
    """Cohen's (1960) large-sample standard error of 3-class kappa on the scored items; None if undefined."""
    pairs = [(h, j) for h, j in zip(human, judge, strict=True) if h is not None and j is not None]
    n = len(pairs)
    if n == 0:
        return None
    p_o = sum(h == j for h, j in pairs) / n
    hc, jc = Counter(h for h, _ in pairs), Counter(j for _, j in pairs)
    p_e = sum(hc[k] * jc[k] for k in hc) / n**2
    return None if p_e >= 1 else math.sqrt(p_o * (1 - p_o) / (n * (1 - p_e) ** 2))


def kappa_decision(
    kappa: float | None,
    ci95: Sequence[float | None] | None,
    n: int,
    threshold: float,
    *,
    se: float | None = None,
    bound: Literal["interval", "point"] = "interval",
) -> dict[str, Any]:
    """`verdict` (pass / fail / undecided), the interval it read, and `need_n` when undecided.

    `ci95` is the bootstrap interval; without one, kappa +- 1.96 `se`. `bound="point"` compares the
    point estimate alone (never undecided).
    """
    lo, hi = (list(ci95) + [None, None])[:2] if ci95 else (None, None)
    if (lo is None or hi is None) and kappa is not None and se is not None:
        lo, hi = kappa - Z95 * se, kappa + Z95 * se
    out: dict[str, Any] = {
        "threshold": threshold,
        "n": n,
        "interval": [lo, hi],
        "bound": bound,
        "need_n": None,
    }
    if kappa is None:
        return {**out, "verdict": "fail", "reason": "kappa is undefined"}
    if bound == "point" or lo is None or hi is None:
        return {**out, "verdict": "pass" if kappa >= threshold else "fail"}
    if lo >= threshold:
        return {**out, "verdict": "pass"}
    if hi < threshold:
        return {**out, "verdict": "fail"}
    gap = abs(kappa - threshold)
    half = (kappa - lo) if kappa >= threshold else (hi - kappa)
    # Rounded before the ceiling: 0.5 - 0.3 over 0.5 - 0.4 is 2.0000000000000004 in floating point.
    need = math.ceil(round(n * (half / gap) ** 2, 9)) if gap > 0 and n > 0 else None
    return {**out, "verdict": "undecided", "need_n": max(need, n + 1) if need is not None else None}


def describe(decision: dict[str, Any]) -> str:
    """One line for people: 'undecided: need n >= 312' and the like."""
    if decision["verdict"] != "undecided":
        return decision["verdict"]
    need = decision.get("need_n")
    return "undecided: need n >= " + (str(need) if need else "? (kappa sits on the threshold)")
