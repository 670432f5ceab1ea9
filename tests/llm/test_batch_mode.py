"""Batch mode (`batch: true`): builds and gateway calls through the fake server's Files and Batches
endpoints over real HTTP (litellm's batch API, `custom_llm_provider="openai"` with an api_base).

What is shown: a batch-mode judge gives the same dataset as the online judge at the batch price; the
request cache answers across modes; failed and expired rows, and only those, are resubmitted; a row
that keeps failing fails its call with its reason; the estimate prices batch roles at the batch
price; a model without a batch API is refused before any call.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reliability import build_config, comparable, manifest, run_cli, write_config

from factory.config import parse_config
from factory.llm import Gateway, GatewaySettings, ModelSpec, ProviderError
from factory.llm.batch_settings import BatchSettings
from factory.llm.price_map import price_table
from factory.pipeline import run_build
from factory.pipeline.estimate import estimate_build, format_estimate
from factory.pipeline.progress import BuildProgress, ProgressReporter
from factory.run.recorded_inputs import load_build_prompts
from factory.testing import FakeLLMServer
from factory.testing.fake_batches import BatchPlan

PRICED = "openai/gpt-4o-mini"  # in litellm's table with batch rates; served here by the fake server
FAST = {"quiet_s": 0.15, "poll_s": 0.05, "poll_max_s": 0.2}
TABLES = ("candidates", "judgments", "pairs", "failures")


def _build(
    server: FakeLLMServer,
    tmp: Path,
    *,
    batch_roles: tuple[str, ...] = (),
    progress: BuildProgress | None = None,
    **extra: Any,
) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    config = build_config(
        server.base_url, tmp, prompts=8, shard_size=4, concurrency=4, gateway={"batch": FAST}, **extra
    )
    config["models"]["judge"]["model"] = PRICED
    for role in batch_roles:
        config["models"][role]["batch"] = True
    return run_build(parse_config(config), progress=progress).run_dir


def _rows(run_dir: Path, name: str) -> list[str]:
    """A table's rows without its cost column (the one thing a batch price changes)."""
    frame = pl.read_parquet(run_dir / f"{name}.parquet")
    return comparable(frame.drop([c for c in frame.columns if c == "cost_usd"]))


def _batch_price(prompt_tokens: int, completion_tokens: int) -> float:
    entry = price_table()[PRICED.removeprefix("openai/")]
    return (
        prompt_tokens * entry["input_cost_per_token_batches"]
        + completion_tokens * entry["output_cost_per_token_batches"]
    )


def _online_price(prompt_tokens: int, completion_tokens: int) -> float:
    entry = price_table()[PRICED.removeprefix("openai/")]
    return prompt_tokens * entry["input_cost_per_token"] + completion_tokens * entry["output_cost_per_token"]


