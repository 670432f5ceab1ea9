"""`prompts.where`: which rows of a prompt source to keep, as data rather than code.

A filter is a mapping of column to condition; a row is kept when every condition holds:

    where:
      category: coding            # equals
      language: [en, de]          # one of
      source: {ne: sharegpt}      # not equal; also {eq: x}, {in: [...]}, {not_in: [...]}

Nothing is evaluated: a YAML file shared between people cannot run code. Values compare with `==`
as loaded (CSV cells are text, so `turn: 2` does not match the cell "2"; write `turn: "2"`), except that
a boolean never equals a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from factory._util.errors import UserError

Scalar = str | int | float | bool | None
OPERATORS = ("eq", "ne", "in", "not_in")


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    values: tuple[Scalar, ...]

    def holds(self, row: Mapping[str, Any]) -> bool:
        value = row.get(self.column)
        found = any(_same(value, v) for v in self.values)
        return found if self.op in ("eq", "in") else not found

    def describe(self) -> str:
        shown = ", ".join(_short(v) for v in self.values[:5]) + (", ..." if len(self.values) > 5 else "")
        shown = shown if self.op in ("eq", "ne") else f"[{shown}]"
        return f"{self.column} {'==' if self.op == 'eq' else '!=' if self.op == 'ne' else self.op.replace('_', ' ')} {shown}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _same(a: Any, b: Scalar) -> bool:
    # True == 1 in Python; a filter `flag: true` must not keep rows whose flag is the number 1.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _scalar(value: Any, where: str) -> Scalar:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"{where}: expected a string, number, boolean or null, got {type(value).__name__}")


def _values(value: Any, where: str) -> tuple[Scalar, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: expected a non-empty list of values")
    return tuple(_scalar(v, where) for v in value)


def parse_where(spec: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    """The conditions of a `where` mapping; a malformed one raises `ValueError` naming the column."""
    if spec is None:
        return ()
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError("expected a mapping of column -> value, list of values, or {eq|ne|in|not_in: ...}")
    conditions = []
    for column, rule in spec.items():
        if not isinstance(column, str) or not column:
            raise ValueError(f"column names must be non-empty strings, got {column!r}")
        if isinstance(rule, Mapping):
            if len(rule) != 1 or next(iter(rule)) not in OPERATORS:
                raise ValueError(
                    f"{column}: a condition is one of {', '.join(OPERATORS)}, got {sorted(map(str, rule))}"
                )
            op, operand = next(iter(rule.items()))
            values = _values(operand, column) if op in ("in", "not_in") else (_scalar(operand, column),)
        elif isinstance(rule, (list, tuple)):
            op, values = "in", _values(rule, column)
        else:
            op, values = "eq", (_scalar(rule, column),)
        conditions.append(Condition(column, op, values))
    return tuple(conditions)


def select_rows(
    rows: Iterable[dict[str, Any]], conditions: tuple[Condition, ...], *, limit: int | None, source: str
) -> list[dict[str, Any]]:
    """The rows that pass every condition, the first `limit` of them (the rest is never read).

    A filter that keeps nothing is a `UserError` that says what the column holds, so a typo in a
    value or a column name is seen before any model call.
    """
    if not conditions:
        return list(islice(rows, limit))
    kept: list[dict[str, Any]] = []
    scanned = 0
    columns: set[str] = set()
    seen: dict[str, list[Any]] = {c.column: [] for c in conditions}
    for row in rows:
        scanned += 1
        columns.update(row)
        for c in conditions:
            value = row.get(c.column)
            if len(seen[c.column]) < 5 and value not in seen[c.column]:
                seen[c.column].append(value)
        if all(c.holds(row) for c in conditions):
            kept.append(row)
            if limit is not None and len(kept) >= limit:
                break
    if kept or not scanned:
        return kept  # no rows at all is the caller's "no prompts" error
    missing = [c.column for c in conditions if c.column not in columns]
    if missing:
        names = sorted(columns)
        shown = ", ".join(c[:40] for c in names[:20]) + (", ..." if len(names) > 20 else "")
        raise UserError(
            f"prompts.where names column '{missing[0][:40]}', which no row of {source} has "
            f"(columns: {shown or 'none'})"
        )
    first = conditions[0]
    shown = ", ".join(_short(v) for v in seen[first.column])
    clause = " and ".join(c.describe() for c in conditions)
    raise UserError(
        f"no rows of {source} match prompts.where ({clause}); '{first.column}' holds e.g. {shown}"
    )
