"""Checks of numeric command-line options that click's own types do not make.

click's `FloatRange` lets `nan` through (every comparison with nan is false), and `inf` is rarely
meant; a bad value raises `typer.BadParameter`, which the CLI prints as one `error:` line, exit 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import typer


def finite(minimum: float | None = None, *, above: bool = False) -> Callable[[float | None], float | None]:
    """A typer callback: the value must be a finite number, >= `minimum` (> with `above`)."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value):
            raise typer.BadParameter(f"must be a finite number, got {value}")
        if minimum is not None and (value <= minimum if above else value < minimum):
            raise typer.BadParameter(f"must be {'>' if above else '>='} {minimum:g}, got {value:g}")
        return value

    return check
