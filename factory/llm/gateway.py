"""The model gateway: every model call in the factory goes through `Gateway.complete`.

It resolves a role to a model, bounds concurrency (overall and per model), retries transient
failures with exponential backoff that honours Retry-After, stops calling an endpoint that is down
(`breaker.py`), enforces per-call timeouts and budgets (`budget_guard.py`), asks for JSON-schema
output where the backend supports it, accounts usage and cost, and answers repeated requests from
the run's persistent cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from factory.llm import _litellm_env  # noqa: F401  (offline settings before litellm is imported)
import litellm  # noqa: E402

litellm.suppress_debug_info = True  # no "Provider List" banners on stdout for every failed lookup

from factory.llm._translate import translate  # noqa: E402
from factory.llm.breaker import CircuitBreaker, endpoint_label  # noqa: E402
from factory.llm.budget_guard import BudgetGuard, Spend  # noqa: E402
from factory.llm.cache import RequestCache, request_key  # noqa: E402
from factory.llm.errors import (  # noqa: E402
    BudgetExceededError,
    CircuitOpenError,
    EmptyReplyError,
    LLMError,
    OutputParseError,
    ProviderError,
)
from factory.llm.limits import Budget, GatewaySettings  # noqa: E402
from factory.llm.models import ModelSpec  # noqa: E402
from factory.llm.pricing import estimate_cost  # noqa: E402
from factory.llm.usage import UsageLedger  # noqa: E402

Message = dict[str, Any]


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
        raise OutputParseError(f"{model}: reply does not match {schema.__name__}: {first}", model=model,
                               raw=text) from None


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
    """

    def __init__(self, roles: Mapping[str, ModelSpec], settings: GatewaySettings | None = None, *,
                 cache_path: Path | None = None, budget: Budget | None = None, seed: int = 0,
                 budget_includes_cache: bool = False) -> None:
        self.roles = dict(roles)
        self.settings = settings or GatewaySettings()
        self.budget = budget or Budget()
        self.cache = RequestCache(cache_path)
        self.usage = UsageLedger()
        self._rng = random.Random(seed)
        self._limits: dict[int, tuple[asyncio.Semaphore, dict[str, asyncio.Semaphore]]] = {}
        self.breaker = CircuitBreaker(self.settings.circuit_breaker_failures)
        self._guard = BudgetGuard(self.budget, self.usage, self._prior_spend)
        # A build's cache holds exactly the calls of its earlier invocations, so a resumed build counts
        # them against its budget; a cache shared by many runs (calibration) must not.
        self._prior: Spend | None = None if budget_includes_cache else Spend()

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
        key = f"{spec.model}@{spec.api_base or ''}"
        if key not in per_model:
            # The embedded model generates one call at a time (one llama.cpp worker thread): more in
            # flight would only queue inside it, with their timeouts running while they wait.
            per_model[key] = asyncio.Semaphore(1 if spec.is_local else spec.max_concurrency)
        return overall, per_model[key]

    # -- the call ---------------------------------------------------------------------------
    def _request(self, spec: ModelSpec, messages: list[Message], schema: type[BaseModel] | None,
                 sample: int) -> dict[str, Any]:
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

    def _call_kwargs(self, spec: ModelSpec, request: dict[str, Any], schema: type[BaseModel] | None) -> dict[str, Any]:
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
                instruction = ("\n\nReply with a single JSON object only, matching this JSON schema:\n"
                               + json.dumps(json_schema))
                last = dict(messages[-1])
                last["content"] = f"{last['content']}{instruction}"
                kwargs["messages"] = [*messages[:-1], last]
        return kwargs

    def _prior_spend(self) -> Spend:
        """Calls, tokens and cost already in the cache when this gateway opened it (read once)."""
        if self._prior is None:
            capped = any(v is not None for v in (self.budget.max_calls, self.budget.max_tokens,
                                                 self.budget.max_cost_usd))
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
        return Spend(calls=1, tokens=prompt + completion,
                     cost_usd=estimate_cost(spec.model, prompt, completion) or 0.0)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        if retry_after is not None:
            return min(retry_after, s.backoff_max_s)
        return min(s.backoff_base_s * (2**attempt), s.backoff_max_s) * (0.5 + self._rng.random() / 2)

    async def complete(self, target: str | ModelSpec, messages: list[Message], *, role: str | None = None,
                       schema: type[BaseModel] | None = None, sample: int = 0, tag: str | None = None) -> Completion:
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
        cached = record is not None
        if record is not None:
            self.usage.record_cache_hit(role=role_name, model=spec.model, tag=tag)
        else:
            record = await self._call_with_retries(spec, request, schema, role_name, tag)
            self.cache.put(key, spec.model, record)
        parsed = parse_json_reply(record["text"], schema, spec.model) if schema is not None else None
        return Completion(
            text=record["text"], parsed=parsed, model=spec.model, role=role_name,
            prompt_tokens=record["prompt_tokens"], completion_tokens=record["completion_tokens"],
            cost_usd=record["cost_usd"], latency_s=0.0 if cached else record["latency_s"], cached=cached,
            request_hash=key, finish_reason=record.get("finish_reason"),
        )

    async def _call_with_retries(self, spec: ModelSpec, request: dict[str, Any], schema: type[BaseModel] | None,
                                 role: str, tag: str | None) -> dict[str, Any]:
        endpoint = endpoint_label(spec.model, spec.api_base)
        if spec.is_local:
            from factory.llm.local import ensure_registered

            ensure_registered()
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
            except Exception as exc:  # noqa: BLE001 - every provider failure is translated here
                error = _scrubbed(translate(exc, spec.model, spec.api_base), secret)
                self.breaker.record_failure(endpoint, error)
                # Once the circuit is open a retry would only be refused: fail with the real reason.
                if error.retryable and attempt < self.settings.max_retries and not self.breaker.is_open(endpoint):
                    self.usage.record_retry(role=role, model=spec.model, tag=tag)
                    await asyncio.sleep(self._backoff(attempt, error.retry_after))
                    attempt += 1
                    continue
                self.usage.record_error(role=role, model=spec.model, tag=tag)
                raise error from None
            self.breaker.record_success(endpoint)
            return record

    async def _attempt(self, spec: ModelSpec, kwargs: dict[str, Any], endpoint: str, worst: Spend,
                       role: str, tag: str | None) -> dict[str, Any]:
        """One try of a call, holding a concurrency slot and its worst case against the budget."""
        self.breaker.check(endpoint, spec.model)
        overall, per_model = self._semaphores(spec)
        async with overall, per_model:
            # Again once the slot is ours: the circuit may have opened while this call waited for it.
            self.breaker.check(endpoint, spec.model)
            reservation = await self._guard.reserve(worst, spec.model)
            try:
                started = time.perf_counter()
                response = await asyncio.wait_for(litellm.acompletion(**kwargs), spec.timeout_s + 5.0)
                latency = time.perf_counter() - started
                record = _record_from_response(response, spec.model, latency)
                # Recorded before the reservation goes, so the budget never sees this call as free.
                self.usage.record_call(role=role, model=spec.model, tag=tag, prompt_tokens=record["prompt_tokens"],
                                       completion_tokens=record["completion_tokens"],
                                       cost_usd=record["cost_usd"], latency_s=latency)
                return record
            finally:
                self._guard.release(reservation)

    def close(self) -> None:
        self.cache.close()


