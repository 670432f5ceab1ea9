"""Trivial judges a real one must beat: the longer answer, the first position, the answer with a list.

A judge's kappa means little until it is set beside what a rule of thumb scores on the same items:
AlpacaEval's "longest" annotator (always the longer output) agrees with humans 62.2% of the time.
Each baseline answers from the two texts alone, in the item's orientation (A = `response_a`, the
answer a fixed-order judge sees first):

* `longer`: the longer answer (characters); equal lengths are a tie;
* `first`: always A, the answer in the first position (its 3-class kappa is 0 by construction);
* `list`: the answer with more markdown list lines (`- `, `* `, `+ `, `1. `, `1) `); equal counts
  (most often neither has a list) are a tie.

`baseline_entries` scores them like a judge setting (`judges.metrics.agreement.agreement_summary`).

Example:
    >>> [(b["name"], b["kappa"]) for b in baseline_entries(human)]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from judges.humans.human_sets import HumanSet
from judges.metrics.agreement import agreement_summary

Baseline = Callable[[str, str], str]
_LIST_LINE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S", re.MULTILINE)


def _prefer(a: float, b: float) -> str:
    return "A" if a > b else "B" if b > a else "tie"


def longer_answer(a: str, b: str) -> str:
    return _prefer(len(a), len(b))


def first_position(a: str, b: str) -> str:
    return "A"


def list_lines(text: str) -> int:
    """Markdown list lines in `text` (bullets or numbered items)."""
    return len(_LIST_LINE.findall(text))


def list_answer(a: str, b: str) -> str:
    return _prefer(list_lines(a), list_lines(b))


BASELINES: dict[str, tuple[Baseline, str]] = {
    "longer": (longer_answer, "always the longer answer (equal lengths: tie)"),
    "first": (first_position, "always the answer in the first position (A)"),
    "list": (list_answer, "always the answer with more markdown list lines (equal: tie)"),
}


def baseline_verdicts(name: str, human: HumanSet) -> list[str]:
    rule = BASELINES[name][0]
    return [rule(a, b) for a, b in zip(human.frame["response_a"], human.frame["response_b"], strict=True)]


def baseline_entries(
    human: HumanSet, names: Sequence[str] = tuple(BASELINES), *, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """Each baseline's agreement with the human labels of `human`: kappa (with its interval), accuracy, counts."""
    labels = human.frame["label"].to_list()
    out = []
    for name in names:
        summary = agreement_summary(labels, baseline_verdicts(name, human), n_boot=n_boot, seed=seed)
        out.append(
            {
                "name": name,
                "description": BASELINES[name][1],
                **{
                    k: summary[k] for k in ("kappa", "kappa_no_ties", "accuracy", "n", "ci95", "label_counts")
                },
            }
        )
    return out


def best_baseline(entries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The baseline with the highest defined kappa (None when no baseline has one)."""
    defined = [e for e in entries if e.get("kappa") is not None]
    return max(defined, key=lambda e: e["kappa"]) if defined else None
