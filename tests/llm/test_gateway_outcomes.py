"""Truthful outcomes at the gateway, over real HTTP to the fake server: an empty reply is a failure,
an endpoint that fails every call stops being called, and a bad api_base is refused up front."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reliability import build_config
from pydantic import BaseModel, ValidationError

from factory._util.errors import UserError
from factory.config import parse_config
from factory.llm import (
    AuthError,
    CircuitOpenError,
    EmptyReplyError,
    Gateway,
    GatewaySettings,
    ModelSpec,
    ProviderError,
)
from factory.pipeline import run_build
from factory.testing import FakeLLMServer, Fault, Rule

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}
TRANSPORT = {"name": "lean"}


@pytest.fixture(autouse=True, params=["lean", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    """Run each test on both transports: `spec` builds its model specs with this one."""
    TRANSPORT["name"] = request.param
    return str(request.param)


def spec(base_url: str, **kw: Any) -> ModelSpec:
    return ModelSpec(model="openai/fake", api_base=base_url, transport=TRANSPORT["name"], **kw)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def outcomes(gateway: Gateway, role: str, n: int) -> list[Any]:
    """Results (or exceptions) of n distinct concurrent calls."""
    return await asyncio.gather(
        *(gateway.complete(role, user(f"q{i}")) for i in range(n)), return_exceptions=True
    )


def kinds(results: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        name = type(r).__name__
        counts[name] = counts.get(name, 0) + 1
    return counts


class Verdict(BaseModel):
    winner: str


# --- empty replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [None, Verdict], ids=["text", "structured"])
async def test_an_empty_reply_is_retried_then_fails_and_is_never_cached(
    tmp_path: Path, schema: type[BaseModel] | None
) -> None:
    with FakeLLMServer(faults=Fault(rate_empty=1.0)) as server:
        gateway = Gateway(
            {"judge": spec(server.base_url)},
            GatewaySettings(max_retries=2, **FAST),
            cache_path=tmp_path / "cache.sqlite",
        )
        with pytest.raises(EmptyReplyError, match="empty reply text") as caught:
            await gateway.complete("judge", user("judge this"), schema=schema)
        assert isinstance(caught.value, ProviderError) and caught.value.retryable
        assert server.stats.calls == 3  # retried like a 5xx
        usage = gateway.usage.snapshot()
        assert (usage["calls"], usage["retries"], usage["errors"]) == (0, 2, 1)
        assert len(gateway.cache) == 0  # a resumed build asks again instead of reading a blank answer


async def test_some_empty_replies_are_retried_into_real_answers() -> None:
    with FakeLLMServer(rules=[Rule(reply="a real answer")], faults=Fault(rate_empty=0.3), seed=5) as server:
        gateway = Gateway({"gen": spec(server.base_url)}, GatewaySettings(max_retries=8, **FAST))
        results = await outcomes(gateway, "gen", 30)
        assert all(r.text == "a real answer" for r in results), kinds(results)
        assert server.stats.faults["empty"] > 0
        assert gateway.usage.snapshot()["retries"] == server.stats.faults["empty"]


def test_a_build_under_empty_replies_has_no_blank_answer_pair_or_rationale(tmp_path: Path) -> None:
    with FakeLLMServer(faults=Fault(rate_empty=0.3), seed=2) as server:
        # No salvage round: the prompts whose calls ran out of tries must stay failed, never empty rows.
        config = build_config(
            server.base_url,
            tmp_path,
            prompts=6,
            gateway={"max_retries": 1, **FAST},
            run={"salvage_rounds": 0},
        )
        run_dir = run_build(parse_config(config)).run_dir
        empties = server.stats.faults["empty"]
    candidates = pl.read_parquet(run_dir / "candidates.parquet")
    pairs = pl.read_parquet(run_dir / "pairs.parquet")
    failures = pl.read_parquet(run_dir / "failures.parquet")
    assert empties > 5  # the faults happened; some calls had both tries empty
    assert all(text.strip() for text in candidates["text"].to_list())
    for column in ("chosen", "rejected", "rationale"):
        assert all(text is None or text.strip() for text in pairs[column].to_list()), column
    assert failures.filter(pl.col("reason").str.contains("EmptyReplyError")).height > 0


# --- the circuit breaker -------------------------------------------------------------------------------


async def test_a_rejected_key_opens_the_circuit_at_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-fake-SECRET-4321")
    with FakeLLMServer(faults=Fault(rate_401=1.0), latency_s=0.05) as server:
        gateway = Gateway(
            {"judge": spec(server.base_url, api_key_env="FAKE_KEY", max_concurrency=8)},
            GatewaySettings(max_retries=4, **FAST),
        )
        results = await outcomes(gateway, "judge", 40)
        counts = kinds(results)
        # Only the calls already sent when the first 401 came back reach the server: one round of
        # the concurrency bound, never 40 calls (nor their retries).
        assert server.stats.calls <= 8
        assert counts == {"AuthError": server.stats.calls, "CircuitOpenError": 40 - server.stats.calls}
        auth = next(r for r in results if isinstance(r, AuthError))
        refused = next(r for r in results if isinstance(r, CircuitOpenError))
        for message in (str(auth), str(refused)):
            assert f"openai/fake at {server.base_url}" in message and "HTTP 401" in message
            assert "SECRET-4321" not in message
        assert refused.status == 401 and "credentials rejected" in str(refused)
        assert list(gateway.breaker.open_circuits()) == [f"openai/fake at {server.base_url}"]
        usage = gateway.usage.snapshot()
        assert (usage["calls"], usage["retries"], usage["errors"]) == (0, 0, server.stats.calls)


async def test_an_endpoint_that_always_times_out_opens_the_circuit_after_one_round() -> None:
    with FakeLLMServer(faults=Fault(rate_timeout=1.0, timeout_s=5.0)) as server:
        gateway = Gateway(
            {"gen": spec(server.base_url, timeout_s=0.3, max_concurrency=4)},
            GatewaySettings(max_retries=3, circuit_breaker_failures=4, **FAST),
        )
        results = await outcomes(gateway, "gen", 16)
        counts = kinds(results)
        # Four attempts in flight time out together and open the circuit; a call that took a slot
        # freed by a failure before the fourth may add one more round trip each, not 16 x 4 attempts.
        assert server.stats.calls < 2 * 4
        assert counts.get("LLMTimeoutError", 0) < 2 * 4 and set(counts) == {
            "LLMTimeoutError",
            "CircuitOpenError",
        }
        assert "4 failed attempts in a row" in str(
            next(r for r in results if isinstance(r, CircuitOpenError))
        )


async def test_an_unreachable_endpoint_opens_the_circuit() -> None:
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    gateway = Gateway(
        {"gen": spec(base_url, max_concurrency=2)},
        GatewaySettings(max_retries=4, circuit_breaker_failures=3, **FAST),
    )
    results = await outcomes(gateway, "gen", 20)
    counts = kinds(results)
    assert set(counts) == {"ProviderError", "CircuitOpenError"} and counts["CircuitOpenError"] >= 20 - 3
    assert f"openai/fake at {base_url}: circuit open" in str(
        next(r for r in results if isinstance(r, CircuitOpenError))
    )
    # `errors` counts the calls that reached the endpoint and failed, including those whose retry the
    # open circuit refused; calls refused before their first attempt are not errors, only refused.
    assert counts["ProviderError"] <= gateway.usage.snapshot()["errors"] <= 3 + 2


async def test_rate_limits_do_not_open_the_circuit() -> None:
    # 429 means "slow down", which backoff does: six in a row must not stop a build.
    with FakeLLMServer(faults=Fault(first_n_fail=6, fail_status=429, retry_after_s=0.01)) as server:
        gateway = Gateway(
            {"gen": spec(server.base_url)}, GatewaySettings(max_retries=8, circuit_breaker_failures=2, **FAST)
        )
        assert (await gateway.complete("gen", user("hi"))).text
        assert server.stats.calls == 7 and gateway.breaker.open_circuits() == {}


async def test_a_success_ends_the_failure_streak() -> None:
    with FakeLLMServer(faults=Fault(first_n_fail=2, fail_status=503)) as server:
        gateway = Gateway(
            {"gen": spec(server.base_url)}, GatewaySettings(max_retries=2, circuit_breaker_failures=3, **FAST)
        )
        await gateway.complete("gen", user("a"))  # two failed attempts, then an answer
        server.reset()  # two more failures: the streak restarted at the success, so 2 < 3
        assert (await gateway.complete("gen", user("b"))).text
        assert gateway.breaker.open_circuits() == {}


# --- api_base ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "api_base", ["localhost:8000/v1", "ftp://example.com/v1", "http://", "sk-abc123SECRET"]
)
def test_an_api_base_that_is_not_an_http_url_is_refused_by_the_config(tmp_path: Path, api_base: str) -> None:
    config = build_config("http://127.0.0.1:9/v1", tmp_path)
    config["models"]["judge"]["api_base"] = api_base
    with pytest.raises(UserError, match=r"models\.judge\.api_base: api_base must .*http") as caught:
        parse_config(config)
    assert "\n" not in str(caught.value) and "SECRET" not in str(caught.value)
    with pytest.raises(ValidationError):
        ModelSpec(model="openai/x", api_base=api_base)


def test_http_and_https_api_bases_are_accepted() -> None:
    for url in ("http://localhost:11434", "https://api.example.com/v1", "http://127.0.0.1:8000/v1"):
        assert ModelSpec(model="openai/x", api_base=url).api_base == url
