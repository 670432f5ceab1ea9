"""Parsers for judge replies: a verdict or scores, or `None` plus the reason, never a guess.

Only the judge's own final section counts: for each marker the LAST occurrence in the reply is read,
so a marker quoted earlier in the evidence (for instance one planted in an answer) is ignored when
the real final section follows. Markers are looked for in three tiers, and a lower tier is used
only when no higher one is present: `### Marker:` (also bold, lower case), then a bare `Marker:` at
the start of a line, then MT-Bench's `[[A]]` / `[[8]]` tokens. A marker that starts a line beats
one inside a sentence, so a `### Answer: B` quoted mid-sentence cannot outrank the judge's own
`Answer: A` line. The parsers read only the judge's reply; answers reach the judge escaped
(`neutralize`), so a reply that echoes an answer gives them no marker to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from judges.protocols._prompts import SCALES
from judges.verdicts import Verdict

# Why a reply yielded no verdict; stored as `unscored_reason` in judgments.parquet.
EMPTY: Final = "empty"
REFUSAL: Final = "refusal"
NO_VERDICT_MARKER: Final = "no_verdict_marker"
NO_SCORE_MARKER: Final = "no_score_marker"
MISSING_SCORE: Final = "missing_score"  # combined: one of the two score lines is absent
TRUNCATED: Final = "truncated"  # the marker is there, the value is not (reply cut off)
INVALID_VERDICT: Final = "invalid_verdict"
AMBIGUOUS_VERDICT: Final = "ambiguous_verdict"
INVALID_SCORE: Final = "invalid_score"
AMBIGUOUS_SCORE: Final = "ambiguous_score"
SCORE_OUT_OF_RANGE: Final = "score_out_of_range"
WRONG_SCALE: Final = "wrong_scale"
INVALID_STRUCTURED: Final = "invalid_structured"
UNSCORED_REASONS: Final = frozenset({
    EMPTY, REFUSAL, NO_VERDICT_MARKER, NO_SCORE_MARKER, MISSING_SCORE, TRUNCATED, INVALID_VERDICT,
    AMBIGUOUS_VERDICT, INVALID_SCORE, AMBIGUOUS_SCORE, SCORE_OUT_OF_RANGE, WRONG_SCALE, INVALID_STRUCTURED,
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a judge reply said, in the orientation it was shown.

    Pairwise parses set `verdict` (and `score_a`/`score_b` for combined scoring); a single-answer
    parse sets `score` only (`combine_single_scores` turns two of them into a verdict). When nothing
    could be read, every value is None and `unscored_reason` says why.
    """

    verdict: Verdict | None = None
    score_a: float | None = None
    score_b: float | None = None
    score: float | None = None
    unscored_reason: str | None = None

    @property
    def scored(self) -> bool:
        """True when the reply gave a usable answer."""
        return self.unscored_reason is None


_B = r"[ \t]*[*_]*[ \t]*"  # optional spaces and markdown emphasis between the parts of a marker
_LINE_START = r"^[ \t]*(?:[-*>]+[ \t]+)?[*_]*[ \t]*(?:#[ \t]*)?"  # a bullet or one '#' may lead a bare marker

_VERDICT_NAME = r"(?:final[ \t]+)?(?:answer|verdict)"
_DIRECT_TIERS = (
    re.compile(rf"#{{2,6}}{_B}{_VERDICT_NAME}\b{_B}:?", re.IGNORECASE),
    re.compile(rf"{_LINE_START}{_VERDICT_NAME}{_B}:", re.IGNORECASE | re.MULTILINE),
)
_DIRECT_BRACKET = re.compile(r"\[\[[ \t]*(A|B|C|tie)[ \t]*\]\]", re.IGNORECASE)

_SCORE_NAME = r"(?:overall[ \t]+|final[ \t]+)?(?:score|rating)(?![ \t]+(?:for[ \t]+|of[ \t]+)?assistant)"
_SINGLE_TIERS = (
    re.compile(rf"#{{2,6}}{_B}{_SCORE_NAME}\b{_B}:?", re.IGNORECASE),
    re.compile(rf"{_LINE_START}{_SCORE_NAME}{_B}:", re.IGNORECASE | re.MULTILINE),
)
_SINGLE_BRACKET = re.compile(r"\[\[([^\[\]\n]{0,20})\]\]")

_WHO = (
    r"(?:score[ \t]+(?:for[ \t]+|of[ \t]+)?assistant[ \t]*(?P<w1>[AB])"
    r"|assistant[ \t]*(?P<w2>[AB])(?:'s)?[ \t]+score)"
)
_COMBINED_TIERS = (
    re.compile(rf"#{{2,6}}{_B}{_WHO}\b{_B}:?", re.IGNORECASE),
    re.compile(rf"{_LINE_START}{_WHO}{_B}:", re.IGNORECASE | re.MULTILINE),
)

