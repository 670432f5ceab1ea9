"""The one place that maps litellm's exceptions onto our error tree."""

from __future__ import annotations

from typing import Any

import litellm

from factory.llm.breaker import endpoint_label
from factory.llm.errors import (
    AuthError,
    BadRequestError,
    LLMError,
    LLMTimeoutError,
    ProviderError,
    RateLimitError,
)


def _retry_after(exc: BaseException) -> float | None:
    """Read Retry-After (seconds) or retry-after-ms from whatever response headers litellm kept."""
    header_sources: list[Any] = [
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ]
    for headers in header_sources:
        if not headers:
            continue
        try:
            millis = headers.get("retry-after-ms")
            if millis is not None:
                return max(0.0, float(millis) / 1000.0)
            seconds = headers.get("retry-after")
            if seconds is not None:
                return max(0.0, float(seconds))
        except (TypeError, ValueError):
            continue
    return None


def translate(exc: BaseException, model: str, api_base: str | None = None) -> LLMError:
    """Return our typed error for any exception raised by a litellm call to `model` (at `api_base`)."""
    if isinstance(exc, LLMError):
        return exc
    status = getattr(exc, "status_code", None)
    message = f"{model}: {type(exc).__name__}: {exc}"
    kwargs: dict[str, Any] = {"model": model, "status": status}
    if isinstance(exc, litellm.exceptions.RateLimitError) or status == 429:
        return RateLimitError(message, retry_after=_retry_after(exc), **kwargs)
    if isinstance(exc, litellm.exceptions.Timeout) or isinstance(exc, TimeoutError):
        return LLMTimeoutError(message, **kwargs)
    if isinstance(exc, (litellm.exceptions.AuthenticationError, litellm.exceptions.PermissionDeniedError)):
        # Says which endpoint refused which credentials, so the user knows what to fix; the caller
        # blanks the key out should the provider have echoed it.
        where = endpoint_label(model, api_base)
        return AuthError(f"{where}: credentials rejected (HTTP {status}): {type(exc).__name__}: {exc}", **kwargs)
    if isinstance(exc, (litellm.exceptions.BadRequestError, litellm.exceptions.NotFoundError)) and not (
        status and status >= 500
    ):
        return BadRequestError(message, **kwargs)
    # 5xx, connection resets, unparseable bodies: all worth another try.
    return ProviderError(message, **kwargs)
