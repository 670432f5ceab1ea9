"""The lean transport and the litellm path give the same records for the same scripted replies, over
real HTTP to the fake server: texts, parsed outputs, usage, cost, cache keys and hits, retries with
Retry-After, and the error tree. Which path a model takes, and that a lean build never imports
litellm (nor LangGraph, Prefect, training or Hub code it does not use)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _reliability import REPO, build_config, cli_env, write_config
from pydantic import BaseModel, ValidationError

from factory.llm import Gateway, GatewaySettings, LLMError, ModelSpec
from factory.testing import FakeLLMServer, Fault, Rule

TRANSPORTS = ("lean", "litellm")
NO_RETRY = GatewaySettings(max_retries=0, backoff_base_s=0.0)


class Verdict(BaseModel):
    winner: str
    confidence: float


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def rules() -> list[Rule]:
    return [
        Rule("judge", reply='{"winner": "A", "confidence": 0.75}'),
        Rule("tool", reply="answer one two three"),
    ]


async def scripted_sessions(tmp: Path, model: str = "openai/fake") -> list[dict[str, Any]]:
    """The same calls through each transport, against one server reset in between (same faults, same
    api_base, so the same cache keys) and a fresh cache each: two 429s with Retry-After first, then
    text, a schema, a repeat (cache hit) and a second sample; what each call gave, and what was kept."""
    faults = Fault(first_n_fail=2, fail_status=429, retry_after_s=0.05)
    with FakeLLMServer(rules=rules(), default="a plain answer", faults=faults) as server:
        out = []
        for transport in TRANSPORTS:
            server.reset()
            out.append(await _session(server, transport, tmp / transport, model))
    return out


async def _session(server: FakeLLMServer, transport: str, tmp: Path, model: str) -> dict[str, Any]:
    """One transport's session; backoff_base_s is large, so only Retry-After can explain a quick retry."""
    roles = {
        "gen": ModelSpec(
            model=model, api_base=server.base_url, transport=transport, seed=7, params={"stop": ["\n\n"]}
        ),
        "judge": ModelSpec(model=model, api_base=server.base_url, transport=transport, temperature=0.0),
    }
    gateway = Gateway(
        roles, GatewaySettings(max_retries=3, backoff_base_s=5.0), cache_path=tmp / "cache.sqlite"
    )
    calls = [
        await gateway.complete("gen", user("a tool question"), tag="wf"),
        await gateway.complete("judge", user("judge this pair"), schema=Verdict),
        await gateway.complete("gen", user("a tool question"), tag="wf"),
        await gateway.complete("gen", user("a tool question"), sample=1, tag="wf"),
    ]
    usage = gateway.usage.snapshot()
    gateway.close()
    sent = server.requests
    with sqlite3.connect(tmp / "cache.sqlite") as db:
        kept = {
            key: {k: v for k, v in json.loads(record).items() if k != "latency_s"}
            for key, record in db.execute("SELECT key, record FROM calls")
        }
    return {
        "completions": [
            {**c.__dict__, "latency_s": None, "parsed": c.parsed and c.parsed.model_dump()} for c in calls
        ],
        "usage": _without_latency(usage),
        "sent": sent,
        "cache": kept,
    }


def _without_latency(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_latency(v) for k, v in value.items() if k != "latency_s"}
    return value


async def test_both_transports_give_identical_records_usage_cache_and_requests(tmp_path: Path) -> None:
    lean, litellm = await scripted_sessions(tmp_path)
    assert lean == litellm
    assert [c["cached"] for c in lean["completions"]] == [False, False, True, False]
    assert lean["usage"]["retries"] == 2 and lean["usage"]["calls"] == 3 and lean["usage"]["cache_hits"] == 1
    assert lean["completions"][1]["parsed"] == {"winner": "A", "confidence": 0.75}
    assert lean["completions"][0]["prompt_tokens"] > 0 and lean["completions"][0]["completion_tokens"] == 4


async def test_a_priced_model_costs_the_same_on_both_transports(tmp_path: Path) -> None:
    # The fake server echoes the model name, so both paths price the reply as gpt-4o-mini.
    lean, litellm = await scripted_sessions(tmp_path, model="openai/gpt-4o-mini")
    assert lean["usage"]["cost_usd"] > 0
    assert [c["cost_usd"] for c in lean["completions"]] == pytest.approx(
        [c["cost_usd"] for c in litellm["completions"]], rel=1e-9
    )
    assert lean["usage"]["cost_usd"] == pytest.approx(litellm["usage"]["cost_usd"], rel=1e-9)


async def _failure(transport: str, faults: Fault, *, timeout_s: float = 30.0, seed: int = 0) -> LLMError:
    with FakeLLMServer(faults=faults, seed=seed) as server:
        gateway = Gateway(
            {
                "m": ModelSpec(
                    model="openai/fake", api_base=server.base_url, transport=transport, timeout_s=timeout_s
                )
            },
            NO_RETRY,
        )
        with pytest.raises(LLMError) as caught:
            await gateway.complete("m", user("hi"))
    return caught.value


def _shape(error: LLMError) -> tuple[Any, ...]:
    return type(error).__name__, error.retryable, error.retry_after, error.status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504])
async def test_http_failures_are_the_same_error_on_both_transports(status: int) -> None:
    faults = Fault(first_n_fail=1, fail_status=status, retry_after_s=0.25)
    lean, litellm = [await _failure(t, faults) for t in TRANSPORTS]
    assert _shape(lean) == _shape(litellm)
    assert str(lean).startswith("openai/fake") and str(litellm).startswith("openai/fake")
    assert f"HTTP {status}" in str(lean)


