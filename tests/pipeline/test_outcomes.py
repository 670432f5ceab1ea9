"""Truthful outcomes: a build that achieved nothing says `failed`, transient losses are salvaged,
a resume works on the run's own prompts, and one run folder takes one process at a time.

Every build here runs over real HTTP against the fake server; the CLI ones in a subprocess."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reliability import OutageAfter, build_config, manifest, run_cli, write_config, write_prompts

from factory._util.errors import UserError
from factory.config import parse_config
from factory.pipeline import run_build
from factory.pipeline.outcome import EXIT_CODES, BuildFacts, Outcome, decide_outcome, is_transient
from factory.run.lock import lock_run_folder
from factory.testing import FakeLLMServer, Fault

LOCAL = ("--engine", "local")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_endpoint_config(tmp: Path, base_url: str, **model: Any) -> dict[str, Any]:
    config = build_config(
        base_url,
        tmp,
        prompts=6,
        shard_size=3,
        concurrency=3,
        gateway={"max_retries": 1, "circuit_breaker_failures": 1000},
    )
    for role in config["models"].values():
        role.update(model)
    return config


# --- the outcome rules, on plain figures ------------------------------------------------------------


def _facts(**over: Any) -> BuildFacts:
    base: dict[str, Any] = {
        "usable_prompts": 10,
        "dataset_rows": 12,
        "model_calls": 40,
        "cache_hits": 0,
        "call_errors": 0,
        "failure_reasons": (),
        "stopped": None,
    }
    return BuildFacts(**{**base, **over})


def test_outcome_rules() -> None:
    assert decide_outcome(_facts()).status is Outcome.COMPLETE
    # Data outcomes (a tie, an unparseable verdict) do not make a build partial.
    assert (
        decide_outcome(_facts(failure_reasons=("no_pair: tie", "unscored: OutputParseError: x"))).status
        is Outcome.COMPLETE
    )
    partial = decide_outcome(_facts(failure_reasons=("RateLimitError: 429", "unscored: LLMTimeoutError: t")))
    assert partial.status is Outcome.PARTIAL and "2 prompts" in partial.cause
    assert (
        decide_outcome(
            _facts(stopped="BudgetExceededError: budget reached: max_calls=3", stop="budget")
        ).status
        is Outcome.STOPPED
    )
    # A budget stop before any answer is still "raise the cap", not "failed".
    assert (
        decide_outcome(
            _facts(
                model_calls=0,
                call_errors=0,
                dataset_rows=0,
                stopped="BudgetExceededError: max_calls=0",
                stop="budget",
            )
        ).status
        is Outcome.STOPPED
    )
    failed = decide_outcome(
        _facts(
            model_calls=0,
            call_errors=6,
            dataset_rows=0,
            endpoints=("http://h:1/v1",),
            failure_reasons=("AuthError: 401 bad key",),
            stopped="CircuitOpenError: circuit open",
            stop="circuit",
        )
    )
    assert failed.status is Outcome.FAILED and "http://h:1/v1" in failed.cause and "AuthError" in failed.cause
    nothing = decide_outcome(_facts(dataset_rows=0, failure_reasons=("no_pair: tie",) * 3))
    assert nothing.status is Outcome.FAILED and "no dataset rows" in nothing.cause
    assert len(set(EXIT_CODES.values())) == 4 and EXIT_CODES[Outcome.COMPLETE] == 0
    assert not set(EXIT_CODES.values()) & {1, 2, 130}  # crash, usage error, interrupt keep their codes


def test_the_stop_kind_decides_the_outcome_and_the_hint_not_the_message_text() -> None:
    # A message that names no budget still gets the "raise the cap" hint when a budget stopped it ...
    budget = decide_outcome(_facts(stopped="max_calls=3 reached", stop="budget"))
    assert budget.status is Outcome.STOPPED and budget.stop == "budget"
    assert "--max-calls" in budget.line("/r")
    # ... and an open circuit whose provider message mentions a "Budget" does not.
    circuit = decide_outcome(_facts(stopped="CircuitOpenError: 5 errors (Budget API down)", stop="circuit"))
    assert circuit.status is Outcome.STOPPED and "--max-calls" not in circuit.line("/r")
    # A message without a stop kind is not a stop: the build ran to the end.
    assert decide_outcome(_facts(stopped="BudgetExceededError: x")).status is Outcome.COMPLETE


def test_every_retryable_error_class_counts_as_transient() -> None:
    for reason in ("RateLimitError: 429", "ProviderError: 503", "unscored: LLMTimeoutError: slow"):
        assert is_transient(reason)
    for reason in ("AuthError: 401", "BadRequestError: 400", "OutputParseError: x", "empty_prompt", None):
        assert not is_transient(reason)


# --- builds that achieved nothing -------------------------------------------------------------------


def test_unreachable_endpoint_fails_the_cli_build_naming_it(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    config = write_config(tmp_path / "build.yaml", _dead_endpoint_config(tmp_path, base))
    done = run_cli("build", str(config), "--quiet", *LOCAL)
    assert done.returncode == EXIT_CODES[Outcome.FAILED], done.stderr
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("failed: every model call failed") and base in last, done.stderr
    assert "Traceback" not in done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    m = manifest(run_dir)
    assert m["status"] == "failed" and m["outcome"]["exit_code"] == EXIT_CODES[Outcome.FAILED]


def test_endpoint_refusing_every_call_fails_the_build(tmp_path: Path) -> None:
    with FakeLLMServer(faults=Fault(first_n_fail=10**6, fail_status=401)) as server:
        result = run_build(parse_config(_dead_endpoint_config(tmp_path, server.base_url)))
    m = result.manifest
    assert m["status"] == "failed", m
    assert "AuthError" in m["outcome"]["cause"] and server.base_url in m["outcome"]["cause"]


def test_endpoint_timing_out_on_every_call_fails_the_build(tmp_path: Path) -> None:
    with FakeLLMServer(faults=Fault(rate_timeout=1.0, timeout_s=3.0)) as server:
        result = run_build(parse_config(_dead_endpoint_config(tmp_path, server.base_url, timeout_s=0.2)))
    m = result.manifest
    assert m["status"] == "failed" and "LLMTimeoutError" in m["outcome"]["cause"], m["outcome"]
    assert m["counts"]["dataset"]["dpo_train"] + m["counts"]["dataset"]["dpo_test"] == 0


def test_max_tokens_stop_exits_as_stopped(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        spec = build_config(
            server.base_url, tmp_path, prompts=8, shard_size=1, concurrency=1, budget={"max_tokens": 400}
        )
        done = run_cli("build", str(write_config(tmp_path / "b.yaml", spec)), "--quiet", *LOCAL)
    assert done.returncode == EXIT_CODES[Outcome.STOPPED], done.stderr
    assert "stopped: BudgetExceededError" in done.stderr and "max_tokens=400" in done.stderr


def test_calibrate_against_a_dead_endpoint_fails(tmp_path: Path, shared_data: Path) -> None:
    base = f"http://127.0.0.1:{_free_port()}/v1"
    done = run_cli(
        "calibrate",
        "--human-set",
        "pandalm",
        "--limit",
        "4",
        "--judge-model",
        "openai/fake",
        "--api-base",
        base,
        "--out",
        str(tmp_path),
        "--quiet",
        "--bootstrap",
        "0",
    )
    assert done.returncode == EXIT_CODES[Outcome.FAILED], done.stderr
    assert "failed: every model call failed" in done.stderr and base in done.stderr
    assert "Traceback" not in done.stderr


def test_calibrate_refuses_an_unset_key_variable_before_calling(tmp_path: Path) -> None:
    done = run_cli(
        "calibrate",
        "--human-set",
        "pandalm",
        "--judge-model",
        "openai/fake",
        "--api-key-env",
        "FACTORY_TEST_UNSET_KEY",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 2 and "FACTORY_TEST_UNSET_KEY is not set" in done.stderr


# --- salvage ----------------------------------------------------------------------------------------


def test_a_burst_of_errors_is_salvaged_before_the_build_ends(tmp_path: Path) -> None:
    """The endpoint is down for the build's first second: the gateway's own retries give up, the
    salvage rounds after the last shard get every prompt through, and the build is complete."""
    with FakeLLMServer(faults=Fault(outage=True)) as server:
        threading.Timer(1.0, server.set_outage, args=(False,)).start()
        config = build_config(
            server.base_url,
            tmp_path,
            prompts=12,
            shard_size=4,
            concurrency=4,
            run={"salvage_rounds": 3, "salvage_backoff_s": 0.5},
            gateway={"max_retries": 1, "circuit_breaker_failures": 10**6},
        )
        started = time.perf_counter()
        result = run_build(parse_config(config))
        assert time.perf_counter() - started < 60
        assert server.stats.faults.get("outage", 0) > 0  # the burst really happened
    m = result.manifest
    assert m["status"] == "complete", m["outcome"]
    failures = pl.read_parquet(result.run_dir / "failures.parquet")
    assert not any(is_transient(r) for r in failures["reason"].to_list())
    pairs = pl.read_parquet(result.run_dir / "pairs.parquet")
    assert set(pairs["prompt_id"]) | set(failures["item_id"]) >= {f"q{i:03d}" for i in range(12)}


def test_without_salvage_rounds_transient_losses_make_the_build_partial(tmp_path: Path) -> None:
    """The endpoint goes down for good after the first answers: with no salvage round and no retry,
    the prompts that hit the outage stay failed for a transient reason, and the build says partial."""
    reply = OutageAfter(8)
    with FakeLLMServer(default=reply) as server:
        reply.server = server
        config = build_config(
            server.base_url,
            tmp_path,
            prompts=8,
            shard_size=2,
            concurrency=1,
            run={"salvage_rounds": 0},
            gateway={"max_retries": 0, "circuit_breaker_failures": 10**6},
        )
        result = run_build(parse_config(config))
    assert result.manifest["status"] == "partial", result.manifest["outcome"]
    assert "transient" in result.manifest["outcome"]["cause"]


# --- the run folder owns its inputs -----------------------------------------------------------------


@pytest.mark.parametrize("engine", ["local", "prefect"])
def test_resume_reads_the_runs_own_prompts_not_the_edited_source(tmp_path: Path, engine: str) -> None:
    with FakeLLMServer() as server:
        spec = build_config(
            server.base_url, tmp_path, prompts=6, shard_size=3, concurrency=3, budget={"max_calls": 8}
        )
        config = write_config(tmp_path / "build.yaml", spec)
        first = run_cli("build", str(config), "--quiet", "--engine", engine, timeout=240)
        assert first.returncode == EXIT_CODES[Outcome.STOPPED], first.stderr
        run_dir = Path(first.stdout.strip().splitlines()[-1])
        recorded = pl.read_parquet(run_dir / "prompts.parquet")
        # The user edits the prompt file: new prompts, one old prompt rewritten, one deleted.
        source = Path(spec["prompts"]["path"])
        write_prompts(source, 9, prefix="z")
        done = run_cli(
            "build",
            "--resume",
            str(run_dir),
            "--max-calls",
            "1000",
            "--quiet",
            "--engine",
            engine,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr
    assert pl.read_parquet(run_dir / "prompts.parquet").equals(recorded)
    candidates = pl.read_parquet(run_dir / "candidates.parquet")
    assert candidates["candidate_id"].is_duplicated().sum() == 0
    assert set(candidates["prompt_id"]) == {f"q{i:03d}" for i in range(6)}
    assert manifest(run_dir)["counts"]["prompts"] == 6


def test_resume_survives_a_deleted_prompt_source(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        spec = build_config(
            server.base_url, tmp_path, prompts=4, shard_size=2, concurrency=2, budget={"max_calls": 4}
        )
        first = run_build(parse_config(spec))
        assert first.manifest["status"] == "stopped"
        Path(spec["prompts"]["path"]).unlink()
        done = run_cli("build", "--resume", str(first.run_dir), "--max-calls", "1000", "--quiet", *LOCAL)
    assert done.returncode == 0, done.stderr


# --- one process per run folder ---------------------------------------------------------------------


def test_a_second_process_on_a_run_folder_exits_2_naming_the_holder(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        spec = build_config(
            server.base_url, tmp_path, prompts=4, shard_size=2, concurrency=2, budget={"max_calls": 4}
        )
        first = run_build(parse_config(spec))
        calls_before = server.stats.calls
        with lock_run_folder(first.run_dir):  # this test process plays the build in progress
            second = run_cli(
                "build", "--resume", str(first.run_dir), "--max-calls", "1000", "--quiet", *LOCAL
            )
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().startswith("error: run folder") and "in use by pid" in second.stderr
        assert server.stats.calls == calls_before  # nothing was paid for
        # The config was not rewritten by the refused process either.
        assert "max_calls: 4" in (first.run_dir / "config.yaml").read_text()
        # Once the holder is gone, the resume goes ahead.
        again = run_cli("build", "--resume", str(first.run_dir), "--max-calls", "1000", "--quiet", *LOCAL)
        assert again.returncode == 0, again.stderr


def test_two_resumes_at_once_pay_for_nothing_twice(tmp_path: Path) -> None:
    import subprocess
    import sys

    from _reliability import REPO, cli_env

    with FakeLLMServer(latency_s=0.05) as server:
        spec = build_config(
            server.base_url, tmp_path, prompts=8, shard_size=2, concurrency=2, budget={"max_calls": 2}
        )
        first = run_build(parse_config(spec))
        args = [
            sys.executable,
            "-m",
            "factory",
            "build",
            "--resume",
            str(first.run_dir),
            "--max-calls",
            "1000",
            "--quiet",
            *LOCAL,
        ]
        procs = [
            subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO
            )
            for _ in range(2)
        ]
        codes = sorted(p.wait(timeout=240) for p in procs)
        stderr = "".join(p.stderr.read() for p in procs if p.stderr)
        requests = server.stats.calls
        server.reset()
        # The same build from scratch, for the number of requests it needs.
        (tmp_path / "fresh").mkdir()
        fresh = run_build(
            parse_config(
                build_config(server.base_url, tmp_path / "fresh", prompts=8, shard_size=2, concurrency=2)
            )
        )
        needed = server.stats.calls
    assert fresh.manifest["status"] == "complete"
    # Either the second process found the folder locked (exit 2), or it started after the first had
    # finished and found everything done; never two builds paying for the same calls.
    assert codes[0] == 0 and codes[1] in (0, 2), stderr
    assert requests <= needed


def test_the_lock_is_released_by_a_build_that_raises(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        spec = build_config(
            server.base_url, tmp_path, prompts=2, shard_size=2, concurrency=2, budget={"max_calls": 1}
        )
        first = run_build(parse_config(spec))
    (first.run_dir / "config.yaml").write_text("run: [not, a, mapping\n")
    with pytest.raises(UserError):
        run_build(resume_dir=first.run_dir)
    with lock_run_folder(first.run_dir):  # free again
        pass


# --- the fault run ----------------------------------------------------------------------------------

FAULT_RUN = Fault(
    rate_429=0.2,
    retry_after_s=0.01,
    rate_500=0.05,
    rate_timeout=0.05,
    timeout_s=2.0,
    rate_malformed=0.05,
    rate_empty=0.05,
)


def test_fault_run_completes_with_every_prompt_accounted_and_no_empty_row(tmp_path: Path) -> None:
    """20% 429, 5% 5xx, 5% timeouts, 10% malformed or empty replies over 40 prompts: the build's own
    retries and salvage rounds leave no transient loss, and no row of the dataset is empty."""
    with FakeLLMServer(faults=FAULT_RUN, seed=5) as server:
        config = build_config(server.base_url, tmp_path, prompts=40, shard_size=8, concurrency=8)
        for role in config["models"].values():
            role["timeout_s"] = 0.3
        result = run_build(parse_config(config))
        stats = server.stats
    m = result.manifest
    assert m["status"] == "complete", m["outcome"]
    assert stats.faults.get("empty", 0) > 0 and stats.faults.get("429", 0) > 0  # the faults happened
    run_dir = result.run_dir
    failures = pl.read_parquet(run_dir / "failures.parquet")
    assert not any(is_transient(r) for r in failures["reason"].to_list())
    pairs = pl.read_parquet(run_dir / "pairs.parquet")
    judged = pairs.filter(pl.col("source") == "judged")
    pair_prompt = dict(zip(pairs["pair_id"], pairs["prompt_id"]))
    failed = {pair_prompt.get(i, i) for i in failures["item_id"].to_list()}
    assert set(judged["prompt_id"]) | failed >= {f"q{i:03d}" for i in range(40)}
    candidates = pl.read_parquet(run_dir / "candidates.parquet")
    assert candidates["candidate_id"].is_duplicated().sum() == 0
    assert pairs["pair_id"].is_duplicated().sum() == 0
    assert (candidates["text"].str.strip_chars() != "").all()
    for split in ("train", "test"):
        path = run_dir / "dataset" / "dpo" / f"{split}-00000-of-00001.parquet"
        if path.is_file():
            for row in pl.read_parquet(path).iter_rows(named=True):
                for column in ("chosen", "rejected"):
                    assert all(turn["content"].strip() for turn in row[column]), row
    rationale = judged["rationale"].drop_nulls()
    assert (rationale.str.strip_chars() != "").all()
    print(
        f"fault run: {len(set(judged['prompt_id']))} of 40 prompts in judged pairs, {failures.height} failures "
        f"({', '.join(sorted({r.split(':')[0] for r in failures['reason'].to_list()}))}), "
        f"{m['llm']['calls']} calls, {m['llm']['retries']} retries, {m['llm']['errors']} errors, faults {stats.faults}"
    )
