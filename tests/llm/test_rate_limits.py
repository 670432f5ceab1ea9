"""Rate limits that hold (issue #16 part 2): the limiter's sliding-window guarantee, token limits,
the server's x-ratelimit headers, retries counting, AIMD under 429s, and no work for unlimited models.

The 60 s window across Dask worker processes is in test_rate_limits_dask.py (slow)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from _reliability import build_config, manifest, tables
from pydantic import ValidationError

from factory.llm import Gateway, GatewaySettings, ModelSpec
from factory.llm.rate_limit import Cost, LocalLimits, ModelLimiter, ModelLimits, Outcome
from factory.llm.rate_limit_headers import duration_seconds, read_rate_limit_headers
from factory.testing import FakeLLMServer, Fault


def busiest_window(times: list[float], window_s: float) -> int:
    """The most of `times` that fall in any half-open window [a, a + window_s)."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def ask(i: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"Question {i}: say something."}]


# ------------------------------------------------------------------------------- the limiter alone


async def test_no_window_ever_holds_more_than_the_limit_whatever_the_latency() -> None:
    # 40 callers with random latencies against 10 per 1 s window. A request reaches a server at some
    # moment between its grant and its end: both extremes must respect the limit.
    limiter = ModelLimiter(ModelLimits(rpm=10, window_s=1.0, max_in_flight=40))
    rng = random.Random(7)
    granted: list[float] = []
    ended: list[float] = []

    async def call() -> None:
        ticket = await limiter.acquire(Cost())
        granted.append(time.monotonic())
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        ended.append(time.monotonic())
        limiter.finish(ticket, Outcome("ok"))

    await asyncio.gather(*(call() for _ in range(40)))
    assert len(granted) == 40
    assert busiest_window(granted, 1.0) <= 10
    assert busiest_window(ended, 1.0) <= 10
    # The limit is used, not starved: the first window is full.
    assert busiest_window(granted, 1.0) == 10


async def test_a_token_bucket_with_burst_equal_to_the_limit_would_not_hold() -> None:
    # Why not a bucket: its burst plus a window's refill is twice the limit in the first window.
    # The limiter's first 1.5 windows hold at most the limit plus what the first ended calls freed.
    limiter = ModelLimiter(ModelLimits(rpm=5, window_s=0.5, max_in_flight=20))
    granted: list[float] = []

    async def call() -> None:
        ticket = await limiter.acquire(Cost())
        granted.append(time.monotonic())
        limiter.finish(ticket, Outcome("ok"))

    started = time.monotonic()
    await asyncio.gather(*(call() for _ in range(10)))
    first_window = [t for t in granted if t < started + 0.5]
    assert len(first_window) == 5  # a bucket of capacity 5 refilled at 10/s would give ~9-10 here
    assert busiest_window(granted, 0.5) <= 5


async def test_output_tokens_hold_max_tokens_in_flight_and_the_real_count_after() -> None:
    limiter = ModelLimiter(ModelLimits(output_tpm=100, window_s=30.0, max_in_flight=8))
    first = await limiter.acquire(Cost(0, 50))
    second = await limiter.acquire(Cost(0, 50))
    third = asyncio.ensure_future(limiter.acquire(Cost(0, 50)))
    await asyncio.sleep(0.05)
    assert not third.done()  # 50 + 50 held: a third max_tokens does not fit
    limiter.finish(first, Outcome("ok", input_tokens=3, output_tokens=10))
    await asyncio.sleep(0.05)
    assert not third.done()  # 10 + 50 + 50 > 100
    limiter.finish(second, Outcome("ok", input_tokens=3, output_tokens=10))
    await asyncio.wait_for(third, 1.0)  # 10 + 10 + 50: fits long before the 30 s window ends
    assert limiter.snapshot()["used_requests"] == 3


async def test_a_call_bigger_than_the_whole_limit_goes_alone_in_an_empty_window() -> None:
    limiter = ModelLimiter(ModelLimits(input_tpm=100, window_s=0.3, max_in_flight=8))
    small = await limiter.acquire(Cost(10, 0))
    big = asyncio.ensure_future(limiter.acquire(Cost(500, 0)))
    await asyncio.sleep(0.05)
    assert not big.done()
    limiter.finish(small, Outcome("ok", input_tokens=10, output_tokens=1))
    await asyncio.wait_for(big, 2.0)  # once the small call's window has passed


