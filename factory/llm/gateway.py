"""The model gateway: every model call in the factory goes through `Gateway.complete`.

Calls reach a model through one of two transports: litellm (every provider, `litellm_transport.py`)
or, for OpenAI-compatible endpoints, the lean HTTP client (`lean.py`), which gives the same records,
cache keys, errors and prices at a fraction of litellm's CPU per call; `ModelSpec.transport` picks.
Each transport's module (and litellm with the first) is imported on first use.

It resolves a role to a model, bounds concurrency (overall and per model), retries transient
failures with exponential backoff that honours Retry-After, stops calling an endpoint that is down
(`breaker.py`), enforces per-call timeouts and budgets (`budget_guard.py`), asks for JSON-schema
output where the backend supports it, accounts usage and cost, and answers repeated requests from
the run's persistent cache, then from the cache shared between builds (`shared_cache.py`) when the
build has one. A build's gateway also writes the run's cost ledger (`cost_ledger.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from factory.llm.batch import BatchCalls
from factory.llm.breaker import CircuitBreaker, endpoint_label
from factory.llm.budget_guard import BudgetGuard, Spend
from factory.llm.cache import RequestCache, request_key
from factory.llm.cost_ledger import CostLedger, EntryKind
from factory.llm.errors import (
    BudgetExceededError,
    CircuitOpenError,
    LLMError,
    OutputParseError,
    RateLimitError,
)
from factory.llm.limits import Budget, GatewaySettings
from factory.llm.models import ModelSpec
from factory.llm.price_map import batch_token_cost
from factory.llm.rate_limit import Cost, LimitsHub, LocalLimits, ModelLimits, Outcome, limits_of
from factory.llm.rate_limit_headers import ServerLimits
from factory.llm.shared_cache import SharedCache
from factory.llm.usage import UsageLedger

if TYPE_CHECKING:
    from factory.llm.lean import LeanTransport
    from factory.llm.litellm_transport import LiteLLMTransport

Message = dict[str, Any]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """One finished model call (or a cache hit of one)."""

    text: str
    parsed: BaseModel | None
    model: str
    role: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool
    request_hash: str
    finish_reason: str | None = None


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_json_reply(text: str, schema: type[BaseModel], model: str) -> BaseModel:
    """Validate a JSON reply against `schema`; a failure is an `OutputParseError` carrying the raw text."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        return schema.model_validate(json.loads(body))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise OutputParseError(
            f"{model}: reply does not match {schema.__name__}: {first}", model=model, raw=text
        ) from None


