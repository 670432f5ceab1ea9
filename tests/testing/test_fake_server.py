"""The fake OpenAI-compatible server, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import time
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from pydantic import BaseModel, Field

from factory._util.errors import UserError
from factory.testing import FakeLLMServer, Fault, Rule, load_script
from factory.testing.script import fault_from_dict


async def chat(
    base_url: str, content: str = "hello", *, timeout_s: float = 10.0, **extra: Any
) -> tuple[int, dict[str, str], str]:
    """POST one chat completion; returns (status, headers, raw body text)."""
    body = {
        "model": extra.pop("model", "fake"),
        "messages": extra.pop("messages", None) or [{"role": "user", "content": content}],
        **extra,
    }
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
        session.post(f"{base_url}/chat/completions", json=body) as response,
    ):
        return response.status, dict(response.headers), await response.text()


def content_of(raw: str) -> str:
    return str(json.loads(raw)["choices"][0]["message"]["content"])


# --- scripted rules -------------------------------------------------------------------------------


async def test_rules_match_substring_regex_model_and_callable_first_match_wins() -> None:
    rules = [
        Rule("capital", reply="Paris"),
        Rule(regex=r"\b\d+ \+ \d+\b", reply="4"),
        Rule(model="judge-model", reply="judged"),
        Rule("secret", role="system", reply="system matched"),
        Rule("echo", reply=lambda body: body["messages"][-1]["content"].upper()),
        Rule("capital", reply="never reached: an earlier rule wins"),
    ]
    with FakeLLMServer(rules=rules) as server:
        assert content_of((await chat(server.base_url, "What is the capital of France?"))[2]) == "Paris"
        assert content_of((await chat(server.base_url, "compute 2 + 2 please"))[2]) == "4"
        assert content_of((await chat(server.base_url, "anything", model="judge-model"))[2]) == "judged"
        system = [{"role": "system", "content": "the secret rule"}, {"role": "user", "content": "hi"}]
        assert content_of((await chat(server.base_url, messages=system))[2]) == "system matched"
        assert content_of((await chat(server.base_url, "echo me"))[2]) == "ECHO ME"
        # role="last_user": the system text alone does not trigger a last_user rule.
        history = [
            {"role": "user", "content": "capital?"},
            {"role": "assistant", "content": "Paris"},
            {"role": "user", "content": "thanks"},
        ]
        assert content_of((await chat(server.base_url, messages=history))[2]).startswith("Answer to: thanks")
        assert [r["messages"][-1]["content"] for r in server.requests][:2] == [
            "What is the capital of France?",
            "compute 2 + 2 please",
        ]


async def test_reply_list_cycles_and_times_exhausts_with_500_when_strict() -> None:
    with FakeLLMServer(
        rules=[Rule("cycle", reply=["one", "two"]), Rule("limited", reply=["first", "second"], times=2)]
    ) as server:
        got = [content_of((await chat(server.base_url, "cycle"))[2]) for _ in range(3)]
        assert got == ["one", "two", "one"]
        assert [content_of((await chat(server.base_url, "limited"))[2]) for _ in range(2)] == [
            "first",
            "second",
        ]
        status, _, raw = await chat(server.base_url, "limited")
        assert status == 500
        error = json.loads(raw)["error"]
        assert error["code"] == "script_exhausted" and "contains='limited'" in error["message"]
        server.reset()
        assert content_of((await chat(server.base_url, "limited"))[2]) == "first"

    with FakeLLMServer(rules=[Rule("limited", reply="only once", times=1)], strict=False) as server:
        await chat(server.base_url, "limited")
        status, _, raw = await chat(server.base_url, "limited")
        assert status == 200 and content_of(raw).startswith("Answer to: limited")


async def test_usage_fields_and_stats_totals() -> None:
    with FakeLLMServer(rules=[Rule("count", reply="three word reply")]) as server:
        messages = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "count these four"},
        ]
        status, _, raw = await chat(server.base_url, messages=messages, model="m1")
        data = json.loads(raw)
        assert status == 200 and data["object"] == "chat.completion" and data["model"] == "m1"
        assert data["id"] and isinstance(data["created"], int)
        assert data["choices"][0]["message"]["role"] == "assistant"
        assert data["choices"][0]["finish_reason"] == "stop"
        assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        await chat(server.base_url, "count again", model="m2")
        stats = server.stats
        assert stats.calls == 2 and stats.ok == 2 and stats.status_counts == {200: 2}
        assert stats.prompt_tokens == 5 + 2 and stats.completion_tokens == 6
        assert stats.by_model["m2"] == {"calls": 1, "prompt_tokens": 2, "completion_tokens": 3}
        assert stats.in_flight == 0
        async with aiohttp.ClientSession() as session:
            async with session.get(server.base_url + "/models") as response:
                ids = [m["id"] for m in (await response.json())["data"]]
            assert {"m1", "m2"} <= set(ids)
            root = server.base_url.removesuffix("/v1")
            async with session.get(root + "/stats") as response:
                assert (await response.json())["status_counts"] == {"200": 2}
            async with session.post(root + "/reset") as response:
                assert response.status == 200
        assert server.stats.calls == 0 and server.requests == []


async def test_bad_request_body_gets_400() -> None:
    with FakeLLMServer() as server:
        async with aiohttp.ClientSession() as session:
            async with session.post(server.base_url + "/chat/completions", data=b"{not json") as response:
                assert response.status == 400
            async with session.post(server.base_url + "/chat/completions", json={"model": "x"}) as response:
                assert "messages" in (await response.json())["error"]["message"]


async def test_streaming_returns_sse_chunks() -> None:
    with FakeLLMServer(rules=[Rule(reply="streamed text")]) as server:
        status, headers, raw = await chat(
            server.base_url, stream=True, stream_options={"include_usage": True}
        )
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in raw.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert (
            "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            == "streamed text"
        )
        assert chunks[-1]["usage"]["completion_tokens"] == 2


# --- faults ---------------------------------------------------------------------------------------


async def test_429_carries_retry_after_and_500_is_server_error() -> None:
    with FakeLLMServer(faults=Fault(rate_429=1.0, retry_after_s=0.05)) as server:
        status, headers, raw = await chat(server.base_url)
        assert status == 429 and headers["Retry-After"] == "0.05" and headers["retry-after-ms"] == "50"
        assert json.loads(raw)["error"]["type"] == "rate_limit_error"
        assert server.stats.faults == {"429": 1} and server.stats.ok == 0
    with FakeLLMServer(faults=Fault(rate_500=1.0)) as server:
        assert (await chat(server.base_url))[0] == 500


async def test_first_n_fail_then_recovers() -> None:
    with FakeLLMServer(faults=Fault(first_n_fail=2, fail_status=503)) as server:
        statuses = [(await chat(server.base_url))[0] for _ in range(4)]
        assert statuses == [503, 503, 200, 200]


async def test_fault_sequence_is_reproducible_from_the_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        with FakeLLMServer(faults=Fault(rate_429=0.3, rate_500=0.2), seed=seed) as server:
            return [(await chat(server.base_url))[0] for _ in range(30)]

    first = await statuses(1)
    assert first == await statuses(1)
    assert {200, 429, 500} == set(first)
    assert first != await statuses(2)


async def test_timeout_fault_makes_the_client_time_out_and_stop_does_not_hang() -> None:
    server = FakeLLMServer(faults=Fault(rate_timeout=1.0, timeout_s=60.0)).start()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await chat(server.base_url, timeout_s=0.3)
        assert server.stats.faults == {"timeout": 1} and server.stats.in_flight == 1
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 10  # the sleeping handler is cancelled, not awaited for 60 s


async def test_malformed_and_truncated_replies() -> None:
    with FakeLLMServer(faults=Fault(rate_malformed=1.0)) as server:
        for _ in range(6):
            status, _, raw = await chat(server.base_url)
            assert status == 200
            try:
                data = json.loads(raw)
            except json.JSONDecodeError:
                continue
            assert "choices" not in data
        assert server.stats.ok == 0 and server.stats.faults == {"malformed": 6}
    with FakeLLMServer(
        rules=[Rule(reply="one two three four five six")], faults=Fault(rate_truncated=1.0)
    ) as server:
        data = json.loads((await chat(server.base_url))[2])
        assert data["choices"][0]["message"]["content"] == "one two three"  # the first 13 of 27 characters
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["usage"]["completion_tokens"] == 3


async def test_empty_replies_are_200_with_blank_content() -> None:
    with FakeLLMServer(rules=[Rule(reply="a real answer")], faults=Fault(rate_empty=1.0)) as server:
        replies = [json.loads((await chat(server.base_url))[2]) for _ in range(8)]
        contents = {r["choices"][0]["message"]["content"] for r in replies}
        assert contents == {"", " \n\t "}  # empty and whitespace-only, both drawn
        assert {r["choices"][0]["finish_reason"] for r in replies} == {"stop"}
        assert {r["usage"]["completion_tokens"] for r in replies} == {0}
        assert server.stats.faults == {"empty": 8} and server.stats.status_counts == {200: 8}


async def test_rate_401_rejects_like_a_wrong_api_key() -> None:
    with FakeLLMServer(faults=Fault(rate_401=1.0)) as server:
        status, _, raw = await chat(server.base_url)
        assert status == 401 and json.loads(raw)["error"]["code"] == "invalid_api_key"
        assert server.stats.faults == {"401": 1} and server.stats.ok == 0


def test_new_faults_load_from_plain_data_for_the_cli_and_script_files() -> None:
    assert fault_from_dict({"rate_empty": 0.3, "rate_401": 0.2}) == Fault(rate_empty=0.3, rate_401=0.2)
    with pytest.raises(UserError, match="sum to"):
        fault_from_dict({"rate_empty": 0.6, "rate_401": 0.6})


async def test_outage_toggles_at_runtime() -> None:
    with FakeLLMServer(faults=Fault(outage=True)) as server:
        assert (await chat(server.base_url))[0] == 503
        server.set_outage(False)
        assert (await chat(server.base_url))[0] == 200
        server.set_outage(True)
        assert (await chat(server.base_url))[0] == 503
        assert server.stats.status_counts == {503: 2, 200: 1}


# --- protocol-aware defaults ------------------------------------------------------------------------


class Tone(str, Enum):
    warm = "warm"
    neutral = "neutral"


class Critique(BaseModel):
    aspect: Literal["helpfulness", "accuracy", "depth"]
    weight: float = Field(ge=0.0, le=1.0)


class Verdict(BaseModel):
    winner: Literal["A", "B", "tie"]
    confidence: float = Field(gt=0.0, lt=1.0)
    score: int = Field(ge=1, le=10)
    tone: Tone
    notes: str = Field(max_length=20)
    critiques: list[Critique] = Field(min_length=2)
    summary: str | None = None
    accepted: bool


async def test_default_json_schema_replies_validate_and_vary() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "Verdict", "schema": Verdict.model_json_schema()}}
    with FakeLLMServer() as server:
        verdicts = []
        for i in range(12):
            status, _, raw = await chat(server.base_url, f"judge pair {i}", response_format=fmt)
            assert status == 200
            verdicts.append(Verdict.model_validate_json(content_of(raw)))
        assert len({v.score for v in verdicts}) > 1 and len({v.confidence for v in verdicts}) > 1
        assert len({v.winner for v in verdicts}) > 1
        repeat = Verdict.model_validate_json(
            content_of((await chat(server.base_url, "judge pair 0", response_format=fmt))[2])
        )
        assert repeat == verdicts[0]  # same request, same answer
        raw = (await chat(server.base_url, "any json", response_format={"type": "json_object"}))[2]
        assert isinstance(json.loads(content_of(raw)), dict)


async def test_default_judge_replies_follow_the_protocol_asked_for() -> None:
    combined = re.compile(r"### Score Assistant A: (\d+)/(\d+)\s*\n### Score Assistant B: (\d+)/(\d+)")
    with FakeLLMServer() as server:
        for n in (5, 10, 100):
            prompt = f"Compare.\nReply with:\n### Score Assistant A: <score>/{n}\n### Score Assistant B: <score>/{n}"
            text = content_of((await chat(server.base_url, prompt))[2])
            found = combined.search(text)
            assert found, text
            assert int(found[2]) == int(found[4]) == n and 1 <= int(found[1]) <= n and 1 <= int(found[3]) <= n
            assert text.startswith("### Evaluation Evidence:")

        direct = 'Output "### Evaluation Evidence:" then "### Answer: A, B or C".'
        answers = set()
        for i in range(12):
            found = re.search(
                r"### Answer: ([ABC])$", content_of((await chat(server.base_url, f"{direct} {i}"))[2])
            )
            assert found
            answers.add(found[1])
        assert len(answers) > 1

        independent = "Rate the answer. End with ### Overall Score: X/10"
        text = content_of((await chat(server.base_url, independent))[2])
        assert re.search(r"^### Overall Score: ([1-9]|10)/10$", text, re.MULTILINE)
        reviewer = "Give ### Evaluation:, then ### Overall Score: X/10, then ### Feedback: on how to improve."
        text = content_of((await chat(server.base_url, reviewer))[2])
        assert re.fullmatch(r"### Evaluation: .+\n### Overall Score: \d+/10\n### Feedback: .+", text)

        # A revision prompt quoting a filled-in review is not itself a request for a score.
        revision = "Feedback:\n### Overall Score: 7/10\n### Feedback: add detail\nUpdate your response."
        assert content_of((await chat(server.base_url, revision))[2]).startswith("Answer to: Feedback:")


async def test_default_plain_answers_differ_by_seed() -> None:
    with FakeLLMServer() as server:
        texts = {
            content_of((await chat(server.base_url, "Tell me about tides", seed=s))[2]) for s in range(8)
        }
        assert len(texts) > 1 and all(t.startswith("Answer to: Tell me about tides") for t in texts)


# --- concurrency and throughput ---------------------------------------------------------------------


async def test_peak_in_flight_under_concurrency_with_latency() -> None:
    with FakeLLMServer(latency_s=0.2) as server:
        results = await asyncio.gather(*(chat(server.base_url, f"q{i}") for i in range(10)))
        assert all(status == 200 for status, _, _ in results)
        assert server.stats.peak_in_flight > 1 and server.stats.in_flight == 0


async def test_throughput_500_requests_concurrency_50() -> None:
    # A little latency so requests overlap on the server; with none, each handler finishes before
    # the next one starts and the peak stays at 1.
    with FakeLLMServer(latency_s=0.005, keep_requests=False) as server:
        gate = asyncio.Semaphore(50)
        body = {"model": "fake", "messages": [{"role": "user", "content": "benchmark prompt"}]}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

            async def one() -> int:
                async with gate, session.post(server.base_url + "/chat/completions", json=body) as response:
                    await response.read()
                    return response.status

            started = time.perf_counter()
            statuses = await asyncio.gather(*(one() for _ in range(500)))
            elapsed = time.perf_counter() - started
        assert statuses == [200] * 500
        assert server.stats.ok == 500 and server.stats.peak_in_flight > 1
        print(f"fake server (in-thread, shares the client's GIL): {500 / elapsed:.0f} requests/s")


# --- script files and subprocess mode --------------------------------------------------------------


def test_script_file_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - contains: x\n    reply: y\n    colour: red\n")
    with pytest.raises(UserError, match="colour"):
        load_script(bad)
    bad.write_text("faults: {rate_429: 0.8, rate_500: 0.5}\n")
    with pytest.raises(UserError, match="sum to"):
        load_script(bad)


async def test_spawned_server_serves_script_and_closes_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("rules:\n  - contains: ping\n    reply: [pong, pong again]\nlatency_s: 0.01\n")
    server = FakeLLMServer.spawn(script_path=str(script), faults=Fault(first_n_fail=1))
    try:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert (await chat(server.base_url, "ping"))[0] == 503
        assert content_of((await chat(server.base_url, "ping"))[2]) == "pong"
        assert content_of((await chat(server.base_url, "ping"))[2]) == "pong again"
        stats = server.stats()
        assert stats.calls == 3 and stats.ok == 2 and stats.status_counts == {503: 1, 200: 2}
        server.set_outage(True)
        assert (await chat(server.base_url, "ping"))[0] == 503
        server.reset()
        assert server.stats().calls == 0
    finally:
        server.close()
    assert server.process.poll() is not None  # reaped, not left running
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(server.base_url, "ping", timeout_s=2)


def test_spawn_reports_a_bad_script() -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        FakeLLMServer.spawn(script_path="/nonexistent/script.yaml", startup_timeout_s=20)
