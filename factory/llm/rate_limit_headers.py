"""What a provider says about its own rate limits: the `x-ratelimit-*` response headers.

OpenAI (and vLLM, Azure, Groq, OpenRouter and litellm's proxy, which copy it) send, per response::

    x-ratelimit-limit-requests: 500        x-ratelimit-limit-tokens: 30000
    x-ratelimit-remaining-requests: 499    x-ratelimit-remaining-tokens: 29800
    x-ratelimit-reset-requests: 120ms      x-ratelimit-reset-tokens: 6m0s

Anthropic sends `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` with an RFC 3339 time as
the reset. The limiter uses the remaining/reset pairs: the server's own count of its window, whatever
that window is. The limit alone is kept for the record only: providers use it for windows of a
minute or a day alike, so it says nothing reliable about a rate.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The headers whose presence makes a response worth parsing (one cheap lookup each).
_MARKERS = (
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining",
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class ServerLimits:
    """A response's account of the server's limits; None where a header was absent or unreadable."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


def read_rate_limit_headers(headers: Mapping[str, Any] | None) -> ServerLimits | None:
    """The `ServerLimits` of a response's headers, or None when it carries none (the usual case: a
    few dict lookups). `headers` must look names up case-insensitively (aiohttp's and httpx's do) or
    hold them in lower case (litellm's `additional_headers`)."""
    if not headers or not any(name in headers for name in _MARKERS):
        return None
    return ServerLimits(
        limit_requests=_count(headers, "x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
        remaining_requests=_count(
            headers, "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"
        ),
        reset_requests_s=_reset(headers, "x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset"),
        limit_tokens=_count(headers, "x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit"),
        remaining_tokens=_count(
            headers, "x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"
        ),
        reset_tokens_s=_reset(headers, "x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset"),
    )


def duration_seconds(text: str) -> float | None:
    """`120ms`, `1s`, `6m0s`, `1h2m3.5s`, a plain number of seconds, or an RFC 3339 time (seconds
    from now); None when unreadable."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if parts and "".join(f"{n}{u}" for n, u in parts) == text:
        return sum(float(n) * _UNIT_S[u] for n, u in parts)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _count(headers: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return max(0, int(float(str(value))))
            except ValueError:
                return None
    return None


def _reset(headers: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return duration_seconds(str(value))
    return None
