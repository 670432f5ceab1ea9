"""The litellm path: every provider litellm knows, and the embedded `local/` model.

Importing this module imports litellm (seconds), so the gateway imports it only when a model
takes this path (`ModelSpec.uses_lean_transport` false).
"""

from __future__ import annotations

import time
from typing import Any

from factory.llm._litellm_env import litellm
from factory.llm._translate import translate
from factory.llm.errors import LLMError
from factory.llm.models import ModelSpec
from factory.llm.pricing import estimate_cost
from factory.llm.rate_limit_headers import read_rate_limit_headers
from factory.llm.replies import no_choices, reply_record


class LiteLLMTransport:
    """`litellm.acompletion` with our retries off (the gateway retries), replies made records."""

    async def complete(self, spec: ModelSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
        """One call; returns the reply's record, raises litellm's exceptions (see `translate`)."""
        if spec.is_local:
            from factory.llm.local import ensure_registered

            ensure_registered()
        started = time.perf_counter()
        response = await litellm.acompletion(**kwargs)
        record = record_from_response(response, spec.model, time.perf_counter() - started)
        # litellm keeps the provider's headers in lower case in `additional_headers`.
        hidden = getattr(response, "_hidden_params", None) or {}
        server_limits = read_rate_limit_headers(hidden.get("additional_headers"))
        if server_limits is not None:
            record["rate_limits"] = server_limits  # taken off by the gateway before the record is cached
        return record

    def translate(self, exc: BaseException, spec: ModelSpec) -> LLMError:
        return translate(exc, spec.model, spec.api_base)

    def estimate_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        return estimate_cost(model, prompt_tokens, completion_tokens)

    def close(self) -> None:
        """litellm keeps its own clients; nothing of ours to close."""


def record_from_response(response: Any, model: str, latency: float) -> dict[str, Any]:
    """What we keep of a litellm reply: text, usage, cost (see `replies.reply_record`)."""
    try:
        choice = response.choices[0]
        text = choice.message.content
        finish_reason = getattr(choice, "finish_reason", None)
    except (AttributeError, IndexError, TypeError):
        raise no_choices(model) from None
    usage = getattr(response, "usage", None)
    hidden = getattr(response, "_hidden_params", None) or {}
    message = choice.message
    has_tool_call = bool(getattr(message, "tool_calls", None) or getattr(message, "function_call", None))
    if not (text or "").strip() and not has_tool_call:
        cost = 0.0  # an empty reply raises below; no need to price it
    elif "response_cost" in hidden:
        # litellm already priced this reply (None for an unpriced model); pricing it again costs
        # 0.6-1.3 ms of CPU per call, a sixth of litellm's whole per-call cost (benchmarks/throughput.py).
        cost = float(hidden["response_cost"] or 0.0)
    else:
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:
            cost = 0.0
    return reply_record(
        model,
        text=text,
        finish_reason=finish_reason,
        has_tool_call=has_tool_call,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=cost,
        latency_s=latency,
    )
