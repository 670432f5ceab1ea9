"""Whole builds against a fake server that fails: rate limits, 5xx, timeouts, broken and cut-off replies,
and sustained outages. The build must finish (or stop cleanly), account for every prompt, and resume."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reliability import OutageAfter, build_config, manifest, tables

from factory.config import parse_config
from factory.pipeline import run_build
from factory.run.folder import RunFolder
from factory.testing import FakeLLMServer, Fault

# 20% 429 (with Retry-After) and 5xx, 5% timeouts, 10% malformed or truncated replies.
FAULTS = Fault(
    rate_429=0.1,
    retry_after_s=0.01,
    rate_500=0.1,
    rate_timeout=0.05,
    timeout_s=3.0,
    rate_malformed=0.05,
    rate_truncated=0.05,
)
CALL_FAILURES = ("429", "500", "timeout", "malformed")  # faults that fail the call (truncated is a reply)


def _build(config: dict[str, Any]) -> Path:
    return run_build(parse_config(config)).run_dir


def _accounted_prompts(run_dir: Path) -> tuple[set[str], set[str]]:
    """(prompts with a judged pair in the dataset, prompts with a failure row, incl. failed pairs)."""
    pairs = pl.read_parquet(run_dir / "pairs.parquet")
    failures = pl.read_parquet(run_dir / "failures.parquet")
    judged = pairs.filter(pl.col("source") == "judged") if "source" in pairs.columns else pairs
    stage_pairs = RunFolder(run_dir).read_stage("pairs")
    prompt_of_pair = (
        dict(zip(stage_pairs["pair_id"], stage_pairs["prompt_id"])) if stage_pairs is not None else {}
    )
    failed = {prompt_of_pair.get(item, item) for item in failures["item_id"].to_list()}
    return set(judged["prompt_id"].to_list()), failed


def test_build_completes_under_faults_and_accounts_for_every_prompt(tmp_path: Path) -> None:
    with FakeLLMServer(faults=FAULTS, seed=11) as server:
        config = build_config(
            server.base_url,
            tmp_path,
            prompts=16,
            models={
                "generator": {
                    "model": "openai/fake",
                    "api_base": server.base_url,
                    "timeout_s": 0.5,
                    "max_tokens": 64,
                    "temperature": 0.8,
                },
                "judge": {
                    "model": "openai/fake",
                    "api_base": server.base_url,
                    "timeout_s": 0.5,
                    "max_tokens": 64,
                    "temperature": 0.0,
                },
                "rationale_writer": {
                    "model": "openai/fake",
                    "api_base": server.base_url,
                    "timeout_s": 0.5,
                    "max_tokens": 64,
                },
            },
        )
        run_dir = _build(config)
        stats = server.stats

    m = manifest(run_dir)
    assert m["status"] == "complete", m.get("stopped_reason")
    injected = sum(stats.faults.get(kind, 0) for kind in CALL_FAILURES)
    assert injected > 10 and stats.faults.get("truncated", 0) > 0  # the faults really happened
    # Every failed attempt was either retried or recorded as an error; retries show in the manifest.
    assert m["llm"]["retries"] > 0
    assert m["llm"]["retries"] + m["llm"]["errors"] >= injected

    prompts = {f"q{i:03d}" for i in range(16)}
    in_dataset, in_failures = _accounted_prompts(run_dir)
    assert prompts <= in_dataset | in_failures, sorted(prompts - in_dataset - in_failures)

    failures = pl.read_parquet(run_dir / "failures.parquet")
    assert set(failures.columns) >= {"item_id", "stage", "reason", "raw"}
    assert all(failures["reason"].str.len_chars() > 0)
    judge_failures = failures.filter(pl.col("stage") == "judge")
    assert all(judge_failures["raw"].str.len_chars() > 0)  # the judge's unreadable text is kept

    for table, key in (("candidates", "candidate_id"), ("judgments", "judgment_id"), ("pairs", "pair_id")):
        frame = pl.read_parquet(run_dir / f"{table}.parquet")
        ids = frame[key].drop_nulls()
        assert ids.n_unique() == ids.len(), f"duplicate {key} in {table}"
    assert failures.select("item_id", "stage").is_duplicated().sum() == 0
    for split in (run_dir / "dataset" / "dpo").glob("*.parquet"):
        rows = [json.dumps(r, sort_keys=True, default=str) for r in pl.read_parquet(split).to_dicts()]
        assert len(set(rows)) == len(rows), f"duplicate rows in {split.name}"


def test_truncated_judge_replies_are_never_read_as_verdicts(tmp_path: Path) -> None:
    """Every reply is cut in half (finish_reason "length"): generations are kept, judge replies are
    re-prompted once and then recorded as unscored with their raw text, never guessed."""
    with FakeLLMServer(faults=Fault(rate_truncated=1.0)) as server:
        run_dir = _build(build_config(server.base_url, tmp_path, prompts=4, rationales={"enabled": False}))
    candidates = pl.read_parquet(run_dir / "candidates.parquet")
    judgments = pl.read_parquet(run_dir / "judgments.parquet")
    failures = pl.read_parquet(run_dir / "failures.parquet")
    assert candidates.height == 8 and all(candidates["text"].str.len_chars() > 0)
    assert judgments.height > 0 and judgments["verdict"].null_count() == judgments.height
    assert all(len(json.loads(raw)) == 2 for raw in judgments["raw"])  # asked, then re-prompted once
    judge_failures = failures.filter(pl.col("stage") == "judge")
    assert sorted(judge_failures["item_id"]) == [f"q{i:03d}" for i in range(4)]
    assert all(judge_failures["raw"].str.len_chars() > 0)
    pairs = pl.read_parquet(run_dir / "pairs.parquet")
    assert pairs.height == 0 or pairs.filter(pl.col("source") == "judged").height == 0


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[str]], int]:
    """The tables of an uninterrupted build (same prompts and seed as the outage tests), and its calls."""
    tmp = tmp_path_factory.mktemp("baseline")
    with FakeLLMServer() as server:
        run_dir = _build(_outage_config(server.base_url, tmp))
        return tables(run_dir), server.stats.ok


def _outage_config(base_url: str, tmp: Path) -> dict[str, Any]:
    return build_config(
        base_url,
        tmp,
        prompts=12,
        shard_size=4,
        concurrency=2,
        gateway={"circuit_breaker_failures": 3, "max_retries": 1},
    )


def test_sustained_outage_stops_the_build_then_resume_finishes_it(
    tmp_path: Path, baseline: tuple[dict[str, list[str]], int]
) -> None:
    with FakeLLMServer(faults=Fault(outage=True)) as server:
        started = time.perf_counter()
        result = run_build(parse_config(_outage_config(server.base_url, tmp_path)))
        elapsed = time.perf_counter() - started
        calls_during_outage = server.stats.calls
        m = result.manifest
        # No call ever succeeded: the build achieved nothing and says so, naming the endpoint.
        assert m["status"] == "failed" and server.base_url in m["outcome"]["cause"]
        assert "CircuitOpenError" in m["stopped_reason"] and "circuit open" in m["stopped_reason"]
        # It stopped instead of spinning: 12 prompts x 2 answers x 2 attempts would be 48 calls.
        assert calls_during_outage < 20 and elapsed < 60

        server.set_outage(False)
        server.reset()
        resumed = run_build(resume_dir=result.run_dir)
        assert resumed.manifest["status"] == "complete"
        assert server.stats.ok == baseline[1]
    assert tables(result.run_dir) == baseline[0]


def test_outage_in_the_middle_of_a_build_is_finished_by_resume(
    tmp_path: Path, baseline: tuple[dict[str, list[str]], int]
) -> None:
    """The endpoint goes down after 20 answers: shards finished before are kept, shards that saw the
    outage (even one that finished with a failed call) are redone on resume, from the cache."""
    reply = OutageAfter(20)
    with FakeLLMServer(default=reply) as server:
        reply.server = server
        first = run_build(parse_config(_outage_config(server.base_url, tmp_path)))
        assert first.manifest["status"] == "stopped"
        assert "CircuitOpenError" in first.manifest["stopped_reason"]
        server.set_outage(False)
        resumed = run_build(resume_dir=first.run_dir)
        assert resumed.manifest["status"] == "complete"
    # Every call was answered once over both runs: what finished before the outage was not repeated.
    assert reply.answered == baseline[1]
    assert tables(first.run_dir) == baseline[0]
