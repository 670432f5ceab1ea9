"""Is the judge as close to each annotator as the annotators are to each other? (Judge's Verdict)

Judge's Verdict (Han et al., arXiv 2510.09738) reads a judge against the spread of human-human
agreement: the judge's agreement with the annotators, as a z-score against the annotators'
pairwise agreements on the same items,

    z = (mean_i kappa(judge, annotator_i) - mean_{i<j} kappa(annotator_i, annotator_j)) / sd_{i<j}(...)

with Cohen's kappa (3 classes) and the sample standard deviation of the pairwise human kappas.
Bands: |z| < 1 "human-like" (within the humans' own variation), z >= 1 "super-consistent" (closer
to each annotator than annotators are to each other: more reliable, or blind to what people weigh),
z <= -1 "below human". The z needs at least three annotators (two or more human pairs with some
spread); with fewer, the kappas are still reported and `z` is None.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from typing import Any

from judges.humans.human_sets import HumanSet
from judges.metrics.agreement import cohen_kappa
from judges.verdicts import VerdictCell


def band(z: float | None) -> str | None:
    if z is None:
        return None
    if z >= 1:
        return "super-consistent"
    return "human-like" if z > -1 else "below human"


def _kappa(x: Sequence[VerdictCell], y: Sequence[VerdictCell]) -> float | None:
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    value = cohen_kappa([a for a, _ in pairs], [b for _, b in pairs])
    return None if math.isnan(value) else value


def human_likeness(human: HumanSet, verdicts: Sequence[VerdictCell]) -> dict[str, Any] | None:
    """The judge's kappa with each annotator beside the annotators' pairwise kappas, on the items the
    judge scored; None when the set has fewer than two annotators."""
    if len(human.annotators) < 2:
        return None
    matrix = human.labels_matrix()
    scored = [i for i, v in enumerate(verdicts) if v is not None]
    columns = {name: [matrix[i][k] for i in scored] for k, name in enumerate(human.annotators)}
    judge = [verdicts[i] for i in scored]
    to_judge = {name: _kappa(judge, column) for name, column in columns.items()}
    pairwise = {f"{a} vs {b}": _kappa(columns[a], columns[b]) for a, b in itertools.combinations(columns, 2)}
    judge_values = [k for k in to_judge.values() if k is not None]
    human_values = [k for k in pairwise.values() if k is not None]
    judge_mean = statistics.fmean(judge_values) if judge_values else None
    human_mean = statistics.fmean(human_values) if human_values else None
    spread = statistics.stdev(human_values) if len(human_values) >= 2 else None
    z = None
    if judge_mean is not None and human_mean is not None and spread:
        z = (judge_mean - human_mean) / spread
    return {
        "n": len(scored),
        "judge_vs_annotator": to_judge,
        "annotator_pairs": pairwise,
        "judge_mean_kappa": judge_mean,
        "human_mean_kappa": human_mean,
        "human_sd_kappa": spread,
        "z": z,
        "band": band(z),
    }
