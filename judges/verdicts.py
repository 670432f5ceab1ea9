"""The two verdict types, each defined once.

* `Verdict`: which answer a judge (or a person) prefers, in the item's orientation: "A", "B" or "tie".
  Parsers, outcomes and votes produce it.
* `VerdictCell`: a verdict column's value as the metrics read it back from a judgments table: a
  verdict, or None for an unscored item. Left a plain `str` because the metrics count whatever the
  table holds (an unexpected label shows up in a confusion matrix instead of being hidden).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

Verdict: TypeAlias = Literal["A", "B", "tie"]
VerdictCell: TypeAlias = str | None
