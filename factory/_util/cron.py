"""Cron expressions checked before anything slow is imported.

`factory schedule` used to hand the expression to Prefect's validator, which meant importing Prefect
and the build flow (10-20 s) before a typo could be reported, and every error said "expected 5
fields" whatever was wrong. This checks the five-field form that Prefect's schedules take
(minute hour day-of-month month day-of-week, with `*`, lists, ranges, steps, month and weekday
names, `L` as the last day of the month, `DOW#N` as the Nth weekday of the month and the `@daily`
family) and names the field and value at fault. Prefect validates again when the deployment is
registered, so anything this accepts that Prefect would not is still refused there.

    check_cron("0 3 * * MON-FRI")           # fine
    check_cron("61 * * * *")                # UserError: ... minute 61 is out of range 0-59
    check_timezone("Europe/Paris")
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory._util.errors import UserError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_EXAMPLE = '"0 3 * * *" = 03:00 every day'


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _DAYS),
)


def check_cron(cron: str) -> None:
    """Raise a one-line `UserError` naming what is wrong with `cron`, unless it is a valid 5-field cron."""
    expression = ALIASES.get(cron.strip().lower(), cron)
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        raise UserError(
            f"invalid cron expression '{cron}': expected 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(fields)}; e.g. {_EXAMPLE}"
        )
    for field, text in zip(_FIELDS, fields, strict=True):
        problem = _field_problem(field, text)
        if problem is not None:
            raise UserError(f"invalid cron expression '{cron}': {problem}; e.g. {_EXAMPLE}")


def check_timezone(timezone: str | None) -> None:
    """Raise a one-line `UserError` unless `timezone` is None or an IANA time zone name known here."""
    if timezone is None:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"invalid timezone '{timezone}': not an IANA time zone name (e.g. Europe/Paris, UTC)"
        ) from None


def _field_problem(field: _Field, text: str) -> str | None:
    for item in text.split(","):
        problem = _item_problem(field, item)
        if problem is not None:
            return problem
    return None


def _item_problem(field: _Field, item: str) -> str | None:
    lowered = item.lower()
    if field.name == "day of month" and lowered in ("l", "?"):
        return None
    if field.name == "day of week":
        if lowered == "?":
            return None
        nth = re.fullmatch(r"(\w+)#(\d+)", lowered)
        if nth:
            problem = _value_problem(field, nth.group(1))
            return problem or (
                None
                if 1 <= int(nth.group(2)) <= 5
                else f"day of week '{item}': the week number after # must be 1-5"
            )
    base, slash, step = item.partition("/")
    if slash and (not step.isdigit() or int(step) < 1):
        return f"{field.name} '{item}': the step after / must be a whole number >= 1"
    if base == "*":
        return None
    low, dash, high = base.partition("-")
    for part in (low, high) if dash else (low,):
        problem = _value_problem(field, part)
        if problem is not None:
            return problem
    return None


def _value_problem(field: _Field, text: str) -> str | None:
    if text.lower() in field.names:
        return None
    if not text.isdigit():
        accepted = f", or a name such as {next(iter(field.names)).upper()}" if field.names else ""
        return f"{field.name} '{text}' is not a number {field.low}-{field.high}{accepted}"
    if not field.low <= int(text) <= field.high:
        return f"{field.name} {text} is out of range {field.low}-{field.high}"
    return None
