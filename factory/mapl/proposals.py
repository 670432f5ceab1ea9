"""Constraints measured from a response: up to k kinds it satisfies, or violates, as the checkers decide.

>>> import random
>>> rng = random.Random(0)
>>> [c.check("a short reply.") for c in satisfied_by("a short reply.", rng, k=2)]
[True, True]
"""

from __future__ import annotations

import random

from factory.mapl.constraints import KINDS, Constraint


def _pick(response: str, rng: random.Random, k: int, want: bool) -> list[Constraint]:
    by_kind: list[tuple[str, list[Constraint]]] = []
    for kind, cls in KINDS.items():  # dict order is fixed, so the rng is drawn in a fixed order
        # The checker, not the generator, decides which side of the response a candidate is on.
        fitting = [c for c in cls.propose(response, rng) if c.check(response) is want]
        if fitting:
            by_kind.append((kind, fitting))
    rng.shuffle(by_kind)
    chosen: list[Constraint] = []
    groups: set[str] = set()
    for kind, fitting in by_kind:
        group = KINDS[kind].group or kind
        if len(chosen) == k or group in groups:
            continue
        groups.add(group)
        chosen.append(rng.choice(fitting))
    return chosen


def satisfied_by(response: str, rng: random.Random, k: int) -> list[Constraint]:
    """Up to `k` constraints of distinct kinds (and non-conflicting groups) that `response` satisfies."""
    return _pick(response, rng, k, want=True)


def violated_by(response: str, rng: random.Random, k: int) -> list[Constraint]:
    """Up to `k` constraints of distinct kinds (and non-conflicting groups) that `response` violates."""
    return _pick(response, rng, k, want=False)


def candidates(response: str, rng: random.Random) -> list[Constraint]:
    """Every candidate measured from `response`, on both sides of it (not yet checked)."""
    return [c for cls in KINDS.values() for c in cls.propose(response, rng)]
