"""Usage accounting per call, per role, per model and per tag (workflow, judge setting...)."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

_FIELDS = (
    "calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_s",
    "retries",
    "errors",
    "batch_calls",
    "batch_cost_usd",
)
# The states a batch of batch mode goes through, as progress shows them (`batch.py`).
BATCH_STATES = ("submitted", "in_progress", "finalizing", "done")


@dataclass
class _Totals:
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    retries: int = 0
    errors: int = 0
    # Calls answered through a provider's batch API, and their cost (batch prices; part of the above).
    batch_calls: int = 0
    batch_cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _FIELDS}
        out["cost_usd"] = round(self.cost_usd, 8)
        out["batch_cost_usd"] = round(self.batch_cost_usd, 8)
        out["latency_s"] = round(self.latency_s, 4)
        return out


@dataclass
class UsageLedger:
    """Thread-safe running totals. `calls` counts calls that reached a model (cache hits excluded)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _total: _Totals = field(default_factory=_Totals)
    _by: dict[str, dict[str, _Totals]] = field(
        default_factory=lambda: {
            "role": defaultdict(_Totals),
            "model": defaultdict(_Totals),
            "tag": defaultdict(_Totals),
        }
    )
    _batches: dict[str, str] = field(default_factory=dict)  # batch id -> one of BATCH_STATES

    def _buckets(self, role: str, model: str, tag: str | None) -> list[_Totals]:
        buckets = [self._total, self._by["role"][role], self._by["model"][model]]
        if tag:
            buckets.append(self._by["tag"][tag])
        return buckets

    def record_call(
        self,
        *,
        role: str,
        model: str,
        tag: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
        latency_s: float,
        batch: bool = False,
    ) -> None:
        """One call that reached a model; `batch`: answered through a batch API, at the batch price."""
        with self._lock:
            for t in self._buckets(role, model, tag):
                t.calls += 1
                t.prompt_tokens += prompt_tokens
                t.completion_tokens += completion_tokens
                t.cost_usd += cost_usd
                t.latency_s += latency_s
                if batch:
                    t.batch_calls += 1
                    t.batch_cost_usd += cost_usd

    def record_batch_state(self, batch_id: str, state: str) -> None:
        """Where a batch of batch mode stands (one of `BATCH_STATES`), for progress and the manifest."""
        with self._lock:
            self._batches[batch_id] = state

    def record_cache_hit(self, *, role: str, model: str, tag: str | None) -> None:
        with self._lock:
            for t in self._buckets(role, model, tag):
                t.cache_hits += 1

    def record_retry(self, *, role: str, model: str, tag: str | None) -> None:
        with self._lock:
            for t in self._buckets(role, model, tag):
                t.retries += 1

    def record_error(self, *, role: str, model: str, tag: str | None) -> None:
        with self._lock:
            for t in self._buckets(role, model, tag):
                t.errors += 1

    @property
    def calls(self) -> int:
        return self._total.calls

    @property
    def total_tokens(self) -> int:
        return self._total.prompt_tokens + self._total.completion_tokens

    @property
    def cost_usd(self) -> float:
        return self._total.cost_usd

    def snapshot(self) -> dict[str, Any]:
        """Totals plus `by_role`, `by_model` and `by_tag` breakdowns, JSON-ready."""
        with self._lock:
            out = self._total.as_dict()
            for kind in ("role", "model", "tag"):
                out[f"by_{kind}"] = {k: v.as_dict() for k, v in sorted(self._by[kind].items())}
            if self._batches:
                states = list(self._batches.values())
                out["batches"] = {state: states.count(state) for state in BATCH_STATES}
        return out
