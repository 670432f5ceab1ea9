"""The gateway against the fake server over real HTTP on 127.0.0.1, through each transport: every
test runs once on the lean transport and once on litellm (`transport` below)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from factory.llm import (
    Budget,
    BudgetExceededError,
    CircuitOpenError,
    Gateway,
    GatewaySettings,
    LLMTimeoutError,
    ModelSpec,
    OutputParseError,
    ProviderError,
)
from factory.testing import FakeLLMServer, Fault, Rule

TRANSPORT = {"name": "lean"}


@pytest.fixture(autouse=True, params=["lean", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    """Run each test on both transports: `spec` builds its model specs with this one."""
    TRANSPORT["name"] = request.param
    return str(request.param)


def spec(server: FakeLLMServer, **kw: object) -> ModelSpec:
    return ModelSpec(model="openai/fake", api_base=server.base_url, transport=TRANSPORT["name"], **kw)  # type: ignore[arg-type]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


FAST = GatewaySettings(backoff_base_s=0.01, backoff_max_s=0.2)


async def test_concurrency_bound_is_respected_at_the_server() -> None:
    with FakeLLMServer(latency_s=0.05) as server:
        gateway = Gateway({"gen": spec(server, max_concurrency=5)}, GatewaySettings(max_concurrency=64))
        await asyncio.gather(*(gateway.complete("gen", user(f"q{i}")) for i in range(40)))
        assert server.stats.calls == 40
        assert server.stats.peak_in_flight == 5  # never above the per-model bound, and it is reached


async def test_overall_bound_caps_several_models() -> None:
    with FakeLLMServer(latency_s=0.05) as server:
        roles = {
            "a": spec(server, max_concurrency=10),
            "b": ModelSpec(
                model="openai/other",
                api_base=server.base_url,
                max_concurrency=10,
                transport=TRANSPORT["name"],
            ),
        }
        gateway = Gateway(roles, GatewaySettings(max_concurrency=6))
        await asyncio.gather(*(gateway.complete(r, user(f"{r}{i}")) for i in range(20) for r in ("a", "b")))
        assert server.stats.peak_in_flight == 6


async def test_retry_after_429_honours_retry_after() -> None:
    with FakeLLMServer(faults=Fault(first_n_fail=2, fail_status=429, retry_after_s=0.3)) as server:
        gateway = Gateway({"gen": spec(server)}, GatewaySettings(backoff_base_s=0.0, max_retries=4))
        started = time.perf_counter()
        reply = await gateway.complete("gen", user("hello"))
        elapsed = time.perf_counter() - started
        assert reply.text
        assert server.stats.calls == 3
        assert gateway.usage.snapshot()["retries"] == 2
        # Backoff base is 0, so only the server's Retry-After (2 x 0.3 s) can explain the wait.
        assert elapsed >= 0.55


async def test_timeout_is_typed_and_retried_then_raised() -> None:
    with FakeLLMServer(faults=Fault(rate_timeout=1.0, timeout_s=5.0)) as server:
        gateway = Gateway(
            {"gen": spec(server, timeout_s=0.3)}, GatewaySettings(max_retries=1, backoff_base_s=0.01)
        )
        with pytest.raises(LLMTimeoutError):
            await gateway.complete("gen", user("slow"))
        assert gateway.usage.snapshot()["retries"] == 1


async def test_malformed_response_is_a_provider_error_not_a_crash() -> None:
    with FakeLLMServer(faults=Fault(rate_malformed=1.0)) as server:
        gateway = Gateway({"gen": spec(server)}, GatewaySettings(max_retries=1, backoff_base_s=0.01))
        with pytest.raises(ProviderError):
            await gateway.complete("gen", user("x"))


class Verdict(BaseModel):
    evidence: str
    answer: Literal["A", "B", "C"]
    confidence: float = Field(ge=0, le=1)


async def test_malformed_json_output_is_data_with_raw_text() -> None:
    with FakeLLMServer(rules=[Rule(contains="judge", reply='{"evidence": "ok", "answer": "D"')]) as server:
        gateway = Gateway({"judge": spec(server)})
        with pytest.raises(OutputParseError) as info:
            await gateway.complete("judge", user("judge this"), schema=Verdict)
        assert info.value.raw == '{"evidence": "ok", "answer": "D"'


async def test_structured_output_sends_schema_and_validates() -> None:
    with FakeLLMServer() as server:  # default replies build a valid instance of the requested schema
        gateway = Gateway({"judge": spec(server)})
        reply = await gateway.complete("judge", user("judge this"), schema=Verdict)
        assert isinstance(reply.parsed, Verdict)
        sent = server.requests[-1]["response_format"]
        assert sent["type"] == "json_schema"
        assert sent["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["A", "B", "C"]


async def test_cache_answers_repeats_and_survives_a_new_gateway(tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    with FakeLLMServer() as server:
        first = Gateway({"gen": spec(server)}, cache_path=cache)
        a = await first.complete("gen", user("same"))
        b = await first.complete("gen", user("same"))
        first.close()
        second = Gateway({"gen": spec(server)}, cache_path=cache)
        c = await second.complete("gen", user("same"))
        d = await second.complete("gen", user("same"), sample=1)  # another sample is another request
        assert server.stats.calls == 2
        assert (a.cached, b.cached, c.cached, d.cached) == (False, True, True, False)
        assert a.text == b.text == c.text
        assert second.usage.snapshot()["cache_hits"] == 1


async def test_usage_totals_equal_the_servers_count() -> None:
    with FakeLLMServer(latency_s=0.01) as server:
        gateway = Gateway({"gen": spec(server), "judge": spec(server, temperature=0.0)})
        await asyncio.gather(
            *(gateway.complete("gen", user(f"question {i} " * (i % 5 + 1)), tag="wf") for i in range(25))
        )
        await asyncio.gather(*(gateway.complete("judge", user(f"judge {i}")) for i in range(10)))
        usage = gateway.usage.snapshot()
        stats = server.stats
        assert usage["calls"] == stats.calls == 35
        assert usage["prompt_tokens"] == stats.prompt_tokens
        assert usage["completion_tokens"] == stats.completion_tokens
        assert usage["by_role"]["gen"]["calls"] == 25
        assert usage["by_role"]["judge"]["calls"] == 10
        assert usage["by_tag"]["wf"]["calls"] == 25
        assert usage["cost_usd"] == 0.0  # unknown (self-hosted) model: no price, no invented cost


async def test_budget_stops_calls_but_cache_hits_stay_free(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        gateway = Gateway({"gen": spec(server)}, budget=Budget(max_calls=3), cache_path=tmp_path / "c.sqlite")
        for i in range(3):
            await gateway.complete("gen", user(f"q{i}"))
        with pytest.raises(BudgetExceededError):
            await gateway.complete("gen", user("q3"))
        assert (await gateway.complete("gen", user("q0"))).cached
        assert server.stats.calls == 3


async def test_circuit_opens_under_sustained_outage() -> None:
    with FakeLLMServer(faults=Fault(outage=True)) as server:
        gateway = Gateway(
            {"gen": spec(server)},
            GatewaySettings(max_retries=1, backoff_base_s=0.0, circuit_breaker_failures=3),
        )
        # Failed attempts count, retries included: the first call fails twice, the second once and
        # that third failure in a row opens the circuit (so the second call is not retried).
        for i in range(2):
            with pytest.raises(ProviderError):
                await gateway.complete("gen", user(f"q{i}"))
        assert server.stats.calls == 3
        with pytest.raises(CircuitOpenError, match="circuit open: 3 failed attempts in a row"):
            await gateway.complete("gen", user("q-next"))
        assert server.stats.calls == 3  # an open circuit does not hit the endpoint


async def test_unknown_role_names_the_known_roles() -> None:
    gateway = Gateway({"generator": ModelSpec(model="openai/x")})
    with pytest.raises(Exception, match="unknown model role 'judge'.*generator"):
        await gateway.complete("judge", user("x"))


def test_api_key_comes_from_the_environment_and_never_reaches_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MY_PROVIDER_KEY", "sk-test-SECRET-123")
    with FakeLLMServer() as server:
        gateway = Gateway(
            {"gen": spec(server, api_key_env="MY_PROVIDER_KEY")}, cache_path=tmp_path / "c.sqlite"
        )
        asyncio.run(gateway.complete("gen", user("hi")))
        gateway.close()
    for file in tmp_path.iterdir():
        assert b"SECRET-123" not in file.read_bytes()