@pytest.mark.parametrize(
    ("faults", "seed"),
    [(Fault(rate_malformed=1.0), 0), (Fault(rate_malformed=1.0), 1), (Fault(rate_empty=1.0), 0)],
    ids=["malformed-a", "malformed-b", "empty"],
)
async def test_malformed_and_empty_replies_are_the_same_error_on_both_transports(
    faults: Fault, seed: int
) -> None:
    lean, litellm = [await _failure(t, faults, seed=seed) for t in TRANSPORTS]
    # litellm gives a body it could not read HTTP status 500; the lean transport says there was none.
    assert _shape(lean)[:3] == _shape(litellm)[:3] and type(lean).__name__ in (
        "ProviderError",
        "EmptyReplyError",
    )


async def test_timeouts_and_refused_connections_are_the_same_error_on_both_transports() -> None:
    slow = Fault(rate_timeout=1.0, timeout_s=5.0)
    lean, litellm = [await _failure(t, slow, timeout_s=0.3) for t in TRANSPORTS]
    assert _shape(lean)[:3] == _shape(litellm)[:3] == ("LLMTimeoutError", True, None)
    with socket.socket() as probe:  # nothing listens here
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = []
    for transport in TRANSPORTS:
        gateway = Gateway(
            {
                "m": ModelSpec(
                    model="openai/fake", api_base=f"http://127.0.0.1:{port}/v1", transport=transport
                )
            },
            NO_RETRY,
        )
        with pytest.raises(LLMError) as caught:
            await gateway.complete("m", user("hi"))
        refused.append(caught.value)
    assert [_shape(e)[:3] for e in refused] == [("ProviderError", True, None)] * 2


def test_auto_takes_the_lean_transport_for_openai_compatible_endpoints_only() -> None:
    base = "http://127.0.0.1:8000/v1"
    assert ModelSpec(model="openai/llama3", api_base=base).uses_lean_transport
    assert ModelSpec(
        model="openai/llama3", api_base=base, params={"n": 2, "extra_headers": {"X-A": "1"}}
    ).uses_lean_transport
    assert not ModelSpec(model="openai/gpt-4o-mini").uses_lean_transport  # OpenAI itself: litellm's rewrites
    assert not ModelSpec(model="ollama/llama3", api_base=base).uses_lean_transport
    assert not ModelSpec(
        model="openai/llama3", api_base=base, params={"mock_response": "x"}
    ).uses_lean_transport
    assert not ModelSpec(model="openai/llama3", api_base=base, transport="litellm").uses_lean_transport
    assert ModelSpec(model="openai/gpt-4o-mini", transport="lean").uses_lean_transport
    with pytest.raises(ValidationError, match="transport: lean .*'openai/...' model"):
        ModelSpec(model="anthropic/claude-3-haiku", transport="lean")
    with pytest.raises(ValidationError, match="params mock_response need litellm"):
        ModelSpec(model="openai/x", api_base=base, transport="lean", params={"mock_response": "x"})


async def test_extra_headers_and_extra_body_reach_the_endpoint_on_both_transports() -> None:
    bodies = []
    for transport in TRANSPORTS:
        with FakeLLMServer() as server:
            gateway = Gateway(
                {
                    "m": ModelSpec(
                        model="openai/fake",
                        api_base=server.base_url,
                        transport=transport,
                        params={"extra_body": {"top_k": 5}, "n": 1},
                    )
                }
            )
            await gateway.complete("m", user("hi"))
            bodies.append(server.requests[-1])
    assert bodies[0] == bodies[1] and bodies[0]["top_k"] == 5


def test_a_lean_build_imports_no_litellm_langgraph_prefect_training_or_hub_code(tmp_path: Path) -> None:
    heavy = (
        "litellm",
        "langgraph",
        "prefect",
        "trl",
        "torch",
        "flows",
        "factory.release.train.trainer",
        "factory.release.publish",
        "judges.report",
        "factory.workflows.feedback_loop",
    )
    probe = (
        f"import json, sys\nfrom factory.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
        f"    pass\nprint(json.dumps(sorted({{m for m in sys.modules for h in {heavy!r} "
        f"if m == h or m.startswith(h + '.')}})))"
    )
    with FakeLLMServer() as server:
        config = build_config(server.base_url, tmp_path, prompts=3, rationales={"enabled": False})
        path = write_config(tmp_path / "build.yaml", config)
        done = subprocess.run(
            [sys.executable, "-c", probe, "build", str(path), "--engine", "local", "--quiet"],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=REPO,
            timeout=300,
            check=False,
        )
        calls = server.stats.calls
    assert calls > 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], done.stderr


def test_the_litellm_path_still_serves_a_build_end_to_end(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        config = build_config(server.base_url, tmp_path, prompts=3)
        for role in config["models"].values():
            role["transport"] = "litellm"
        path = write_config(tmp_path / "build.yaml", config)
        done = subprocess.run(
            [sys.executable, "-m", "factory", "build", str(path), "--engine", "local", "--quiet"],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=REPO,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert server.stats.calls >= 9


def test_gateway_close_after_the_loop_ended_leaves_no_open_pool() -> None:
    with FakeLLMServer() as server:
        gateway = Gateway({"m": ModelSpec(model="openai/fake", api_base=server.base_url)})
        loop = asyncio.new_event_loop()
        loop.run_until_complete(gateway.complete("m", user("hi")))  # the loop is not shut down by a runner
        loop.close()
        gateway.close()
    assert gateway._lean is not None and gateway._lean._sessions == {}
