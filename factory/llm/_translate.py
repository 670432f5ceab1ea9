"""The one place that maps litellm's exceptions onto our error tree."""

from __future__ import annotations

from typing import Any

from factory.llm._litellm_env import litellm
from factory.llm.breaker import endpoint_label
from factory.llm.errors import (
    AuthError,
    BadRequestError,
    LLMError,
    LLMTimeoutError,
    ProviderError,
    RateLimitError,
)
from factory.llm.rate_limit_headers import read_rate_limit_headers
from factory.llm.replies import retry_after_seconds


def _retry_after(exc: BaseException) -> float | None:
    """Retry-After (seconds) or retry-after-ms from whatever response headers litellm kept."""
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        seconds = retry_after_seconds(headers)
        if seconds is not None:
            return seconds
    return None


def translate(exc: BaseException, model: str, api_base: str | None = None) -> LLMError:
    """Return our typed error for any exception raised by a litellm call to `model` (at `api_base`)."""
    if isinstance(exc, LLMError):
        return exc
    status = getattr(exc, "status_code", None)
    message = f"{model}: {type(exc).__name__}: {exc}"
    kwargs: dict[str, Any] = {"model": model, "status": status}
    if isinstance(exc, litellm.exceptions.RateLimitError) or status == 429:
        error = RateLimitError(message, retry_after=_retry_after(exc), **kwargs)
        error.server_limits = read_rate_limit_headers(
            getattr(getattr(exc, "response", None), "headers", None)
        )
        return error
    if isinstance(exc, (litellm.exceptions.Timeout, TimeoutError)):
        return LLMTimeoutError(message, **kwargs)
    # 401/403 by status too: litellm words some 403s as a generic APIError.
    if isinstance(
        exc, (litellm.exceptions.AuthenticationError, litellm.exceptions.PermissionDeniedError)
    ) or (status in (401, 403)):
        # Says which endpoint refused which credentials, so the user knows what to fix; the caller
        # blanks the key out should the provider have echoed it.
        where = endpoint_label(model, api_base)
        return AuthError(
            f"{where}: credentials rejected (HTTP {status}): {type(exc).__name__}: {exc}", **kwargs
        )
    if isinstance(exc, (litellm.exceptions.BadRequestError, litellm.exceptions.NotFoundError)) and not (
        status and status >= 500
    ):
        return BadRequestError(message, **kwargs)
    # 5xx, connection resets, unparseable bodies: all worth another try.
    return ProviderError(message, **kwargs)
