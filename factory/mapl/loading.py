"""Constraints from plain data: `describe()` dicts (as recorded in a dataset row) and IFEval rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from factory.mapl.constraints import KINDS, Constraint, ConstraintError


def _build(kind: str, params: Mapping[str, Any]) -> Constraint:
    cls = KINDS.get(kind)
    if cls is None:
        raise ConstraintError(f"unknown constraint kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    try:
        return cls.model_validate(dict(params))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConstraintError(f"bad parameters for {kind}: {problems}") from None


def from_dict(data: Mapping[str, Any]) -> Constraint:
    """Rebuild a constraint from `describe()` output, e.g. `{"kind": "punctuation:no_comma"}`."""
    if "kind" not in data:
        raise ConstraintError(f"constraint dict has no 'kind': {dict(data)!r}")
    return _build(str(data["kind"]), {k: v for k, v in data.items() if k != "kind"})


def verify(constraint: Mapping[str, Any] | Constraint, response: str) -> bool:
    """Re-run a recorded constraint's checker on `response`."""
    built = constraint if isinstance(constraint, Constraint) else from_dict(constraint)
    return built.check(response)


def from_ifeval(instruction_id: str, kwargs: Mapping[str, Any] | None) -> Constraint:
    """Build the constraint for one IFEval instruction id and its kwargs (None values are dropped).

    >>> from_ifeval("length_constraints:number_words", {"relation": "at least", "num_words": 300}).num_words
    300
    """
    if instruction_id not in KINDS:
        raise ConstraintError(
            f"IFEval instruction {instruction_id!r} has no checker here; "
            f"mapped ids: {', '.join(sorted(KINDS))}"
        )
    return _build(instruction_id, {k: v for k, v in (kwargs or {}).items() if v is not None})


def from_ifeval_row(row: Mapping[str, Any]) -> list[Constraint]:
    """All constraints of one IFEval row (`instruction_id_list` + `kwargs`); raises on unmapped ids."""
    ids, kwargs = row["instruction_id_list"], row.get("kwargs") or [{}] * len(row["instruction_id_list"])
    return [from_ifeval(i, k) for i, k in zip(ids, kwargs, strict=True)]