def _scrubbed(error: LLMError, secret: str | None) -> LLMError:
    """The error with the API key blanked out of its message: provider messages sometimes echo the
    key, and error messages end up in failure tables and logs."""
    if secret and len(secret) >= 4 and secret in str(error):
        error.args = (str(error).replace(secret, "***"),)
    return error


def _record_from_response(response: Any, model: str, latency: float) -> dict[str, Any]:
    """What we keep of a reply: text, usage, cost. A reply without text (empty or only whitespace)
    and without a tool call is an `EmptyReplyError`."""
    try:
        choice = response.choices[0]
        text = choice.message.content
        finish_reason = getattr(choice, "finish_reason", None)
    except (AttributeError, IndexError, TypeError):
        raise ProviderError(f"{model}: malformed response without choices", model=model) from None
    if not (text or "").strip() and not _has_tool_call(choice.message):
        # An HTTP 200 with nothing in it is a provider failure, not an answer: retried, never cached.
        shown = "no message content" if text is None else f"empty reply text {text!r}"
        raise EmptyReplyError(f"{model}: {shown} (finish_reason={finish_reason})", model=model)
    usage = getattr(response, "usage", None)
    hidden = getattr(response, "_hidden_params", None) or {}
    if "response_cost" in hidden:
        # litellm already priced this reply (None for an unpriced model); pricing it again costs
        # 0.6-1.3 ms of CPU per call, a sixth of litellm's whole per-call cost (benchmarks/throughput.py).
        cost = float(hidden["response_cost"] or 0.0)
    else:
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # noqa: BLE001 - unknown price (local or self-hosted models) costs 0
            cost = 0.0
    return {
        "text": text or "",
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        "cost_usd": cost,
        "latency_s": round(latency, 6),
        "finish_reason": finish_reason,
    }


def _has_tool_call(message: Any) -> bool:
    """Whether a reply carries its content as a tool or function call (with `tools` in params)."""
    return bool(getattr(message, "tool_calls", None) or getattr(message, "function_call", None))