class Gateway:
    """Async access to models by role. One instance per build (or per calibration run).

    Example::

        gateway = Gateway({"judge": ModelSpec(model="local/smollm2")}, cache_path=run_dir / "cache.sqlite")
        reply = await gateway.complete("judge", [{"role": "user", "content": "Hi"}])

    Budget: every call holds its worst case (`_worst_case`) against the caps while in flight, so
    `max_calls` is exact and `max_tokens` / `max_cost_usd` are never overshot as long as each call
    stays within its worst case (the provider honours `max_tokens`; the reply is priced as the spec's
    model); a call that no longer fits is refused with `BudgetExceededError` before it is sent, which
    leaves less than one call's worst case of the cap unused. Cache hits are free.

    Failure: an endpoint that fails `settings.circuit_breaker_failures` attempts in a row, or rejects
    the credentials once, gets no more requests from this gateway (`CircuitOpenError`; `breaker`).

    Rate limits (`rate_limit.py`): a model with `rpm`, `tpm`, `input_tpm`, `output_tpm` or
    `adaptive_concurrency`, or whose server sent `x-ratelimit-*` headers, has every attempt wait for
    its limiter in `limits_hub`: this process's (default), or one shared by every process of a build
    (`rate_limit_dask.DaskLimits`). Other models pay one attribute check per attempt.
    """

    def __init__(
        self,
        roles: Mapping[str, ModelSpec],
        settings: GatewaySettings | None = None,
        *,
        cache_path: Path | None = None,
        budget: Budget | None = None,
        seed: int = 0,
        budget_includes_cache: bool = False,
        limits_hub: LimitsHub | None = None,
        shared_cache_dir: Path | None = None,
        ledger: CostLedger | None = None,
    ) -> None:
        self.roles = dict(roles)
        self.settings = settings or GatewaySettings()
        self.budget = budget or Budget()
        self.cache = RequestCache(cache_path)
        # Read after the run's cache, written with it; never counted against the budget (other builds paid).
        self.shared = SharedCache(shared_cache_dir) if shared_cache_dir is not None else None
        self.ledger = ledger
        self.usage = UsageLedger()
        self._rng = random.Random(seed)
        self._limits: dict[int, tuple[asyncio.Semaphore, dict[str, asyncio.Semaphore]]] = {}
        self.breaker = CircuitBreaker(self.settings.circuit_breaker_failures)
        self._guard = BudgetGuard(self.budget, self.usage, self._prior_spend)
        # A build's cache holds exactly the calls of its earlier invocations, so a resumed build counts
        # them against its budget; a cache shared by many runs (calibration) must not.
        self._prior: Spend | None = None if budget_includes_cache else Spend()
        self._lean: LeanTransport | None = None
        self._litellm: LiteLLMTransport | None = None
        # Batch mode (`batch.py`): batches are recorded next to the cache, in the run folder.
        self._batches: BatchCalls | None = None
        self._batch_dir = cache_path.parent / "batches" if cache_path is not None else None
        self._batch_ledgered: set[str] = set()
        self.limits_hub: LimitsHub = limits_hub if limits_hub is not None else LocalLimits()
        # Endpoints limited only because their server sent rate-limit headers (empty: the usual case).
        self._learned: set[str] = set()

    # -- resolution -------------------------------------------------------------------------
    def spec(self, target: str | ModelSpec) -> ModelSpec:
        """The model spec of a role name (or the spec itself)."""
        if isinstance(target, ModelSpec):
            return target
        try:
            return self.roles[target]
        except KeyError:
            known = ", ".join(sorted(self.roles)) or "none"
            raise LLMError(f"unknown model role '{target}' (known roles: {known})") from None

    def _semaphores(self, spec: ModelSpec) -> tuple[asyncio.Semaphore, asyncio.Semaphore]:
        # Semaphores belong to one event loop; Prefect tasks may run graphs on their own loops.
        loop_id = id(asyncio.get_running_loop())
        overall, per_model = self._limits.setdefault(
            loop_id, (asyncio.Semaphore(self.settings.max_concurrency), {})
        )
        key = _endpoint_key(spec)
        if key not in per_model:
            # The embedded model generates one call at a time (one llama.cpp worker thread): more in
            # flight would only queue inside it, with their timeouts running while they wait.
            per_model[key] = asyncio.Semaphore(1 if spec.is_local else spec.max_concurrency)
        return overall, per_model[key]

    def _transport(self, spec: ModelSpec) -> LeanTransport | LiteLLMTransport:
        """The spec's transport, created (and its module imported) on first use."""
        if spec.uses_lean_transport:
            if self._lean is None:
                from factory.llm.lean import LeanTransport

                self._lean = LeanTransport()
            return self._lean
        if self._litellm is None:
            from factory.llm.litellm_transport import LiteLLMTransport

            self._litellm = LiteLLMTransport()
        return self._litellm

    # -- the call ---------------------------------------------------------------------------
    def _request(
        self, spec: ModelSpec, messages: list[Message], schema: type[BaseModel] | None, sample: int
    ) -> dict[str, Any]:
        """The normalized request: everything that changes the answer, nothing secret."""
        request: dict[str, Any] = {
            "model": spec.model,
            "api_base": spec.api_base,
            "messages": messages,
            "temperature": spec.temperature,
            "max_tokens": spec.max_tokens,
            "top_p": spec.top_p,
            "seed": (spec.seed or 0) + sample,
            "params": spec.params,
        }
        if schema is not None:
            request["schema"] = schema.model_json_schema()
            request["structured_output"] = spec.structured_output
        return request

    def _call_kwargs(
        self, spec: ModelSpec, request: dict[str, Any], schema: type[BaseModel] | None
    ) -> dict[str, Any]:
        messages = request["messages"]
        kwargs: dict[str, Any] = {
            "model": spec.model,
            "messages": messages,
            "temperature": spec.temperature,
            "max_tokens": spec.max_tokens,
            "seed": request["seed"],
            "timeout": spec.timeout_s,
            "num_retries": 0,  # retries are ours, so they honour Retry-After and show in usage
            "max_retries": 0,
            "drop_params": True,
            **spec.params,
        }
        if spec.top_p is not None:
            kwargs["top_p"] = spec.top_p
        if spec.api_base:
            kwargs["api_base"] = spec.api_base
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if key:
            kwargs["api_key"] = key
        elif spec.api_base and spec.model.startswith("openai/"):
            kwargs["api_key"] = "no-key"  # OpenAI-compatible local servers accept any key
        if schema is not None:
            json_schema = schema.model_json_schema()
            if spec.structured_output:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": False},
                }
            else:
                instruction = (
                    "\n\nReply with a single JSON object only, matching this JSON schema:\n"
                    + json.dumps(json_schema)
                )
                last = dict(messages[-1])
                last["content"] = f"{last['content']}{instruction}"
                kwargs["messages"] = [*messages[:-1], last]
        return kwargs

    def _prior_spend(self) -> Spend:
        """Calls, tokens and cost already in the cache when this gateway opened it (read once)."""
        if self._prior is None:
            capped = any(
                v is not None
                for v in (self.budget.max_calls, self.budget.max_tokens, self.budget.max_cost_usd)
            )
            self._prior = Spend(*self.cache.totals()) if capped else Spend()
        return self._prior

    def _worst_case(self, spec: ModelSpec, kwargs: dict[str, Any]) -> Spend:
        """The most one call can add to the budget: what it holds while in flight.

        Prompt tokens are bounded by the UTF-8 bytes of the JSON of the messages sent (and of the
        response schema): a byte-level BPE token (GPT, Llama 3, Qwen, SmolLM) covers at least one
        byte, and the JSON keys and quotes cover the chat template's few tokens per message. That is
        a true upper bound, unlike `litellm.token_counter`, which counts with one tokenizer for every
        model and costs about a millisecond per call; the price is reserving ~3-4x the real prompt,
        which only makes calls near a cap wait for others to settle. Completion tokens are bounded by
        `max_tokens` (always set on a `ModelSpec`) per choice. The cost is both priced with litellm's
        table for the spec's model (0 when unpriced, as such calls are accounted).
        """
        if not self._guard.caps_tokens_or_cost:
            return Spend(calls=1)  # nothing to estimate: only max_calls (or nothing) is capped
        sent = json.dumps([kwargs["messages"], kwargs.get("response_format")], ensure_ascii=False)
        prompt = len(sent.encode("utf-8"))
        completion = int(kwargs.get("max_tokens") or spec.max_tokens) * int(kwargs.get("n") or 1)
        cost = (
            batch_token_cost(spec.model, prompt, completion)[0]
            if spec.batch
            else self._transport(spec).estimate_cost(spec.model, prompt, completion)
        )
        return Spend(calls=1, tokens=prompt + completion, cost_usd=cost or 0.0)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        if retry_after is not None:
            return min(retry_after, s.backoff_max_s)
        return min(s.backoff_base_s * (2**attempt), s.backoff_max_s) * (0.5 + self._rng.random() / 2)

    async def complete(
        self,
        target: str | ModelSpec,
        messages: list[Message],
        *,
        role: str | None = None,
        schema: type[BaseModel] | None = None,
        sample: int = 0,
        tag: str | None = None,
    ) -> Completion:
        """Call the model of `target` (a role name or a `ModelSpec`) with chat `messages`.

        `schema` asks for JSON matching a pydantic model (validated; `OutputParseError` otherwise),
        `sample` distinguishes repeated samples of the same request, `tag` labels usage (workflow...).
        Raises an `LLMError` subclass when the call finally fails.
        """
        spec = self.spec(target)
        role_name = role or (target if isinstance(target, str) else spec.model)
        request = self._request(spec, messages, schema, sample)
        key = request_key(request)
        record = self.cache.get(key)
        answered_by: EntryKind = "replay"  # this build's own cache, or another build's shared one
        if record is None and self.shared is not None:
            record = self.shared.get(key)
            answered_by = "saved"
        cached = record is not None
        if record is not None:
            self.usage.record_cache_hit(role=role_name, model=spec.model, tag=tag)
            if self.ledger is not None:
                self.cache.add_entry(
                    self.ledger.entry(
                        answered_by, key=key, role=role_name, model=spec.model, tag=tag, record=record
                    )
                )
        elif spec.batch:  # batch mode: the batch commits its answers to the cache itself
            record = await self._batched(spec, request, key, schema, role_name, tag)
            if self.ledger is not None and key not in self._batch_ledgered:
                # The batch committed the reply to the cache when it arrived; its ledger row follows
                # here, once per request (identical requests share one batch row). A kill in between
                # leaves that one call out of the ledger, never in it twice.
                self._batch_ledgered.add(key)
                self.cache.add_entry(
                    self.ledger.entry(
                        "paid", key=key, role=role_name, model=spec.model, tag=tag, record=record
                    )
                )
            self._share(key, spec.model, record)
        else:
            record = await self._call_with_retries(spec, request, schema, role_name, tag)
            entry = (
                None
                if self.ledger is None
                else self.ledger.entry(
                    "paid", key=key, role=role_name, model=spec.model, tag=tag, record=record
                )
            )
            self.cache.put(key, spec.model, record, entry)
            self._share(key, spec.model, record)
        parsed = parse_json_reply(record["text"], schema, spec.model) if schema is not None else None
        return Completion(
            text=record["text"],
            parsed=parsed,
            model=spec.model,
            role=role_name,
            prompt_tokens=record["prompt_tokens"],
            completion_tokens=record["completion_tokens"],
            cost_usd=record["cost_usd"],
            latency_s=0.0 if cached else record["latency_s"],
            cached=cached,
            request_hash=key,
            finish_reason=record.get("finish_reason"),
        )

    async def _call_with_retries(
        self,
        spec: ModelSpec,
        request: dict[str, Any],
        schema: type[BaseModel] | None,
        role: str,
        tag: str | None,
    ) -> dict[str, Any]:
        endpoint = endpoint_label(spec.model, spec.api_base)
        kwargs = self._call_kwargs(spec, request, schema)
        secret = kwargs.get("api_key") if spec.api_key_env else None
        worst = self._worst_case(spec, kwargs)
        attempt = 0
        while True:
            try:
                record = await self._attempt(spec, kwargs, endpoint, worst, role, tag)
            except (CircuitOpenError, BudgetExceededError):
                # Refused before being sent. A call with failed attempts behind it has failed.
                if attempt > 0:
                    self.usage.record_error(role=role, model=spec.model, tag=tag)
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = _scrubbed(self._transport(spec).translate(exc, spec), secret)
                self.breaker.record_failure(endpoint, error)
                # Once the circuit is open a retry would only be refused: fail with the real reason.
                if (
                    error.retryable
                    and attempt < self.settings.max_retries
                    and not self.breaker.is_open(endpoint)
                ):
                    self.usage.record_retry(role=role, model=spec.model, tag=tag)
                    await asyncio.sleep(self._backoff(attempt, error.retry_after))
                    attempt += 1
                    continue
                self.usage.record_error(role=role, model=spec.model, tag=tag)
                raise error from None
            self.breaker.record_success(endpoint)
            return record

    async def _attempt(
        self, spec: ModelSpec, kwargs: dict[str, Any], endpoint: str, worst: Spend, role: str, tag: str | None
    ) -> dict[str, Any]:
        """One try of a call, holding a concurrency slot (and its rate-limit ticket, for a limited
        model) and its worst case against the budget."""
        self.breaker.check(endpoint, spec.model)
        overall, per_model = self._semaphores(spec)
        async with overall, per_model:
            if spec.rate_limited or (self._learned and _endpoint_key(spec) in self._learned):
                return await self._attempt_limited(spec, kwargs, endpoint, worst, role, tag)
            # Again once the slot is ours: the circuit may have opened while this call waited for it.
            self.breaker.check(endpoint, spec.model)
            return await self._send(spec, kwargs, worst, role, tag)

    async def _attempt_limited(
        self, spec: ModelSpec, kwargs: dict[str, Any], endpoint: str, worst: Spend, role: str, tag: str | None
    ) -> dict[str, Any]:
        """`_attempt` for a rate-limited model: wait for a ticket, send, report how it went."""
        key, limits = _endpoint_key(spec), limits_of(spec)
        ticket = await self.limits_hub.acquire(key, limits, _rate_cost(spec, kwargs, limits))
        outcome = Outcome("failed")
        try:
            # The circuit may have opened while this call waited for its ticket.
            self.breaker.check(endpoint, spec.model)
            record = await self._send(spec, kwargs, worst, role, tag, limited=True)
            server = record.pop("rate_limits", None)
            outcome = Outcome(
                "ok",
                record["prompt_tokens"],
                record["completion_tokens"],
                server=server if spec.rate_limit_headers else None,
            )
            return record
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # classified for the limiter, raised as it came
            error = exc if isinstance(exc, LLMError) else self._transport(spec).translate(exc, spec)
            if isinstance(error, RateLimitError):
                server = error.server_limits if spec.rate_limit_headers else None
                outcome = Outcome(
                    "rate_limited",
                    retry_after_s=error.retry_after,
                    server=server if isinstance(server, ServerLimits) else None,
                )
            raise
        finally:
            self.limits_hub.finish(key, ticket, outcome)

    async def _send(
        self,
        spec: ModelSpec,
        kwargs: dict[str, Any],
        worst: Spend,
        role: str,
        tag: str | None,
        limited: bool = False,
    ) -> dict[str, Any]:
        """The request itself, its worst case held against the budget while in flight."""
        reservation = await self._guard.reserve(worst, spec.model)
        try:
            record = await asyncio.wait_for(
                self._transport(spec).complete(spec, kwargs), spec.timeout_s + 5.0
            )
            # Recorded before the reservation goes, so the budget never sees this call as free.
            self.usage.record_call(
                role=role,
                model=spec.model,
                tag=tag,
                prompt_tokens=record["prompt_tokens"],
                completion_tokens=record["completion_tokens"],
                cost_usd=record["cost_usd"],
                latency_s=record["latency_s"],
            )
            if not limited and "rate_limits" in record:
                self._learn(spec, record.pop("rate_limits"))
            return record
        finally:
            self._guard.release(reservation)

    def _learn(self, spec: ModelSpec, server: ServerLimits) -> None:
        """The server of an unlimited model sent rate-limit headers: its calls go through a limiter now."""
        if spec.rate_limit_headers:
            key = _endpoint_key(spec)
            self.limits_hub.observe(key, limits_of(spec), server)
            self._learned.add(key)

    async def _batched(
        self,
        spec: ModelSpec,
        request: dict[str, Any],
        key: str,
        schema: type[BaseModel] | None,
        role: str,
        tag: str | None,
    ) -> dict[str, Any]:
        """A call of a batch-mode model: one row of a batch (`batch.py`), or a wait on the batch that
        already holds the same request (sent by this build, or by the killed build it resumes)."""
        if self._batches is None:
            self._batches = BatchCalls(
                self.settings.batch,
                self._batch_dir,
                self.cache,
                self.usage,
                max_retries=self.settings.max_retries,
                backoff=self._backoff,
            )
        collector = self._batches.collector(spec)
        kwargs = self._call_kwargs(spec, request, schema)
        endpoint = endpoint_label(spec.model, spec.api_base)
        reservation: Spend | None = None
        if not collector.joinable(key):  # a request in a batch already is paid for: nothing to reserve
            self.breaker.check(endpoint, spec.model)
            reservation = await self._guard.reserve(self._worst_case(spec, kwargs), spec.model)
        try:
            record = self.cache.get(key) if reservation is not None else None
            if record is None:  # (else answered by a batch while this call waited for the budget)
                record = await collector.submit(key, kwargs, role, tag)
        except LLMError as error:
            self.usage.record_error(role=role, model=spec.model, tag=tag)
            self.breaker.record_failure(endpoint, error)
            raise _scrubbed(error, kwargs.get("api_key") if spec.api_key_env else None) from None
        finally:
            if reservation is not None:
                self._guard.release(reservation)
        self.breaker.record_success(endpoint)
        return record

    def _share(self, key: str, model: str, record: dict[str, Any]) -> None:
        """Offer a paid call to the shared cache. The call is already safe in the run's cache and ledger,
        so a shared cache that cannot take it (locked past its timeout, disk full) costs a warning, not the call."""
        if self.shared is None:
            return
        try:
            self.shared.put(key, model, record)
        except sqlite3.Error as exc:
            _log.warning("shared request cache %s did not take a call: %s", self.shared.path, exc)

    def close(self) -> None:
        for transport in (self._lean, self._litellm):
            if transport is not None:
                transport.close()
        self.cache.close()
        if self.shared is not None:
            self.shared.close()


def _endpoint_key(spec: ModelSpec) -> str:
    """What the concurrency and rate limits of a model are kept under: the model where it is served."""
    return f"{spec.model}@{spec.api_base or ''}"


def _rate_cost(spec: ModelSpec, kwargs: dict[str, Any], limits: ModelLimits) -> Cost:
    """What an attempt holds against its token limits until the reply's usage replaces it: about 4
    bytes of the JSON sent per input token (an estimate; no tokenizer is run per call) and the
    completion's `max_tokens` (a bound) per choice."""
    if not limits.counts_tokens:
        return Cost()
    sent = json.dumps([kwargs["messages"], kwargs.get("response_format")], ensure_ascii=False)
    completion = int(kwargs.get("max_tokens") or spec.max_tokens) * int(kwargs.get("n") or 1)
    return Cost(len(sent.encode("utf-8")) // 4 + 1, completion)


def _scrubbed(error: LLMError, secret: str | None) -> LLMError:
    """The error with the API key blanked out of its message: provider messages sometimes echo the
    key, and error messages end up in failure tables and logs."""
    if secret and len(secret) >= 4 and secret in str(error):
        error.args = (str(error).replace(secret, "***"),)
    return error
