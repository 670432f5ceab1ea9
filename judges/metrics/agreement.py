"""Agreement between judges and humans, and among raters: Cohen's / Fleiss' kappa, Krippendorff's alpha.

Labels are "A", "B" and "tie". A judge verdict of None means *unscored* (the judge's output could
not be parsed); metrics leave those items out and `agreement_summary` reports how many there were,
so a judge cannot look better by failing on hard items without it showing.

Cohen's kappa comes from scikit-learn; `labels=` is always passed so that every call sees the same
categories. A kappa that is undefined (both raters gave one and the same label to every item, so
chance agreement is 1) is NaN here and None in `agreement_summary`.

Example:
    >>> agreement_summary(["A", "B", "tie", "A"], ["A", "B", "A", None])["kappa"]
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.metrics import cohen_kappa_score

from judges.verdicts import VerdictCell

LABELS: tuple[str, ...] = ("A", "B", "tie")
Metric = Callable[[Sequence[str], Sequence[VerdictCell]], float]


def _check(human: Sequence[VerdictCell], judge: Sequence[VerdictCell]) -> None:
    if len(human) != len(judge):
        raise ValueError(f"got {len(human)} human labels and {len(judge)} judge verdicts; they must pair up")
    bad = {v for v in itertools.chain(human, judge) if v is not None and v not in LABELS}
    if bad:
        raise ValueError(f"unknown labels {sorted(map(str, bad))}; expected A, B or tie (None = unscored)")


def _scored(human: Sequence[VerdictCell], judge: Sequence[VerdictCell]) -> tuple[list[str], list[str]]:
    """The pairs where both sides gave a label."""
    _check(human, judge)
    pairs = [(h, j) for h, j in zip(human, judge, strict=True) if h is not None and j is not None]
    return [h for h, _ in pairs], [j for _, j in pairs]


def cohen_kappa(a: Sequence[str], b: Sequence[str], labels: Sequence[str] = LABELS) -> float:
    """Cohen's kappa (scikit-learn) over `labels`; NaN with no items or when chance agreement is 1."""
    if len(a) == 0 or (len(set(a) | set(b)) == 1):
        return math.nan  # p_e = 1: kappa is 0/0; sklearn would warn and return NaN
    # Integer codes: sklearn is about twice as fast on them as on strings, which the bootstrap feels.
    code = {label: i for i, label in enumerate(labels)}
    x = np.fromiter((code[v] for v in a), dtype=np.int64, count=len(a))
    y = np.fromiter((code[v] for v in b), dtype=np.int64, count=len(b))
    return float(cohen_kappa_score(x, y, labels=list(range(len(labels)))))


def kappa_3class(human: Sequence[str], judge: Sequence[VerdictCell]) -> float:
    """Cohen's kappa over A / B / tie, ties kept (the paper's headline figure); unscored items left out."""
    h, j = _scored(human, judge)
    return cohen_kappa(h, j)


def kappa_no_ties(human: Sequence[str], judge: Sequence[VerdictCell]) -> float:
    """Cohen's kappa over A / B on the items where neither the human nor the judge said tie."""
    h, j = _scored(human, judge)
    pairs = [(x, y) for x, y in zip(h, j, strict=True) if x != "tie" and y != "tie"]
    return cohen_kappa([x for x, _ in pairs], [y for _, y in pairs], labels=("A", "B"))


def accuracy(human: Sequence[str], judge: Sequence[VerdictCell]) -> float:
    """Share of scored items where the judge gave the human label (NaN with none scored)."""
    h, j = _scored(human, judge)
    return sum(x == y for x, y in zip(h, j, strict=True)) / len(h) if h else math.nan


def confusion(human: Sequence[str], judge: Sequence[VerdictCell]) -> dict[str, dict[str, int]]:
    """Counts as {human label: {judge label: n}}, both in the order A, B, tie; unscored items left out."""
    h, j = _scored(human, judge)
    counts = Counter(zip(h, j, strict=True))
    return {x: {y: counts[(x, y)] for y in LABELS} for x in LABELS}


def unscored_as_tie(judge: Sequence[VerdictCell]) -> list[str]:
    """The stricter reading: an unscored verdict counts as a tie instead of being left out."""
    return [v if v is not None else "tie" for v in judge]


