"""The circuit breaker: stop calling an endpoint that is down or refuses us, instead of spending
every call's retries (and the build's time) on it.

One circuit per endpoint (model string + api_base). Failed attempts are counted as they complete,
whichever call they belong to and whenever it started, so calls that all started before the first
failure (a full set of concurrency slots, or calls that took a slot while others backed off) still
open it, and once it is open every attempt not yet sent, first try or retry, is refused.

* Counted: attempts that fail with a retryable provider error (5xx, connection refused, timeout,
  malformed or empty reply). `threshold` of them in a row open the circuit.
* 429 neither counts nor resets: the endpoint is up and asks us to slow down, which backoff does.
* Not counted: a bad request or an unparseable reply, which is one item's fault, not the endpoint's.
* `AuthError` (401/403) opens it at once: a rejected key does not get better by retrying.
* Any successful reply ends the streak. An open circuit stays open for the gateway's life: the
  stage stops, the user fixes the endpoint and resumes (a new gateway).
"""

from __future__ import annotations

import threading

from factory.llm.errors import AuthError, CircuitOpenError, LLMError, RateLimitError


def endpoint_label(model: str, api_base: str | None) -> str:
    """How messages name an endpoint: the model, and where it is served when that is not the default."""
    return f"{model} at {api_base}" if api_base else model


class CircuitBreaker:
    """Thread-safe failure streaks per endpoint label (see the module docstring for the rules)."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._lock = threading.Lock()
        self._streak: dict[str, int] = {}
        self._open: dict[str, tuple[str, int | None]] = {}  # label -> (why, status of the opening failure)

    def check(self, label: str, model: str) -> None:
        """Raise `CircuitOpenError` when the circuit of `label` is open."""
        with self._lock:
            opened = self._open.get(label)
        if opened is not None:
            why, status = opened
            raise CircuitOpenError(
                f"{label}: circuit open: {why}; fix it and finish with --resume", model=model, status=status
            )

    def record_success(self, label: str) -> None:
        with self._lock:
            self._streak[label] = 0

    def record_failure(self, label: str, error: LLMError) -> None:
        """Count one failed attempt; opens the circuit when that makes the endpoint look down."""
        if isinstance(error, RateLimitError) or not (error.retryable or isinstance(error, AuthError)):
            return
        with self._lock:
            if label in self._open:
                return
            if isinstance(error, AuthError):
                self._open[label] = (f"credentials rejected ({error})", error.status)
                return
            streak = self._streak.get(label, 0) + 1
            self._streak[label] = streak
            if streak >= self.threshold:
                self._open[label] = (
                    f"{streak} failed attempts in a row, the endpoint looks down "
                    f"(last: {error.reason}: {error})"[:300],
                    error.status,
                )

    def is_open(self, label: str) -> bool:
        with self._lock:
            return label in self._open

    def open_circuits(self) -> dict[str, str]:
        """Endpoint label -> why its circuit opened, for every open circuit."""
        with self._lock:
            return {label: why for label, (why, _) in sorted(self._open.items())}
