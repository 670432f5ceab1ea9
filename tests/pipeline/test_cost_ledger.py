"""The cost ledger: the manifest's `cost` covers the whole run. A build SIGKILLed twice and resumed has
the ledger of the uninterrupted build (no call counted twice, none lost), a build on 2 Dask workers
merges both workers' rows, dollars per accepted pair and the plan-time estimate are reported."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
import polars as pl
from _reliability import REPO, build_config, cli_env, manifest, run_cli, tables, write_config

from factory.config import load_config, parse_config
from factory.llm.cost_ledger import CostLedger, read_ledger
from factory.llm.price_map import token_cost
from factory.pipeline import run_build
from factory.pipeline.cost_report import summarize
from factory.pipeline.estimate import estimate_build
from factory.run.folder import RunFolder
from factory.run.recorded_inputs import recorded_prompts
from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]

PRICED = "openai/gpt-4o-mini"
# How a run went, not what it paid: these differ between an uninterrupted build and a resumed one.
_PER_INVOCATION = ("replays", "attempts", "processes", "scope")


def _config(base_url: str, folder: Path, prompts: int = 12) -> dict[str, Any]:
    config = build_config(
        base_url,
        folder,
        prompts=prompts,
        shard_size=4,
        concurrency=2,
        generation={"workflows": [{"kind": "single", "samples": 2}]},
    )
    for spec in config["models"].values():
        spec["model"] = PRICED
    return config


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _paid_figures(cost: dict[str, Any]) -> dict[str, Any]:
    """The cost section without its per-invocation figures, flattened (floats compared approximately:
    the ledger adds the same dollars in another order after a resume)."""
    return _flat({k: v for k, v in cost.items() if k not in _PER_INVOCATION})


def _assert_same_cost(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    a, e = _paid_figures(actual), _paid_figures(expected)
    assert a.keys() == e.keys()
    for key, value in e.items():
        if isinstance(value, float):
            assert a[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert a[key] == value, key


def _run_dir(outputs: Path) -> Path | None:
    runs = [p for p in outputs.glob("*") if (p / "config.yaml").is_file()] if outputs.is_dir() else []
    return runs[0] if runs else None


def _kill_after(args: list[str], server: FakeLLMServer, more_calls: int) -> bool:
    """Start `factory ARGS` and SIGKILL it once the server has answered `more_calls` more requests;
    True when the kill landed (the build was still running)."""
    target = server.stats.calls + more_calls
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
        cwd=REPO,
    )
    while proc.poll() is None and server.stats.calls < target:
        time.sleep(0.005)
    landed = proc.poll() is None
    if landed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(0.1)  # the server answers what was in flight, as it would anyway
    return landed


def _cache_keys(run_dir: Path) -> list[str]:
    with sqlite3.connect(run_dir / "cache.sqlite") as conn:
        return [r[0] for r in conn.execute("SELECT key FROM calls")]


def test_a_build_killed_twice_and_resumed_has_the_ledger_of_the_uninterrupted_build(tmp_path: Path) -> None:
    with FakeLLMServer(latency_s=0.03) as server:
        (tmp_path / "base").mkdir()
        baseline = run_build(parse_config(_config(server.base_url, tmp_path / "base"))).run_dir
        calls_needed = server.stats.calls

        work = tmp_path / "crash"
        work.mkdir()
        config = write_config(work / "build.yaml", _config(server.base_url, work))
        server.reset()
        common = ["--engine", "local", "--quiet"]
        assert _kill_after(["build", str(config), *common], server, calls_needed // 4)
        run_dir = _run_dir(work / "outputs")
        assert run_dir is not None
        assert _kill_after(["build", "--resume", str(run_dir), *common], server, calls_needed // 4)
        done = run_cli("build", "--resume", str(run_dir), *common)
        assert done.returncode == 0, done.stderr[-2000:]
        sent = server.stats.calls

    m, base = manifest(run_dir), manifest(baseline)
    assert tables(run_dir) == tables(baseline)
    _assert_same_cost(m["cost"], base["cost"])
    assert m["cost"]["paid"]["calls"] == calls_needed and m["cost"]["paid"]["repeated"] == 0
    assert m["cost"]["paid"]["cost_usd"] > 0 and m["cost"]["attempts"] == 3
    # The manifest's `llm` is the last invocation's alone; `cost` is the run's.
    assert m["llm"]["calls"] < m["cost"]["paid"]["calls"]
    rows = read_ledger([run_dir / "cache.sqlite"])
    last = rows[-1].attempt
    assert sum(e.kind == "replay" and e.attempt == last for e in rows) == m["llm"]["cache_hits"]
    # Killed mid-shard, a shard's finished calls are answered again by the run's cache: free, and counted
    # as replays, never as paid.
    assert m["cost"]["replays"] == sum(e.kind == "replay" for e in rows) > 0
    # Each cached call has exactly one paid ledger row, and nothing else is paid for (calls cut off in
    # flight by a kill reached the server, `sent` >= calls_needed, but were never received: not paid).
    paid = [e.key for e in rows if e.kind == "paid"]
    assert sorted(paid) == sorted(_cache_keys(run_dir)) and len(set(paid)) == len(paid)
    assert sent >= calls_needed
    print(
        f"\nuninterrupted {calls_needed} calls; killed twice and resumed: server answered {sent}, "
        f"ledger paid {m['cost']['paid']['calls']}, ${m['cost']['paid']['cost_usd']:.6f}"
    )


def test_dollars_per_accepted_pair_and_the_plan_time_estimate(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        config = _config(server.base_url, tmp_path, prompts=6)
        run_dir = run_build(parse_config(config)).run_dir
    cost = manifest(run_dir)["cost"]
    pairs = pl.read_parquet(run_dir / "pairs.parquet")
    judged = pairs.filter(pl.col("source") == "judged").height
    assert 0 < judged < pairs.height  # MAPL pairs are in the table too, and are not counted
    assert cost["accepted_pairs"] == judged
    assert cost["usd_per_accepted_pair"] == pytest.approx(cost["paid"]["cost_usd"] / judged, rel=1e-6)
    # The estimate saved at plan time is `--estimate`'s for the run's config and prompts.
    prompts, rejected = recorded_prompts(RunFolder(run_dir)) or ([], [])
    expected = estimate_build(load_config(run_dir / "config.yaml"), prompts, len(rejected), price=token_cost)
    assert cost["estimate"]["calls"] == expected.calls and cost["estimate"]["max_calls"] == expected.max_calls
    assert cost["estimate"]["max_cost_usd"] == pytest.approx(expected.cost_usd)
    by_line: dict[str, int] = {}
    for line in expected.lines:
        by_line[line.stage] = by_line.get(line.stage, 0) + line.calls
    for stage, calls in by_line.items():
        assert cost["by_stage"][stage]["estimated_calls"] == calls, stage
    # Every stage's actual calls are at most its estimated maximum, and the dollars at most the bound.
    for stage, figures in cost["by_stage"].items():
        assert figures["calls"] <= figures["estimated_max_calls"], stage
    assert 0 < cost["paid"]["cost_usd"] <= cost["estimate"]["max_cost_usd"]
    assert cost["vs_estimate"]["requests"] == cost["paid"]["calls"]
    assert sum(f["calls"] for f in cost["by_workflow"].values()) == cost["by_stage"]["generate"]["calls"]
    # The CLI's summary line reads the same figures.
    from factory.pipeline.cost_report import cost_line

    line = cost_line(cost)
    assert f"${cost['usd_per_accepted_pair']:.6f} per accepted pair ({judged})" in line


def test_a_batch_priced_call_is_counted_as_one() -> None:
    ledger = CostLedger(attempt="a1", classify=lambda tag: ("judge", None))
    record = {"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.5}
    rows = [
        ledger.entry("paid", key="k1", role="judge", model="m", tag="t", record=record),
        ledger.entry("paid", key="k2", role="judge", model="m", tag="t", record={**record, "batch": True}),
        ledger.entry("saved", key="k3", role="judge", model="m", tag="t", record=record),
        ledger.entry("saved", key="k3", role="judge", model="m", tag="t", record=record),
    ]
    cost = summarize(rows, accepted=2)
    assert cost["paid"] == {
        "calls": 2,
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "cost_usd": 1.0,
        "batch_calls": 1,
        "repeated": 0,
    }
    assert cost["saved"] == {"calls": 1, "cost_usd": 0.5} and cost["replays"] == 1
    assert cost["usd_per_accepted_pair"] == 0.5 and cost["usd_per_accepted_pair_at_full_price"] == 0.75


@pytest.mark.prefect
def test_a_build_on_two_dask_workers_merges_both_workers_ledgers(prefect_api: str, tmp_path: Path) -> None:
    from flows import run_build_flow

    with FakeLLMServer() as server:
        (tmp_path / "local").mkdir()
        local = run_build(parse_config(_config(server.base_url, tmp_path / "local", prompts=8))).run_dir
        server.reset()
        (tmp_path / "dask").mkdir()
        config = parse_config(_config(server.base_url, tmp_path / "dask", prompts=8))
        result = run_build_flow(config, runner="dask", workers=2)
        answered = server.stats.calls
    dasked = Path(result["run_dir"])
    assert len(result["workers"]) == 2
    cost = manifest(dasked)["cost"]
    rows = read_ledger(sorted(dasked.glob("cache*.sqlite")))
    paying = {e.process for e in rows if e.kind == "paid"}
    # Both workers paid for calls, and the ledger holds each call the server answered exactly once.
    assert paying == set(result["workers"])
    assert cost["paid"]["calls"] == answered == manifest(local)["cost"]["paid"]["calls"]
    _assert_same_cost(cost, manifest(local)["cost"])
    print(
        f"\ndask: {json.dumps({p: sum(e.process == p for e in rows) for p in paying})} ledger rows per worker"
    )
