"""The gateway's typed error tree. litellm's exceptions are translated into these in one place
(`_translate.py`); nothing else in the code base branches on litellm."""

from __future__ import annotations


class LLMError(Exception):
    """A model call failed. `retryable` says whether trying again may help."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(" ".join(message.split())[:500])
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.raw = raw

    @property
    def reason(self) -> str:
        """Short machine-readable reason used in failure tables."""
        return type(self).__name__


class AuthError(LLMError):
    """Missing or rejected credentials."""


class BadRequestError(LLMError):
    """The provider rejected the request itself (context too long, unknown parameter...)."""


class RateLimitError(LLMError):
    """429: slow down; `retry_after` holds the provider's hint in seconds when it sent one, and
    `server_limits` its `x-ratelimit-*` headers (a `rate_limit_headers.ServerLimits`) when it sent them."""

    retryable = True
    server_limits: object | None = None


class LLMTimeoutError(LLMError):
    """The call did not finish within the per-call timeout."""

    retryable = True


class ProviderError(LLMError):
    """5xx, connection errors and malformed responses from the provider."""

    retryable = True


class EmptyReplyError(ProviderError):
    """HTTP 200 whose reply text is empty or only whitespace (and carries no tool call).

    An empty answer is never a usable candidate, verdict or rationale, so it is retried like a 5xx
    and never cached; once retries are spent the caller records a failure instead of a blank row.
    """


class OutputParseError(LLMError):
    """The reply did not match the requested JSON schema. `raw` holds the text, so it stays data."""


class BudgetExceededError(LLMError):
    """A configured budget (calls, tokens, cost) would be exceeded by another call."""


class CircuitOpenError(LLMError):
    """The model's endpoint is refused for the rest of this gateway's life: it failed too many
    attempts in a row, or rejected our credentials once. The stage stops instead of spinning.
    `status` is the HTTP status of the failure that opened it (401/403 for credentials), if any."""
