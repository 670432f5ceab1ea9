"""The listwise protocol: one judge call ranks 3-8 answers to one question, best first.

The prompt is the MT-Bench instruction widened to N assistants (`system_listwise.j2`), with each
answer quoted between our delimiters and neutralised like the pairwise ones (an answer cannot plant
a `[[1]] > [[2]]` ranking). The judge ends with `### Ranking: [[3]] > [[1]] > [[2]]` (bare numbers and
`Assistant 3` are read too) or, structured, a JSON object `{"evidence": ..., "ranking": [3, 1, 2]}`.

A ranking counts only when it names every shown assistant exactly once: a partial or repeated
ranking is unscored with its reason, never completed by guessing.

>>> parse_ranking("### Ranking: [[3]] > [[1]] > [[2]]", 3).order
(2, 0, 1)
>>> parse_ranking('{"evidence": "...", "ranking": [2, 3, 1]}', 3).order
(1, 2, 0)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from judges.protocols._parsers import EMPTY, REFUSAL, TRUNCATED
from judges.protocols._prompts import (
    Answer,
    Question,
    _assistant,
    _is_single_turn,
    _messages,
    _render,
    neutralize,
)

MIN_ANSWERS: Final = 2
MAX_ANSWERS: Final = 8
NO_RANKING_MARKER: Final = "no_ranking_marker"
INCOMPLETE_RANKING: Final = "incomplete_ranking"  # some shown assistant is not ranked
INVALID_RANKING: Final = "invalid_ranking"  # a number out of range, repeated, or not a number
LISTWISE_REASONS: Final = frozenset(
    {EMPTY, REFUSAL, TRUNCATED, NO_RANKING_MARKER, INCOMPLETE_RANKING, INVALID_RANKING}
)


@dataclass(frozen=True, slots=True)
class ParsedRanking:
    """A listwise reply: `order` holds the shown positions (0-based) best first, or None with the reason."""

    order: tuple[int, ...] | None = None
    unscored_reason: str | None = None

    @property
    def scored(self) -> bool:
        return self.unscored_reason is None


def _example(n: int) -> str:
    return " > ".join(f"[[{k}]]" for k in range(1, n + 1))


def _check_count(n: int) -> None:
    if not MIN_ANSWERS <= n <= MAX_ANSWERS:
        raise ValueError(f"a listwise judge ranks {MIN_ANSWERS} to {MAX_ANSWERS} answers, got {n}")


def render_listwise(
    question: Question, answers: Sequence[Answer], *, structured: bool = False
) -> list[dict[str, str]]:
    """Chat messages (system + user) asking a judge to rank `answers` (shown as Assistant 1..N, in order).

    >>> msgs = render_listwise("2+2?", ["4", "5", "22"])
    >>> "[The Start of Assistant 3's Answer]" in msgs[1]["content"]
    True
    """
    _check_count(len(answers))
    messages = _messages(question)
    assistants = [_assistant(f"Assistant {k}", messages, answer) for k, answer in enumerate(answers, start=1)]
    single_turn = _is_single_turn(messages, list(answers))
    system = _render(
        "system_listwise.j2",
        n=len(answers),
        example=_example(len(answers)),
        structured=structured,
        multi_turn=not single_turn,
    )
    user = _render(
        "conversation.j2",
        single_turn=single_turn,
        question=neutralize(messages[0]["content"]),
        assistants=assistants,
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_listwise_reprompt(n: int, *, structured: bool = False) -> dict[str, str]:
    """The one follow-up after an unreadable listwise reply: the ranking only, please."""
    _check_count(n)
    return {
        "role": "user",
        "content": _render("reprompt_listwise.j2", n=n, example=_example(n), structured=structured),
    }


_THINK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_MARKER = (
    re.compile(r"#{2,6}[ \t]*[*_]*[ \t]*(?:final[ \t]+)?ranking\b[ \t]*[*_]*[ \t]*:?", re.IGNORECASE),
    re.compile(r"^[ \t]*[*_]*[ \t]*(?:final[ \t]+)?ranking[ \t]*[*_]*[ \t]*:", re.IGNORECASE | re.MULTILINE),
)
_CHAIN = re.compile(r"\[\[[ \t]*\d+[ \t]*\]\](?:[ \t]*>[ \t]*\[\[[ \t]*\d+[ \t]*\]\])+")
_REFUSAL = re.compile(
    r"\b(?:i[ \t]+(?:cannot|can't|am[ \t]+unable|won't)|i'm[ \t]+(?:sorry|unable)|as[ \t]+an[ \t]+ai\b)",
    re.IGNORECASE,
)
_ITEM = re.compile(r"^[\s*_`\"'\[(]*(?:assistant|response|answer)?[ \t#]*(\d+)[\s*_`\"'\])]*$", re.IGNORECASE)


def parse_ranking(text: str, n: int) -> ParsedRanking:
    """Read a listwise reply over `n` shown answers: the last JSON `ranking`, else the last `### Ranking:`
    line, else the last `[[i]] > [[j]] > ...` chain."""
    text = _THINK.sub("", text or "")
    if not text.strip():
        return ParsedRanking(unscored_reason=EMPTY)
    from_json = _json_ranking(text)
    if from_json is not None:
        return _validate([str(v) for v in from_json], n)
    for marker in _MARKER:
        found = list(marker.finditer(text))
        if found:
            rest = text[found[-1].end() :].strip()
            line = rest.splitlines()[0] if rest else ""
            if not line.strip():
                return ParsedRanking(unscored_reason=TRUNCATED)
            return _validate(line.split(">"), n)
    chains = _CHAIN.findall(text)
    if chains:
        return _validate(chains[-1].split(">"), n)
    if _REFUSAL.search(text):
        return ParsedRanking(unscored_reason=REFUSAL)
    return ParsedRanking(unscored_reason=NO_RANKING_MARKER)


def _json_ranking(text: str) -> list[object] | None:
    """The `ranking` list of the last JSON object in `text` that has one."""
    for start in reversed([m.start() for m in re.finditer(r"\{", text)]):
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("ranking"), list):
            return list(value["ranking"])
    return None


def _validate(pieces: Sequence[str], n: int) -> ParsedRanking:
    numbers = []
    for piece in pieces:
        match = _ITEM.match(piece.strip().rstrip(".,;"))
        if match is None:
            return ParsedRanking(unscored_reason=INVALID_RANKING)
        numbers.append(int(match[1]))
    if any(not 1 <= k <= n for k in numbers) or len(set(numbers)) != len(numbers):
        return ParsedRanking(unscored_reason=INVALID_RANKING)
    if len(numbers) != n:
        return ParsedRanking(unscored_reason=INCOMPLETE_RANKING)
    return ParsedRanking(order=tuple(k - 1 for k in numbers))