def bootstrap_ci(
    metric_fn: Metric, human: Sequence[str], judge: Sequence[VerdictCell], n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of `metric_fn` over `n` resamples of the scored items (seeded).

    Resamples whose metric is undefined (NaN) are dropped; (NaN, NaN) when none is defined.
    """
    h, j = _scored(human, judge)
    if not h:
        return (math.nan, math.nan)
    h_arr, j_arr = np.array(h, dtype=object), np.array(j, dtype=object)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(h), size=len(h))
        value = metric_fn(h_arr[idx].tolist(), j_arr[idx].tolist())
        if not math.isnan(value):
            values.append(value)
    if not values:
        return (math.nan, math.nan)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return (float(lo), float(hi))


def agreement_summary(
    human: Sequence[str],
    judge: Sequence[VerdictCell],
    *,
    unscored: Literal["exclude", "tie"] = "exclude",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Judge vs human agreement, JSON-ready.

    By default unscored verdicts are excluded from every metric and counted in `n_unscored`;
    `unscored="tie"` counts them as ties instead. `n` is the number of items the metrics used.
    Undefined values (NaN) are reported as None. `ci95` is the bootstrap interval of `kappa`.
    """
    _check(human, judge)
    n_unscored = sum(v is None for v in judge)
    if unscored == "tie":
        judge = unscored_as_tie(judge)
    h, j = _scored(human, judge)
    lo, hi = bootstrap_ci(kappa_3class, h, j, n=n_boot, seed=seed)
    human_counts = Counter(human)
    judge_counts = Counter(v if v is not None else "unscored" for v in judge)
    return {
        "kappa": _json_float(kappa_3class(h, j)),
        "kappa_no_ties": _json_float(kappa_no_ties(h, j)),
        "accuracy": _json_float(accuracy(h, j)),
        "n": len(h),
        "n_unscored": n_unscored,
        "unscored": unscored,
        "ci95": [_json_float(lo), _json_float(hi)],
        "confusion": confusion(h, j),
        "label_counts": {
            "human": {x: human_counts[x] for x in LABELS},
            "judge": {x: judge_counts[x] for x in (*LABELS, "unscored")},
        },
    }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


# ---------------------------------------------------------------- several raters


def pairwise_kappas(
    labels_matrix: Sequence[Sequence[VerdictCell]], names: Sequence[str] | None = None
) -> dict[tuple[str, str], float]:
    """Cohen's kappa for every pair of annotators (columns of an items x annotators matrix).

    Each pair is scored on the items both labelled (None = not labelled). Columns are named
    `annotator1`, `annotator2`, ... unless `names` is given.
    """
    width = len(labels_matrix[0]) if labels_matrix else 0
    if any(len(row) != width for row in labels_matrix):
        raise ValueError("every row of labels_matrix needs one entry per annotator (None where missing)")
    names = list(names) if names is not None else [f"annotator{i + 1}" for i in range(width)]
    columns = {name: [row[i] for row in labels_matrix] for i, name in enumerate(names)}
    return inter_judge_kappas(columns)


def inter_judge_kappas(
    verdicts_by_juror: Mapping[str, Sequence[VerdictCell]],
) -> dict[tuple[str, str], float]:
    """Cohen's kappa (3-class) between every pair of jurors on the same items; no humans needed.

    Items where either juror is unscored (None) are left out of that pair.
    """
    lengths = {len(v) for v in verdicts_by_juror.values()}
    if len(lengths) > 1:
        raise ValueError(f"jurors judged different numbers of items: {sorted(lengths)}")
    out: dict[tuple[str, str], float] = {}
    for (a, va), (b, vb) in itertools.combinations(verdicts_by_juror.items(), 2):
        x, y = _scored(va, vb)
        out[(a, b)] = cohen_kappa(x, y)
    return out


def fleiss_kappa(labels_matrix: Sequence[Sequence[str]], categories: Sequence[str] = LABELS) -> float:
    """Fleiss' kappa for items x raters (each item rated by the same number of raters, no gaps).

    kappa = (P_bar - P_e) / (1 - P_e), with P_i = (sum_j n_ij^2 - m) / (m (m - 1)) per item,
    P_bar their mean, p_j the share of all ratings in category j and P_e = sum_j p_j^2.
    """
    if not labels_matrix:
        return math.nan
    m = len(labels_matrix[0])
    if m < 2 or any(len(row) != m for row in labels_matrix):
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings for every item")
    index = {c: k for k, c in enumerate(categories)}
    counts = np.zeros((len(labels_matrix), len(categories)))
    for i, row in enumerate(labels_matrix):
        for label in row:
            if label not in index:
                raise ValueError(f"label {label!r} is not one of the categories {list(categories)}")
            counts[i, index[label]] += 1
    p_item = ((counts**2).sum(axis=1) - m) / (m * (m - 1))
    p_cat = counts.sum(axis=0) / counts.sum()
    p_bar, p_e = float(p_item.mean()), float((p_cat**2).sum())
    return math.nan if p_e == 1 else (p_bar - p_e) / (1 - p_e)


def krippendorff_alpha_nominal(ratings: Sequence[Sequence[Any]]) -> float:
    """Krippendorff's alpha for nominal data; `ratings` is items x raters with None for missing.

    Built from the coincidence matrix: each item with m >= 2 ratings adds 1 / (m - 1) for every
    ordered pair of its ratings. alpha = 1 - (n - 1) * D_o / D_e with D_o the off-diagonal
    coincidences and D_e = sum over c != k of n_c * n_k. Items with fewer than 2 ratings are not pairable.
    """
    coincidence: defaultdict[tuple[Any, Any], float] = defaultdict(float)
    for row in ratings:
        values = [v for v in row if v is not None]
        m = len(values)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            coincidence[(values[i], values[j])] += 1 / (m - 1)
    totals: defaultdict[Any, float] = defaultdict(float)
    for (c, _), weight in coincidence.items():
        totals[c] += weight
    n = sum(totals.values())
    observed = sum(w for (c, k), w in coincidence.items() if c != k)
    expected = sum(totals[c] * totals[k] for c, k in itertools.permutations(totals, 2))
    if expected == 0:
        return math.nan  # one value everywhere (or nothing pairable): alpha is undefined
    return 1 - (n - 1) * observed / expected