async def test_a_cancelled_waiter_leaves_the_queue_to_the_next() -> None:
    limiter = ModelLimiter(ModelLimits(adaptive=True, max_in_flight=1))
    held = await limiter.acquire(Cost())
    first = asyncio.ensure_future(limiter.acquire(Cost()))
    second = asyncio.ensure_future(limiter.acquire(Cost()))
    await asyncio.sleep(0.02)
    first.cancel()
    limiter.finish(held, Outcome("ok"))
    assert await asyncio.wait_for(second, 1.0) > 0


def test_aimd_halves_once_per_round_trip_and_grows_back() -> None:
    async def run() -> ModelLimiter:
        limiter = ModelLimiter(ModelLimits(adaptive=True, max_in_flight=8))
        tickets = [await limiter.acquire(Cost()) for _ in range(8)]
        for ticket in tickets[:4]:  # four 429s of one round trip: one decrease
            limiter.finish(ticket, Outcome("rate_limited"))
        assert limiter.stats.window == 4 and limiter.stats.decreases == 1
        for ticket in tickets[4:]:
            limiter.finish(ticket, Outcome("ok"))
        assert limiter.stats.window == 5  # 4 successes: a window's worth, +1
        for _ in range(40):
            limiter.finish(await limiter.acquire(Cost()), Outcome("ok"))
        return limiter

    limiter = asyncio.run(run())
    assert limiter.stats.window == 8  # grown back to the ceiling, not past it
    assert limiter.stats.min_window == 4


def test_rate_limit_headers_are_read_in_both_spellings() -> None:
    openai = read_rate_limit_headers(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "7",
            "x-ratelimit-reset-requests": "1m30s",
            "x-ratelimit-remaining-tokens": "900",
            "x-ratelimit-reset-tokens": "120ms",
        }
    )
    assert openai is not None
    assert (openai.limit_requests, openai.remaining_requests, openai.reset_requests_s) == (500, 7, 90.0)
    assert (openai.remaining_tokens, openai.reset_tokens_s) == (900, 0.12)
    anthropic = read_rate_limit_headers(
        {
            "anthropic-ratelimit-requests-remaining": "3",
            "anthropic-ratelimit-requests-reset": "2999-01-01T00:00:00Z",
        }
    )
    assert anthropic is not None and anthropic.remaining_requests == 3 and anthropic.reset_requests_s > 1e9
    assert read_rate_limit_headers({"content-type": "application/json"}) is None
    assert (
        duration_seconds("6m0s") == 360.0
        and duration_seconds("2.5") == 2.5
        and duration_seconds("soon") is None
    )


def test_bad_rate_limit_fields_are_refused() -> None:
    for bad in ({"rpm": 0}, {"tpm": -5}, {"output_tpm": 1.5}, {"rpm_limit": 10}):
        with pytest.raises(ValidationError):
            ModelSpec(model="openai/fake", api_base="http://127.0.0.1:9/v1", **bad)
    spec = ModelSpec(model="openai/fake", api_base="http://127.0.0.1:9/v1")
    assert not spec.rate_limited
    assert ModelSpec(model="openai/fake", adaptive_concurrency=True).rate_limited


# ------------------------------------------------------------------ through the gateway, real HTTP


class RefusingHub(LocalLimits):
    """A hub that fails any use: proves an unlimited model never reaches it."""

    async def acquire(self, key: str, limits: ModelLimits, cost: Cost) -> int:
        raise AssertionError("an unlimited model reached the limiter")


async def test_an_unlimited_model_never_touches_the_limiter() -> None:
    with FakeLLMServer() as server:
        gateway = Gateway(
            {"g": ModelSpec(model="openai/fake", api_base=server.base_url)}, limits_hub=RefusingHub()
        )
        replies = await asyncio.gather(*(gateway.complete("g", ask(i)) for i in range(5)))
        gateway.close()
    assert len(replies) == 5 and server.stats.ok == 5


