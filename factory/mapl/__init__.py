"""MAPL (arXiv 2505.12845): verifiable IFEval-style constraints, their checkers and prompt variants.

>>> import random
>>> from factory.mapl import intra_sample_rows, reverify
>>> rows = intra_sample_rows("p1", "Name a fruit.", "An apple.", random.Random(0))
>>> all(reverify(row) for row in rows)
True
"""

from factory.mapl.constraints import KINDS, Constraint, ConstraintError, Relation
from factory.mapl.loading import from_dict, from_ifeval, from_ifeval_row, verify
from factory.mapl.proposals import candidates, satisfied_by, violated_by
from factory.mapl.variants import (
    augment_prompt,
    inter_sample_pair,
    intra_sample_rows,
    label_by_checkers,
    pairs_from_checked,
    reverify,
)

__all__ = [
    "KINDS",
    "Constraint",
    "ConstraintError",
    "Relation",
    "augment_prompt",
    "candidates",
    "from_dict",
    "from_ifeval",
    "from_ifeval_row",
    "inter_sample_pair",
    "intra_sample_rows",
    "label_by_checkers",
    "pairs_from_checked",
    "reverify",
    "satisfied_by",
    "verify",
    "violated_by",
]
