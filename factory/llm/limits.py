"""Limits that apply to every model call of a build: concurrency, retries, the circuit breaker and
the budget. Kept apart from the gateway so that loading a config does not import litellm (which
takes seconds), and a config error is reported at once."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from factory.llm.batch_settings import BatchSettings


class GatewaySettings(BaseModel):
    """Limits that apply to every model call of a build."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_concurrency: int = Field(64, ge=1, description="Maximum model calls in flight overall.")
    max_retries: int = Field(
        4, ge=0, le=20, description="Retries of a retryable failure (429, 5xx, timeout)."
    )
    backoff_base_s: float = Field(
        0.5, ge=0.0, description="First backoff delay; doubles each retry, with jitter."
    )
    backoff_max_s: float = Field(
        30.0, ge=0.0, description="Upper bound of one backoff delay (and of Retry-After)."
    )
    circuit_breaker_failures: int = Field(
        25,
        ge=1,
        description="Failed attempts in a row (5xx, timeouts, connection errors, empty or malformed "
        "replies; retries included, 429 not counted) on one endpoint that open its circuit: no more calls "
        "to it. A rejected API key (401/403) opens it at once.",
    )
    batch: BatchSettings = Field(
        default_factory=BatchSettings,
        description="Collection, polling and retries of models with `batch: true`.",
    )


class Budget(BaseModel):
    """Caps for one build, across all its resumes (calls already in the run's cache count).
    A cap of None means unlimited. Cache hits are free and never count.

    Calls in flight hold their worst case (prompt bound + max_tokens, priced), so no cap is
    overshot by concurrent calls; a call that would not fit is refused before it is sent."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_calls: int | None = Field(None, ge=0, description="Maximum model calls (cache hits excluded).")
    max_tokens: int | None = Field(
        None, ge=0, description="Maximum prompt + completion tokens, as the provider counts them."
    )
    max_cost_usd: float | None = Field(None, ge=0.0, description="Maximum spend in USD as priced by litellm.")
