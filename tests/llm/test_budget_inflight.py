"""Token and cost caps hold with many calls in flight: each call holds its worst case against the
cap until it returns (over real HTTP to the fake server, whose tokens are whitespace-split words)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from factory.llm import Budget, BudgetExceededError, Completion, Gateway, GatewaySettings, ModelSpec
from factory.testing import FakeLLMServer, Rule

REPLY = " ".join(["word"] * 20)  # 20 completion tokens, within max_tokens
MAX_TOKENS = 32


def user(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question number {i}"}]


def worst_tokens(messages: list[dict[str, str]]) -> int:
    """The gateway's reservation for one of these calls: prompt bytes as JSON + max_tokens."""
    return len(json.dumps([messages, None]).encode()) + MAX_TOKENS


async def run_many(gateway: Gateway, n: int) -> list[Completion | BaseException]:
    return await asyncio.gather(*(gateway.complete("gen", user(i)) for i in range(n)), return_exceptions=True)


def served(results: list[Completion | BaseException]) -> list[Completion]:
    others = [r for r in results if not isinstance(r, (Completion, BudgetExceededError))]
    assert not others, others
    return [r for r in results if isinstance(r, Completion)]


async def test_max_tokens_is_not_overshot_with_16_calls_in_flight(tmp_path: Path) -> None:
    cap = 1500
    with FakeLLMServer(rules=[Rule(reply=REPLY)], latency_s=0.05) as server:
        model = ModelSpec(
            model="openai/fake", api_base=server.base_url, max_tokens=MAX_TOKENS, max_concurrency=16
        )
        gateway = Gateway(
            {"gen": model},
            GatewaySettings(max_concurrency=16),
            budget=Budget(max_tokens=cap),
            cache_path=tmp_path / "cache.sqlite",
        )
        results = await run_many(gateway, 200)
        done = served(results)
        spent = server.stats.prompt_tokens + server.stats.completion_tokens
        usage = gateway.usage.snapshot()
        assert usage["prompt_tokens"] + usage["completion_tokens"] == spent
        assert spent <= cap  # before reservations: 3-6x the cap (calls queued for a slot passed the check)
        # It stops only when the next call's worst case no longer fits: less than one of those unused.
        assert cap - spent < worst_tokens(user(199))
        assert len(done) < 200 and server.stats.peak_in_flight > 1  # concurrency, until the cap got near
        assert "budget reached: max_tokens=1500" in str(
            next(r for r in results if isinstance(r, BaseException))
        )
        # Cached answers stay free once the cap is reached.
        again = await gateway.complete("gen", user(results.index(done[0])))
        assert again.cached and server.stats.calls == len(done)


async def test_max_cost_is_not_overshot_with_16_calls_in_flight() -> None:
    cap = 0.0004
    with FakeLLMServer(rules=[Rule(reply=REPLY)], latency_s=0.05) as server:
        # A model litellm has a price for, served by the fake server, so replies are priced.
        model = ModelSpec(
            model="openai/gpt-4o-mini", api_base=server.base_url, max_tokens=MAX_TOKENS, max_concurrency=16
        )
        gateway = Gateway(
            {"gen": model}, GatewaySettings(max_concurrency=16), budget=Budget(max_cost_usd=cap)
        )
        results = await run_many(gateway, 200)
        done = served(results)
        cost = gateway.usage.snapshot()["cost_usd"]
        assert 0 < cost <= cap  # before reservations: 3-6x the cap (calls queued for a slot passed the check)
        per_call = cost / len(done)
        assert cap - cost < 4 * per_call  # stopped near the cap: one worst case (~2x a real call) left
        assert any(isinstance(r, BudgetExceededError) and "max_cost_usd=0.0004" in str(r) for r in results)


async def test_max_calls_stays_exact_with_calls_in_flight() -> None:
    with FakeLLMServer(rules=[Rule(reply=REPLY)], latency_s=0.02) as server:
        model = ModelSpec(model="openai/fake", api_base=server.base_url, max_tokens=MAX_TOKENS)
        gateway = Gateway({"gen": model}, budget=Budget(max_calls=10))
        results: list[Any] = await run_many(gateway, 40)
        assert len(served(results)) == 10 == server.stats.calls
