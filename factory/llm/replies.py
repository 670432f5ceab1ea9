"""What both transports share: the record kept of a reply, and the Retry-After hint of a 429.

Keeping these in one place is what makes the lean transport and the litellm path give the same
records: the same fields, the same empty-reply rule and the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.llm.errors import EmptyReplyError, ProviderError


def reply_record(
    model: str,
    *,
    text: str | None,
    finish_reason: str | None,
    has_tool_call: bool,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
    latency_s: float,
) -> dict[str, Any]:
    """The cached record of one reply. A reply without text (empty or only whitespace) and without a
    tool call is an `EmptyReplyError`: an HTTP 200 with nothing in it is a provider failure, not an
    answer, so it is retried and never cached."""
    if not (text or "").strip() and not has_tool_call:
        shown = "no message content" if text is None else f"empty reply text {text!r}"
        raise EmptyReplyError(f"{model}: {shown} (finish_reason={finish_reason})", model=model)
    return {
        "text": text or "",
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": cost_usd,
        "latency_s": round(latency_s, 6),
        "finish_reason": finish_reason,
    }


def no_choices(model: str, status: int | None = None) -> ProviderError:
    return ProviderError(f"{model}: malformed response without choices", model=model, status=status)


def retry_after_seconds(headers: Mapping[str, Any] | None) -> float | None:
    """Retry-After (seconds) or retry-after-ms from response headers; None when absent or unreadable
    (an HTTP-date Retry-After is ignored: backoff applies)."""
    if not headers:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000.0)
        seconds = headers.get("retry-after")
        if seconds is not None:
            return max(0.0, float(seconds))
    except (TypeError, ValueError):
        return None
    return None
