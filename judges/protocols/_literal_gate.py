"""A cheap test that a regex cannot match a text: the literal words every match must start with.

Used by the injection scan (`_detect.py`) to skip directive patterns whose leading words an answer
does not contain. The text is compared lowercased, with `IGNORECASE_EXTRAS` applied.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]

# `re`'s parser is private: if its shape changes, `literal_starts` gives None and every pattern runs.

# Besides the case pairs str.lower() knows, IGNORECASE matches dotless i to i and long s to s.
IGNORECASE_EXTRAS = str.maketrans({"\u0131": "i", "\u017f": "s"})


def literal_starts(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Letters every match of `pattern` starts with, as the set of their possible spellings
    ({"ignore", "disregard", ...} for `\\b(?:ignore|disregard)...`), lowercased; None when no such
    prefix can be read from the pattern (it starts with a class, a repeat, ...).

    A text that contains none of them cannot match, so the pattern need not be run over it: most
    answers mention none of a directive's leading words, and running every directive over every
    judged answer was the largest share of a judge call's CPU. Read from the parsed pattern, so a
    pattern edited later keeps a correct gate (or none)."""

    def starts(items: list[tuple[object, object]]) -> set[str] | None:
        out = {""}
        for op, arg in items:
            if op in (sre.ASSERT_NOT, sre.ASSERT) and arg[0] == -1:  # type: ignore[index]
                continue  # a lookbehind consumes nothing
            if op == sre.AT and arg == sre.AT_BOUNDARY:
                continue
            if op == sre.LITERAL and chr(arg).isalpha():  # type: ignore[arg-type]
                out = {prefix + chr(arg).lower() for prefix in out}  # type: ignore[arg-type]
                continue
            if op == sre.SUBPATTERN:
                inner = starts(list(arg[-1]))  # type: ignore[index]
                return {prefix + s for prefix in out for s in inner} if inner else _some(out)
            if op == sre.BRANCH:
                spellings: set[str] = set()
                for alternative in arg[1]:  # type: ignore[index]
                    found = starts(list(alternative))
                    if not found:
                        return _some(out)
                    spellings |= found
                return {prefix + s for prefix in out for s in spellings}
            return _some(out)
        return _some(out)

    def _some(prefixes: set[str]) -> set[str] | None:
        kept = {p for p in prefixes if p}
        return kept if len(kept) == len(prefixes) else None

    try:
        found = starts(list(_parser.parse(pattern.pattern, pattern.flags)))
    except Exception:  # a private module: if its shape changes, every pattern simply runs
        return None
    return frozenset(found) if found else None
