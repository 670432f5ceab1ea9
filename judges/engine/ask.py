"""One judge conversation through the gateway: ask, parse, and re-prompt once on a parse failure.

Failures never escape as exceptions: a reply that cannot be read, or a model call that failed, comes
back as an unscored `Parsed` with its reason and every raw text received, so that one item's trouble
stays on that item's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factory.llm import Completion, Gateway, LLMError, ModelSpec, OutputParseError
from factory.records import Stop, stop_of
from judges.engine.outcome import Usage, error_reason
from judges.protocols import (
    INVALID_STRUCTURED,
    TRUNCATED,
    Parsed,
    Protocol,
    parse_combined,
    parse_direct,
    parse_single_score,
    render_reprompt,
    schema_for,
    verdict_from_structured,
)


@dataclass(frozen=True)
class JudgeContext:
    """What every judge graph run gets injected: the gateway, and the tag its usage is recorded under."""

    gateway: Gateway
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A judge model as the gateway takes it, the label its usage is recorded under, and its name."""

    model: str | ModelSpec
    label: str
    name: str


def resolve_model(gateway: Gateway, name: str, api_base: str | None = None) -> Target:
    """A configured role when `name` is one, else the litellm model string `name` at `api_base`.

    >>> resolve_model(Gateway({"judge": ModelSpec(model="openai/x")}), "judge").label
    'judge'
    """
    if name in gateway.roles:
        return Target(model=name, label=name, name=name)
    return Target(model=ModelSpec(model=name, api_base=api_base), label="judge", name=name)


@dataclass(frozen=True, slots=True)
class Asked:
    """What one conversation gave: the parse (possibly unscored), the raw replies and their usage;
    `stop` when a call was refused because the build must stop (budget, circuit)."""

    parsed: Parsed
    raws: tuple[str, ...]
    usage: Usage
    stop: Stop | None = None


def parse_reply(protocol: Protocol, text: str, scale: int) -> Parsed:
    """Parse a free-text judge reply of `protocol` at `scale`."""
    if protocol == "direct":
        return parse_direct(text)
    if protocol == "combined":
        return parse_combined(text, scale)
    return parse_single_score(text, scale)


def _unless_cut(parsed: Parsed, protocol: Protocol, text: str, scale: int) -> Parsed:
    """A free-text reply stopped at max_tokens: only its last line can be cut off (a "10/10" cut to
    "1"), so its verdict stands only if the reply without that line says the same."""
    if not parsed.scored:
        return parsed
    complete_lines = text.rstrip("\n").rpartition("\n")[0]
    return (
        parsed
        if parse_reply(protocol, complete_lines, scale) == parsed
        else Parsed(unscored_reason=TRUNCATED)
    )


async def ask(
    gateway: Gateway,
    target: Target,
    messages: list[dict[str, Any]],
    *,
    protocol: Protocol,
    scale: int,
    structured: bool,
    tag: str | None,
) -> Asked:
    """Send `messages`, parse the reply as `protocol`, and on failure re-prompt exactly once.

    The re-prompt continues the same conversation (the unreadable reply, then a request for the
    final answer only). A second failure is final: the result is unscored with the reason of the
    last reply, and both raw replies are kept.
    """
    schema = schema_for(protocol, scale) if structured else None
    raws: list[str] = []
    completions: list[Completion] = []
    parsed = Parsed(unscored_reason=INVALID_STRUCTURED)
    for attempt in range(2):
        try:
            completion = await gateway.complete(
                target.model, messages, schema=schema, tag=tag, role=target.label
            )
        except OutputParseError as exc:
            # Structured output that did not validate is a parse failure, not a broken call.
            raws.append(exc.raw or "")
            parsed = Parsed(unscored_reason=INVALID_STRUCTURED)
        except LLMError as exc:
            return Asked(
                Parsed(unscored_reason=error_reason(exc)), tuple(raws), Usage.of(completions), stop_of(exc)
            )
        else:
            completions.append(completion)
            raws.append(completion.text)
            parsed = (
                verdict_from_structured(protocol, completion.parsed, scale)
                if completion.parsed is not None
                else parse_reply(protocol, completion.text, scale)
            )
            if completion.parsed is None and completion.finish_reason == "length":
                parsed = _unless_cut(parsed, protocol, completion.text, scale)
        if parsed.scored or attempt == 1:
            break
        messages = [
            *messages,
            {"role": "assistant", "content": raws[-1]},
            render_reprompt(protocol, scale, structured=structured),
        ]
    return Asked(parsed, tuple(raws), Usage.of(completions))