_VERDICT_VALUE = re.compile(
    r"""(?:(?:the[ \t]+)?(?:final[ \t]+)?(?:answer|verdict|winner)[ \t]+is[ \t]*:?[ \t]*
         |i[ \t]+(?:choose|pick|select)[ \t]+)?
    (?:
        (?P<tie>(?:it(?:'s|[ \t]+is)[ \t]+)?(?:a[ \t]+)?(?:tie|draw)\b)
      | (?:assistant|response|model|option|output)[ \t]*(?P<named>[abc])(?!\w)
      | (?-i:(?P<letter>[ABC]))(?!\w)(?![ \t]+(?:tie|draw)\b)
      | (?P<lone>[abc])[^\w]*$
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# "A or B", "A/B", "A and B", "A = B": the judge did not pick one.
_SECOND_CHOICE = re.compile(
    r"^[ \t*_\])]*(?:or|and|vs\.?|versus|/|,|&|=|\|)[ \t*_\[(]*(?:assistant[ \t]*)?(?:[abc]|tie)(?!\w)",
    re.IGNORECASE,
)
_SCORE_VALUE = re.compile(
    r"""[*_`"'\[( \t]*
    (?P<num>[-+\u2212]?\d+(?:\.\d+)?)(?![\d,]|\.\d)
    [*_`"'\]) \t]*
    (?:(?P<sep>/|out[ \t]+of|of)[ \t*_`]*(?P<den>\d+(?:\.\d+)?)?)?""",
    re.IGNORECASE | re.VERBOSE,
)
_RANGE = re.compile(r"^[ \t]*(?:-|\u2013|to|or)[ \t]*\d", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(?:i[ \t]+(?:cannot|can't|can[ \t]+not|am[ \t]+(?:not[ \t]+able|unable)|won't|will[ \t]+not)"
    r"|i'm[ \t]+(?:sorry|unable|not[ \t]+able)|i[ \t]+apologi[sz]e|as[ \t]+an[ \t]+ai\b)",
    re.IGNORECASE,
)
_THINK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)


def _clean(text: str) -> str:
    """Drop reasoning blocks: a draft verdict inside <think> is not the judge's final answer."""
    text = _THINK.sub("", text.replace("\r\n", "\n"))
    open_think = text.lower().find("<think>")
    return text if open_think < 0 else text[:open_think]  # unclosed: the rest was still thinking


_LINE_LEAD = re.compile(r"[ \t>*_\-+`]*")


def _starts_line(text: str, pos: int) -> bool:
    """Whether only markup stands between the start of its line and `pos`."""
    start = text.rfind("\n", 0, pos) + 1
    return _LINE_LEAD.fullmatch(text, start, pos) is not None


def _final(matches: list[list[re.Match[str]]], text: str) -> re.Match[str] | None:
    """The judge's own final marker among `matches` (one list per tier, best tier first).

    A marker that starts a line beats one inside a sentence, whatever its tier: a judge that quotes
    an answer's `### Answer: B` in its evidence and then writes `Answer: A` on its own line said A.
    Among those, the highest tier's last marker counts (a lower tier only when no higher one is there).
    """
    for pool in ([m for m in tier if _starts_line(text, m.start())] for tier in matches):
        if pool:
            return pool[-1]
    return next((tier[-1] for tier in matches if tier), None)


def _last(patterns: tuple[re.Pattern[str], ...], text: str) -> re.Match[str] | None:
    return _final([list(pattern.finditer(text)) for pattern in patterns], text)


def _value_line(text: str, end: int) -> str:
    """The text a marker announces: the rest of its line, or the next non-blank line."""
    rest = text[end:]
    first, _, after = rest.partition("\n")
    if _strip(first):
        return _strip(first)
    for line in after.split("\n"):
        if _strip(line):
            return _strip(line)
    return ""


def _strip(value: str) -> str:
    return value.strip().lstrip("*_`\"'[(: \t").strip()


def _no_marker(raw: str, text: str, reason: str) -> Parsed:
    if not raw.strip():
        return Parsed(unscored_reason=EMPTY)
    if _REFUSAL.search(text):
        return Parsed(unscored_reason=REFUSAL)
    if "<think>" in raw.lower() and "</think>" not in raw.lower():
        return Parsed(unscored_reason=TRUNCATED)  # cut off while still thinking
    return Parsed(unscored_reason=reason)


def _verdict_from_value(value: str) -> Verdict | str:
    """A, B or tie, or the reason the value is not one."""
    if not value:
        return TRUNCATED
    m = _VERDICT_VALUE.match(value)
    if m is None:
        return INVALID_VERDICT
    if _SECOND_CHOICE.match(value[m.end() :]):
        return AMBIGUOUS_VERDICT
    if m["tie"]:
        return "tie"
    letter = (m["named"] or m["letter"] or m["lone"]).upper()
    return "tie" if letter == "C" else letter


def parse_direct(text: str) -> Parsed:
    """Read the direct-comparison verdict (`### Answer: A`, B, or C for a tie).

    >>> parse_direct("### Evaluation Evidence:\\nB is wrong.\\n### Answer: **A**").verdict
    'A'
    """
    raw, text = text, _clean(text)
    m = _last(_DIRECT_TIERS, text)
    if m is not None:
        value = _verdict_from_value(_value_line(text, m.end()))
    else:
        brackets = list(_DIRECT_BRACKET.finditer(text))
        if not brackets:
            return _no_marker(raw, text, NO_VERDICT_MARKER)
        value = _verdict_from_value(brackets[-1][1])
    if value in ("A", "B", "tie"):
        return Parsed(verdict=value)  # type: ignore[arg-type]
    return Parsed(unscored_reason=value)


def _score_from_value(value: str, scale: int) -> float | str:
    """A score within 0..scale, or the reason the value is not one."""
    if not value:
        return TRUNCATED
    m = _SCORE_VALUE.match(value)
    if m is None:
        return INVALID_SCORE
    rest = value[m.end() :]
    if m["sep"] and m["den"] is None:
        # "7/" at the very end is a cut-off reply; "7/X" is not a score
        return TRUNCATED if not rest.strip() else INVALID_SCORE
    if m["den"] is None and _RANGE.match(rest):
        return AMBIGUOUS_SCORE
    if m["den"] is not None and float(m["den"]) != scale:
        return WRONG_SCALE
    score = float(m["num"].replace("\u2212", "-"))
    if not 0 <= score <= scale:
        return SCORE_OUT_OF_RANGE
    return score


def _check_scale(scale: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")


def parse_single_score(text: str, scale: int = 10) -> Parsed:
    """Read an independent score (`### Overall Score: 8/10`) into `Parsed.score`.

    >>> parse_single_score("### Overall Score: 8.5 out of 10").score
    8.5
    """
    _check_scale(scale)
    raw, text = text, _clean(text)
    m = _last(_SINGLE_TIERS, text)
    if m is not None:
        value = _score_from_value(_value_line(text, m.end()), scale)
    else:
        brackets = list(_SINGLE_BRACKET.finditer(text))
        if not brackets:
            return _no_marker(raw, text, NO_SCORE_MARKER)
        value = _score_from_value(_strip(brackets[-1][1]), scale)
    if isinstance(value, str):
        return Parsed(unscored_reason=value)
    return Parsed(score=value)


def _combined_marker(text: str, who: str) -> re.Match[str] | None:
    return _final(
        [
            [m for m in pattern.finditer(text) if (m["w1"] or m["w2"]).upper() == who]
            for pattern in _COMBINED_TIERS
        ],
        text,
    )


def verdict_from_scores(score_a: float, score_b: float) -> Verdict:
    """Higher score wins, equal scores are a tie.

    >>> verdict_from_scores(6, 6)
    'tie'
    """
    return "A" if score_a > score_b else "B" if score_b > score_a else "tie"


def parse_combined(text: str, scale: int = 10) -> Parsed:
    """Read combined scores (`### Score Assistant A: 8/10`, `### Score Assistant B: 6/10`); equal = tie.

    >>> parse_combined("### Score Assistant A: 7/10\\n### Score Assistant B: 9/10").verdict
    'B'
    """
    _check_scale(scale)
    raw, text = text, _clean(text)
    marker_a, marker_b = _combined_marker(text, "A"), _combined_marker(text, "B")
    if marker_a is None and marker_b is None:
        return _no_marker(raw, text, NO_SCORE_MARKER)
    if marker_a is None or marker_b is None:
        return Parsed(unscored_reason=MISSING_SCORE)
    score_a = _score_from_value(_value_line(text, marker_a.end()), scale)
    score_b = _score_from_value(_value_line(text, marker_b.end()), scale)
    for value in (score_a, score_b):
        if isinstance(value, str):
            return Parsed(unscored_reason=value)
    assert isinstance(score_a, float) and isinstance(score_b, float)
    return Parsed(verdict=verdict_from_scores(score_a, score_b), score_a=score_a, score_b=score_b)


def combine_single_scores(parsed_a: Parsed, parsed_b: Parsed) -> Parsed:
    """Turn two independent scores into a verdict: higher wins, equal is a tie.

    If either answer is unscored the pair is unscored, with the first failing reason.

    >>> combine_single_scores(Parsed(score=8.0), Parsed(score=6.0)).verdict
    'A'
    """
    for parsed in (parsed_a, parsed_b):
        if parsed.unscored_reason is not None or parsed.score is None:
            return Parsed(unscored_reason=parsed.unscored_reason or NO_SCORE_MARKER)
    assert parsed_a.score is not None and parsed_b.score is not None
    return Parsed(
        verdict=verdict_from_scores(parsed_a.score, parsed_b.score),
        score_a=parsed_a.score,
        score_b=parsed_b.score,
    )