@pytest.mark.parametrize("follow", [True, False])
async def test_the_servers_remaining_and_reset_headers_are_followed(follow: bool) -> None:
    # A provider allowing 5 requests per 2 s; the spec sets no limit of its own.
    with FakeLLMServer(request_limit=(5, 2.0)) as server:
        spec = ModelSpec(
            model="openai/fake", api_base=server.base_url, max_concurrency=4, rate_limit_headers=follow
        )
        # Rejected requests count against the provider's window too, so a client that does not follow
        # the headers can lose several retries in a row on a busy machine: give it room to finish.
        gateway = Gateway(
            {"g": spec}, GatewaySettings(max_retries=20, backoff_base_s=0.05, backoff_max_s=2.5)
        )
        # One call first: its headers are what turn the limiter on.
        await gateway.complete("g", ask(0))
        await asyncio.gather(*(gateway.complete("g", ask(i)) for i in range(1, 13)))
        gateway.close()
        stats = server.stats
    if follow:
        assert stats.status_counts == {200: 13}  # not one 429: the limiter waited for the reset
    else:
        assert stats.status_counts.get(429, 0) > 0  # without it the same calls are refused
    assert stats.ok == 13


async def test_retries_count_against_the_rpm() -> None:
    # rpm 2: the first call fails once (503) and its retry would be the third request in a minute.
    with FakeLLMServer(faults=Fault(first_n_fail=1)) as server:
        spec = ModelSpec(model="openai/fake", api_base=server.base_url, rpm=2)
        gateway = Gateway({"g": spec}, GatewaySettings(backoff_base_s=0.01, backoff_max_s=0.01))
        calls = asyncio.ensure_future(
            asyncio.gather(gateway.complete("g", ask(0)), gateway.complete("g", ask(1)))
        )
        done, _ = await asyncio.wait({calls}, timeout=2.0)
        assert not done  # the retry waits for the window
        assert server.stats.calls == 2
        calls.cancel()
        gateway.close()


async def test_aimd_under_30_percent_429s_finishes_every_call_without_opening_the_breaker() -> None:
    with FakeLLMServer(faults=Fault(rate_429=0.3, retry_after_s=0.01), latency_s=0.01) as server:
        spec = ModelSpec(
            model="openai/fake", api_base=server.base_url, max_concurrency=16, adaptive_concurrency=True
        )
        hub = LocalLimits()
        gateway = Gateway(
            {"g": spec},
            GatewaySettings(
                max_retries=12, backoff_base_s=0.01, backoff_max_s=0.05, circuit_breaker_failures=5
            ),
            limits_hub=hub,
        )
        replies = await asyncio.gather(*(gateway.complete("g", ask(i)) for i in range(120)))
        gateway.close()
        stats = server.stats
    figures = hub.snapshot(f"openai/fake@{server.base_url}")
    assert len(replies) == 120 and stats.ok == 120
    assert stats.status_counts[429] > 20  # about 30% of the attempts were refused
    assert gateway.breaker.open_circuits() == {}
    assert figures["decreases"] > 0 and figures["increases"] > 0  # it backed off and grew back
    assert 1 <= figures["min_window"] < 16 and 1 <= figures["window"] <= 16
    assert figures["in_flight"] == 0
    assert stats.peak_in_flight <= 16


def test_a_build_with_aimd_under_30_percent_429s_is_complete(tmp_path: Path) -> None:
    # The same build without faults is the reference: the fake server's faults fire before its script,
    # so a build whose every 429 was retried to success has exactly the reference's rows.
    from factory.config import parse_config
    from factory.pipeline.runner import run_build

    def build(folder: Path, faults: Fault) -> tuple[Path, int]:
        folder.mkdir()
        with FakeLLMServer(faults=faults) as server:
            config = build_config(
                server.base_url,
                folder,
                prompts=12,
                concurrency=8,
                gateway={"max_retries": 10, "circuit_breaker_failures": 5},
            )
            for role in config["models"].values():
                role["adaptive_concurrency"] = True
            return run_build(parse_config(config)).run_dir, server.stats.status_counts.get(429, 0)

    reference, _ = build(tmp_path / "reference", Fault())
    run_dir, refused = build(tmp_path / "refused", Fault(rate_429=0.3, retry_after_s=0.01))
    data = manifest(run_dir)
    assert data["outcome"]["status"] == "complete" and data["outcome"]["exit_code"] == 0
    assert refused > 0 and data["llm"]["retries"] >= refused and data["llm"]["errors"] == 0
    assert data["counts"] == manifest(reference)["counts"]
    assert tables(run_dir) == tables(reference)  # every prompt's rows, as without a single 429
