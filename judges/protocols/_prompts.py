"""Judge prompts of the Fellowship of the LLMs paper (arXiv 2408.08688), rendered from Jinja templates.

Every text we interpolate (the question and both answers) is untrusted: candidate answers are model
output and prompts come from public sets. Each is quoted between our own delimiters, and any copy of
those delimiters or of the judge's own answer markers inside it is escaped visibly (`_detect.neutralize`),
so that an answer cannot close its block early or plant a final verdict the judge might echo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from factory._util.templates import render_template
from judges.protocols._detect import neutralize

Protocol = Literal["direct", "independent", "combined"]
"""The three judge prompting strategies: direct comparison, independent scoring, combined scoring."""

PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
SCALES: tuple[int, ...] = (5, 10, 100)
"""Score scales the paper tried for combined scoring (it picked 10)."""
DEFAULT_SCALE = 10

Message = Mapping[str, str]
Question = str | Sequence[Message]
Answer = str | Sequence[str]

_ROLES = frozenset({"system", "user", "assistant"})
_SHARED_SPEAKER = {"system": "System Prompt", "user": "User", "assistant": "Assistant (earlier turn)"}


@dataclass(frozen=True)
class _Turn:
    speaker: str
    content: str


@dataclass(frozen=True)
class _Assistant:
    label: str
    answer: str
    turns: tuple[_Turn, ...]


def _render(template: str, **context: Any) -> str:
    return render_template(Path(__file__).parent, template, **context)


def _check_scale(scale: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")


def _messages(question: Question) -> list[dict[str, str]]:
    if isinstance(question, str):
        return [{"role": "user", "content": question}]
    messages = []
    for i, message in enumerate(question):
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES or not isinstance(content, str):
            raise ValueError(f"question message {i} needs a role in {sorted(_ROLES)} and a string content")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("question has no user message")
    return messages


def _assistant(label: str, messages: list[dict[str, str]], answer: Answer) -> _Assistant:
    """Lay out one assistant's conversation: shared history, then its own answer(s)."""
    turns: list[_Turn] = []
    if isinstance(answer, str):
        # One answer replies to the last user message; earlier assistant turns are shared context.
        if messages[-1]["role"] != "user":
            raise ValueError("question must end with a user message when the answer is one string")
        turns.extend(_Turn(_SHARED_SPEAKER[m["role"]], neutralize(m["content"])) for m in messages)
        turns.append(_Turn(label, neutralize(answer)))
    else:
        # MT-Bench layout: one answer per user turn, each assistant with its own earlier answers.
        answers = list(answer)
        if any(m["role"] == "assistant" for m in messages):
            raise ValueError("a list of answers needs a question made of user turns only")
        users = sum(m["role"] == "user" for m in messages)
        if users != len(answers) or not all(isinstance(a, str) for a in answers):
            raise ValueError(f"got {len(answers)} answers for {users} user turns")
        pending = iter(answers)
        for m in messages:
            if m["role"] == "system":
                turns.append(_Turn("System Prompt", neutralize(m["content"])))
            else:
                turns.append(_Turn("User", neutralize(m["content"])))
                turns.append(_Turn(label, neutralize(next(pending))))
    return _Assistant(label=label, answer=turns[-1].content, turns=tuple(turns))


def _is_single_turn(messages: list[dict[str, str]], answers: Sequence[Answer]) -> bool:
    return len(messages) == 1 and all(isinstance(a, str) or len(a) == 1 for a in answers)


def render_pairwise(
    protocol: Protocol,
    question: Question,
    answer_a: Answer,
    answer_b: Answer,
    scale: int = DEFAULT_SCALE,
    *,
    structured: bool = False,
) -> list[dict[str, str]]:
    """Chat messages (system + user) asking a judge to compare two answers.

    `protocol` is "direct" (### Answer: A/B/C) or "combined" (### Score Assistant A/B: X/scale).
    `question` is a string or a list of {role, content} messages; an answer is a string (the reply
    to the last user message) or one string per user turn (MT-Bench). `structured=True` asks for
    JSON matching `schema_for(protocol, scale)` instead of the ### lines.

    >>> msgs = render_pairwise("combined", "2+2?", "4", "5", scale=10)
    >>> [m["role"] for m in msgs]
    ['system', 'user']
    """
    if protocol not in ("direct", "combined"):
        raise ValueError(
            f"render_pairwise takes 'direct' or 'combined'; got {protocol!r} (use render_single)"
        )
    _check_scale(scale)
    messages = _messages(question)
    assistants = [
        _assistant("Assistant A", messages, answer_a),
        _assistant("Assistant B", messages, answer_b),
    ]
    single_turn = _is_single_turn(messages, [answer_a, answer_b])
    system = _render(
        "system_pairwise.j2",
        protocol=protocol,
        scale=scale,
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


def render_single(
    question: Question, answer: Answer, scale: int = DEFAULT_SCALE, *, structured: bool = False
) -> list[dict[str, str]]:
    """Chat messages (system + user) asking a judge to score one answer alone (independent protocol).

    >>> render_single("2+2?", "4")[1]["content"].splitlines()[0]
    '[User Question]'
    """
    _check_scale(scale)
    messages = _messages(question)
    single_turn = _is_single_turn(messages, [answer])
    system = _render("system_single.j2", scale=scale, structured=structured, multi_turn=not single_turn)
    user = _render(
        "conversation.j2",
        single_turn=single_turn,
        question=neutralize(messages[0]["content"]),
        assistants=[_assistant("Assistant", messages, answer)],
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_reprompt(
    protocol: Protocol, scale: int = DEFAULT_SCALE, *, structured: bool = False
) -> dict[str, str]:
    """The one follow-up user message sent after a parse failure, asking for the final answer only.

    The caller appends the judge's previous reply as an assistant message, then this message.

    >>> render_reprompt("independent")["content"].splitlines()[-3]
    '### Overall Score: X/10'
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    _check_scale(scale)
    return {
        "role": "user",
        "content": _render("reprompt.j2", protocol=protocol, scale=scale, structured=structured),
    }