def test_batch_judge_build_equals_the_online_build_at_the_batch_price(tmp_path: Path) -> None:
    with FakeLLMServer(
        batch=BatchPlan(completion_delay_s=0.8)
    ) as server:  # long enough to be seen in progress
        online = _build(server, tmp_path / "online")
        online_judge_calls = server.stats.by_model[PRICED.removeprefix("openai/")]["calls"]
        before = server.stats.calls
        seen: list[str] = []
        progress = BuildProgress()
        with ProgressReporter(progress, lambda snap: seen.append(snap.line()), every_s=0.05):
            batched = _build(server, tmp_path / "batch", batch_roles=("judge",), progress=progress)
        stats = server.stats
        # The batch build sent no judge call online: every one was a batch row.
        assert stats.by_model[PRICED.removeprefix("openai/")]["calls"] == online_judge_calls
        assert stats.calls - before == before - online_judge_calls
        assert stats.batch_rows_executed == online_judge_calls and stats.batches_created >= 1

    for name in TABLES:
        assert _rows(batched, name) == _rows(online, name), name
    assert pl.read_parquet(batched / "pairs.parquet").height > 0

    judge_online = manifest(online)["llm"]["by_role"]["judge"]
    llm = manifest(batched)["llm"]
    judge = llm["by_role"]["judge"]
    assert judge["calls"] == judge["batch_calls"] == online_judge_calls
    assert judge["prompt_tokens"] == judge_online["prompt_tokens"]
    assert judge["cost_usd"] == pytest.approx(
        _batch_price(judge["prompt_tokens"], judge["completion_tokens"]), abs=1e-7
    )
    assert judge_online["cost_usd"] == pytest.approx(
        _online_price(judge["prompt_tokens"], judge["completion_tokens"]), abs=1e-7
    )
    assert judge["cost_usd"] < judge_online["cost_usd"]
    assert judge["batch_cost_usd"] == pytest.approx(judge["cost_usd"])
    # The other roles stayed online; the manifest's totals carry the batch price.
    assert llm["by_role"]["generator"]["batch_calls"] == 0
    assert llm["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in llm["by_role"].values()), abs=1e-7)
    assert llm["batches"]["done"] == stats.batches_created and llm["batches"]["in_progress"] == 0
    # Progress showed the batches on their way, and all done at the end.
    assert any("1 in progress / 0 finalizing / 0 done" in line for line in seen), seen[-3:]
    assert f"batches 0 submitted / 0 in progress / 0 finalizing / {stats.batches_created} done" in seen[-1]
    # Every batch was recorded in the run folder, and is closed.
    records = sorted((batched / "batches").glob("*.json"))
    assert len(records) == stats.batches_created
    assert all('"status": "done"' in p.read_text() for p in records)


def test_every_batchable_stage_in_batch_mode_and_a_feedback_loop_per_round(tmp_path: Path) -> None:
    """Generation (single agent and a feedback loop's rounds), judging in both orders, rationales:
    all batched, the dataset equal to the online one."""
    workflows = {
        "workflows": [
            {"kind": "single", "samples": 2},
            {"kind": "feedback_loop", "generator": "generator", "reviewers": ["reviewer"], "n_responses": 2},
        ]
    }
    extra = {"generation": workflows, "judging": {"setting": {"order": "both"}}}
    with FakeLLMServer(batch=BatchPlan(completion_delay_s=0.05, finalizing_s=0.0)) as server:

        def build(tmp: Path, roles: tuple[str, ...]) -> Path:
            tmp.mkdir()
            config = build_config(
                server.base_url, tmp, prompts=4, shard_size=4, concurrency=4, gateway={"batch": FAST}, **extra
            )
            config["models"]["reviewer"] = dict(config["models"]["judge"])
            for role in roles:
                config["models"][role]["batch"] = True
            return run_build(parse_config(config)).run_dir

        online = build(tmp_path / "online", ())
        online_calls = server.stats.calls
        # The feedback loop's first answer is the single agent's first sample: the same request, which
        # two concurrent online calls both send, and batch mode sends once.
        distinct = {json.dumps(body, sort_keys=True) for body in server.requests}
        batched = build(tmp_path / "batch", ("generator", "reviewer", "judge", "rationale_writer"))
        assert server.stats.calls == online_calls  # nothing of the batch build went online
        assert server.stats.batch_rows_executed == len(distinct)
        # Rounds that wait on earlier replies made several batches (one per round per stage).
        assert server.stats.batches_created >= 4
    for name in TABLES:
        assert _rows(batched, name) == _rows(online, name), name
    assert manifest(batched)["status"] == "complete"


def _gateway(server: FakeLLMServer, cache: Path, *, batch: bool, **settings: Any) -> Gateway:
    spec = ModelSpec(model=PRICED, api_base=server.base_url, temperature=0.0, max_tokens=32, batch=batch)
    return Gateway(
        {"judge": spec},
        GatewaySettings(batch=BatchSettings(**{**FAST, **settings}), backoff_base_s=0.01),
        cache_path=cache,
    )


async def _ask(gateway: Gateway, n: int) -> list[Any]:
    messages = [[{"role": "user", "content": f"Question {i}: name a colour."}] for i in range(n)]
    return await asyncio.gather(*(gateway.complete("judge", m) for m in messages), return_exceptions=True)


def test_the_request_cache_answers_across_modes(tmp_path: Path) -> None:
    with FakeLLMServer(batch=BatchPlan(completion_delay_s=0.05)) as server:
        # Paid in batch mode, then asked online: answered by the cache, nothing sent.
        gateway = _gateway(server, tmp_path / "a.sqlite", batch=True)
        paid = asyncio.run(_ask(gateway, 6))
        gateway.close()
        assert server.stats.batch_rows_executed == 6 and server.stats.calls == 0
        gateway = _gateway(server, tmp_path / "a.sqlite", batch=False)
        again = asyncio.run(_ask(gateway, 6))
        gateway.close()
        assert server.stats.calls == 0
        assert [c.text for c in again] == [c.text for c in paid] and all(c.cached for c in again)
        # Paid online, then asked in batch mode: no batch is created.
        gateway = _gateway(server, tmp_path / "b.sqlite", batch=False)
        online = asyncio.run(_ask(gateway, 6))
        gateway.close()
        created = server.stats.batches_created
        gateway = _gateway(server, tmp_path / "b.sqlite", batch=True)
        from_batch_mode = asyncio.run(_ask(gateway, 6))
        gateway.close()
        assert server.stats.batches_created == created
        assert [c.request_hash for c in from_batch_mode] == [c.request_hash for c in online]
        assert all(c.cached for c in from_batch_mode)
        # Online and batch replies of the same request are the same text (the fake's script).
        assert [c.text for c in online] == [c.text for c in paid]


def test_failed_and_expired_rows_and_only_those_are_resubmitted(tmp_path: Path) -> None:
    plan = BatchPlan(completion_delay_s=0.05, fail_fraction=0.10, expire_fraction=0.05)
    with FakeLLMServer(batch=plan) as server:
        gateway = _gateway(server, tmp_path / "c.sqlite", batch=True)
        replies = asyncio.run(_ask(gateway, 40))
        usage = gateway.usage.snapshot()
        gateway.close()
        batches = server.batches.batch_rows
        rows = server.batches.rows
    assert all(not isinstance(r, BaseException) for r in replies), replies
    assert list(batches) == ["batch-fake-1", "batch-fake-2"]
    first, second = batches["batch-fake-1"], batches["batch-fake-2"]
    failed = {cid for cid, outcomes in rows.items() if outcomes[0] == "failed"}
    expired = {cid for cid, outcomes in rows.items() if outcomes[0] == "expired"}
    assert (len(first), len(failed), len(expired)) == (40, 4, 2)
    assert sorted(second) == sorted(failed | expired)  # exactly those rows, each once
    assert all(rows[cid] == [rows[cid][0], "ok"] for cid in second)
    # Each call counted once, at the batch price; the failed attempts cost nothing.
    assert usage["calls"] == usage["batch_calls"] == 40 and usage["errors"] == 0
    assert usage["cost_usd"] == pytest.approx(
        _batch_price(usage["prompt_tokens"], usage["completion_tokens"])
    )


def test_a_row_that_keeps_failing_fails_its_call_after_row_attempts(tmp_path: Path) -> None:
    plan = BatchPlan(completion_delay_s=0.0, finalizing_s=0.0, fail_fraction=0.25, sticky=True)
    with FakeLLMServer(batch=plan) as server:
        gateway = _gateway(server, tmp_path / "d.sqlite", batch=True, row_attempts=2)
        replies = asyncio.run(_ask(gateway, 8))
        usage = gateway.usage.snapshot()
        gateway.close()
        assert server.stats.batches_created == 2
    errors = [r for r in replies if isinstance(r, BaseException)]
    assert len(errors) == 2 and all(isinstance(e, ProviderError) and "HTTP 500" in str(e) for e in errors)
    assert usage["calls"] == 6 and usage["errors"] == 2


def test_estimate_prices_batch_roles_at_the_batch_price(tmp_path: Path) -> None:
    config = build_config("http://127.0.0.1:9/v1", tmp_path, prompts=4)
    config["models"]["judge"]["model"] = PRICED
    online = parse_config(config)
    config["models"]["judge"]["batch"] = True
    batched = parse_config(config)
    prompts, _ = load_build_prompts(batched)
    lines_online = {(ln.stage, ln.role): ln for ln in estimate_build(online, prompts).lines}
    estimate = estimate_build(batched, prompts)
    for line in estimate.lines:
        if line.role == "judge":
            assert line.batch and line.cost_usd == pytest.approx(
                _batch_price(line.prompt_tokens, line.completion_tokens)
            )
            assert line.cost_usd < (lines_online[(line.stage, line.role)].cost_usd or 0)
    assert "judge (batch)" in format_estimate(estimate)


def test_a_model_without_a_batch_api_is_refused_before_any_call(tmp_path: Path) -> None:
    config = build_config("http://127.0.0.1:9/v1", tmp_path, prompts=2)
    config["models"]["judge"] = {"model": "local/smollm2", "batch": True}
    result = run_cli("build", str(write_config(tmp_path / "bad.yaml", config)))
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "batch: true needs a provider with a batch API" in error[0]
