"""Multi-turn prompts as chat messages: the user turns with the shared earlier answers between them.

A prompt of n user turns (MT-Bench has two) is answered the same way for every candidate: turns
1..n-1 are answered once per prompt (see `factory.workflows.generation`) and every candidate answers
turn n after that shared history. So the candidates of a prompt differ only in their last answer,
and the conversation up to the last user turn is one prompt that the judge, the rationale writer
and TRL's preference rows can all share (docs/architecture.md, "Multi-turn prompts").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from factory.config import SingleAgentWorkflow, Workflow

Message = dict[str, str]


def earlier_turns_role(workflows: Sequence[Workflow]) -> str:
    """Who answers the earlier turns of every multi-turn prompt: the first workflow's first generator."""
    first = workflows[0]
    return first.generators[0] if isinstance(first, SingleAgentWorkflow) else first.generator


def prompt_messages(turns: Sequence[str], earlier: Sequence[str]) -> list[Message]:
    """The conversation a last answer replies to: user turns with the earlier answers between them.

    >>> [m["role"] for m in prompt_messages(["Write a haiku.", "Now in French."], ["Rain falls..."])]
    ['user', 'assistant', 'user']
    """
    if len(earlier) != len(turns) - 1:
        # A row whose history is missing would silently become [user, user]: refuse instead.
        raise ValueError(f"{len(turns)} user turns need {len(turns) - 1} earlier answers, got {len(earlier)}")
    messages: list[Message] = []
    for turn, answer in zip(turns, [*earlier, None]):
        messages.append({"role": "user", "content": turn})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
    return messages


def earlier_answers(candidate: Mapping[str, Any]) -> list[str]:
    """The shared answers a candidate row's last answer follows: its `answers` but the last."""
    return list(candidate.get("answers") or [])[:-1]
