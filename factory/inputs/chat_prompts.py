"""A chat `messages` column (OpenAI/TRL `role`/`content`, or ShareGPT `from`/`value`) read as prompt turns.

A prompt here is its user turns (`factory.inputs.prompt_sources.Prompt.turns`): the factory answers the turns before
the last once per prompt, with the first generator, and the candidates differ only in their answer to
the last turn (docs/architecture.md, "Multi-turn prompts"). So a source conversation becomes:

* its user turns, in order; the assistant turns between them are *not* kept: they are answered
  afresh, so the shared history is written by a model of this build, as for MT-Bench;
* a trailing assistant turn is dropped: it is the source's reference answer to the last user turn,
  which is exactly what the candidates are generated for;
* refused (a rejected prompt with its reason, in the failures table) when the factory cannot state it
  faithfully: a system message (prompts carry no system prompt, and dropping it would change the
  task), a first turn that is not the user's, two turns of one role in a row, other roles (tool,
  function), content that is not text, an empty user turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# ShareGPT and a few other Hub conventions -> the chat roles.
ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "system": "system",
}


def looks_like_chat(value: Any) -> bool:
    """A list of mappings: what `datasets` gives for a `messages` column."""
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(m, dict) for m in value)


def _role_and_content(message: dict[str, Any]) -> tuple[Any, Any]:
    if "role" in message:
        return message.get("role"), message.get("content")
    return message.get("from"), message.get("value")


def chat_turns(messages: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], None] | tuple[None, str]:
    """(user turns, None) for a usable conversation, else (None, reason it was refused)."""
    turns: list[str] = []
    expected = "user"
    for number, message in enumerate(messages, start=1):
        raw_role, content = _role_and_content(message)
        role = ROLE_ALIASES.get(str(raw_role).lower()) if isinstance(raw_role, str) else None
        if role is None:
            return (
                None,
                f"chat_unsupported_role: message {number} has role {str(raw_role)[:40]!r} (user and assistant only)",
            )
        if role == "system":
            return None, (
                f"chat_system_message: message {number} is a system message; prompts are user turns only, "
                "so drop it from the source or filter these rows out"
            )
        if role != expected:
            first = (
                "the first message is the assistant's"
                if number == 1
                else f"message {number} repeats role {role}"
            )
            return (
                None,
                f"chat_roles_not_alternating: {first} (a conversation alternates user, assistant, user...)",
            )
        if not isinstance(content, str):
            return None, f"chat_content_not_text: message {number} content is {type(content).__name__}"
        if role == "user":
            if not content.strip():
                return None, f"chat_empty_user_turn: message {number}"
            turns.append(content)
        expected = "assistant" if role == "user" else "user"
    return tuple(turns), None
