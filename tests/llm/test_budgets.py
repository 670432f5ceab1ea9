"""Budgets (calls, tokens, cost) stop a build cleanly and count across resumes; `--estimate` predicts
a build's calls and cost without calling any model."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from _reliability import build_config, manifest, run_cli, tables, write_config

from factory.config import parse_config
from factory.pipeline import run_build
from factory.pipeline.estimate import estimate_build
from factory.run.recorded_inputs import load_build_prompts
from factory.testing import FakeLLMServer

LOCAL = ["--engine", "local"]


def _priced(base_url: str, **extra: Any) -> dict[str, Any]:
    # A model litellm has a price for, served by the fake server: the reply names the same model,
    # so finished calls are priced as that model would be.
    return {"model": "openai/gpt-4o-mini", "api_base": base_url, "max_tokens": 64, **extra}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[str]], int]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    with FakeLLMServer() as server:
        run_dir = run_build(parse_config(_config(server.base_url, tmp))).run_dir
        return tables(run_dir), server.stats.ok


def _config(base_url: str, tmp: Path, **budget: Any) -> dict[str, Any]:
    return build_config(base_url, tmp, prompts=8, shard_size=1, concurrency=1, budget=budget)


def test_max_calls_stops_the_cli_build_which_resumes_with_a_raised_cap(
    tmp_path: Path, uninterrupted: tuple[dict[str, list[str]], int]
) -> None:
    baseline, calls_needed = uninterrupted
    with FakeLLMServer() as server:
        config = write_config(tmp_path / "build.yaml", _config(server.base_url, tmp_path, max_calls=10))
        stopped = run_cli("build", str(config), "--quiet", *LOCAL)
        assert stopped.returncode == 3, stopped.stderr
        assert "stopped: BudgetExceededError: budget reached: max_calls=10" in stopped.stderr
        assert "--max-calls" in stopped.stderr and "Traceback" not in stopped.stderr
        assert server.stats.ok == 10  # exactly the cap: calls in flight hold their place in the budget
        run_dir = Path(stopped.stdout.strip().splitlines()[-1])
        m = manifest(run_dir)
        assert m["status"] == "stopped" and "max_calls=10" in m["stopped_reason"]
        assert m["stop"] == "budget" and m["outcome"]["stop"] == "budget"  # typed, not read from the text
        # What finished is kept: each kept pair comes from a shard whose every stage is done.
        pairs = pl.read_parquet(run_dir / "pairs.parquet")
        assert pairs.height > 0
        done = {int(p.name[6:11]) for p in (run_dir / "stages" / "pairs").glob("shard-?????.parquet")}
        assert {int(pid[1:]) for pid in pairs["prompt_id"]} <= done  # one prompt per shard: id = shard

        # The cap counts across resumes: resuming without raising it stops at once, with no new call.
        again = run_cli("build", "--resume", str(run_dir), "--quiet", *LOCAL)
        assert again.returncode == 3 and server.stats.ok == 10

        finished = run_cli("build", "--resume", str(run_dir), "--max-calls", "1000", "--quiet", *LOCAL)
        assert finished.returncode == 0, finished.stderr
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["budget"]["max_calls"] == 1000
        assert manifest(run_dir)["status"] == "complete"
        assert server.stats.ok == calls_needed  # nothing paid twice
    assert tables(run_dir) == baseline


def test_max_tokens_stops_the_build_near_the_cap(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        result = run_build(parse_config(_config(server.base_url, tmp_path, max_tokens=600)))
        spent = server.stats.prompt_tokens + server.stats.completion_tokens
    m = result.manifest
    assert m["status"] == "stopped" and "max_tokens=600" in m["stopped_reason"]
    used = m["llm"]["prompt_tokens"] + m["llm"]["completion_tokens"]
    # Calls in flight hold their worst case, so the cap is never overshot; the build stops at the
    # first call whose worst case no longer fits next to what was spent.
    assert used == spent and used <= 600 < used + _next_call_need(m["stopped_reason"])
    with sqlite3.connect(result.run_dir / "cache.sqlite") as conn:
        tokens = [
            sum(json.loads(r[0])[k] for k in ("prompt_tokens", "completion_tokens"))
            for r in conn.execute("SELECT record FROM calls")
        ]
    assert sum(tokens) == used  # every call paid for is in the cache, and nothing else is


def _next_call_need(stopped_reason: str) -> float:
    """The worst case of the refused call, as the stop reason gives it."""
    found = re.search(r"the next call may need ([0-9.e-]+)\)", stopped_reason)
    assert found, stopped_reason
    return float(found.group(1))


def test_max_cost_stops_the_build(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        config = _config(server.base_url, tmp_path, max_cost_usd=0.0002)
        config["models"] = {role: _priced(server.base_url) for role in config["models"]}
        result = run_build(parse_config(config))
    m = result.manifest
    assert m["status"] == "stopped" and "max_cost_usd=0.0002" in m["stopped_reason"]
    assert 0 < m["llm"]["cost_usd"] <= 0.0002 < m["llm"]["cost_usd"] + _next_call_need(m["stopped_reason"])


def test_estimate_prints_calls_and_cost_and_calls_nothing(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        config = build_config(server.base_url, tmp_path, prompts=6)
        config["models"]["judge"] = _priced(server.base_url, temperature=0.0)
        config["budget"] = {"max_calls": 20}
        path = write_config(tmp_path / "build.yaml", config)
        out = run_cli("build", str(path), "--estimate")
        assert server.stats.calls == 0
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "outputs").exists()  # no run folder either
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    # 6 prompts: 2 answers each; one comparison each (combined, fixed order: 1 call, 2 with a
    # re-prompt); one pair each, one rationale call.
    assert lines["generate"][3:5] == ["12", "12"]
    assert lines["judge"][3:5] == ["6", "12"]
    assert lines["rationales"][3:5] == ["6", "6"]
    assert lines["total"][1:3] == ["24", "30"]
    assert lines["judge"][-1].startswith("$") and float(lines["judge"][-1][1:]) > 0  # gpt-4o-mini is priced
    assert "price unknown" in out.stdout and "openai/fake" in out.stdout
    assert "budget.max_calls=20 is below the upper bound" in out.stdout


def test_estimate_matches_the_workflows_a_build_runs(tmp_path: Path) -> None:
    """Feedback loop + a two-juror jury judging both orders: the estimate's generation calls are
    what the build makes, and its upper bounds hold, cost included."""
    with FakeLLMServer() as server:
        config = build_config(
            server.base_url,
            tmp_path,
            prompts=4,
            generation={
                "workflows": [{"kind": "feedback_loop", "n_responses": 3, "reviewers": ["reviewer"]}]
            },
            judging={"setting": {"kind": "jury", "models": ["judge", "judge2"], "order": "both"}},
        )
        config["models"] = {
            role: _priced(server.base_url, seed=i)
            for i, role in enumerate(("generator", "reviewer", "judge", "judge2", "rationale_writer"))
        }
        spec = parse_config(config)
        prompts, rejected = load_build_prompts(spec)
        estimate = estimate_build(spec, prompts, len(rejected))
        result = run_build(spec)
    by_stage: dict[str, tuple[int, int]] = {}
    for line in estimate.lines:
        calls, most = by_stage.get(line.stage, (0, 0))
        by_stage[line.stage] = (calls + line.calls, most + line.max_calls)
    # Per prompt: 3 answers + 2 reviews; 2 knockout comparisons x 2 jurors x 2 orders.
    assert by_stage["generate"] == (4 * 5, 4 * 5)
    assert by_stage["judge"] == (4 * 8, 4 * 16)
    usage = result.manifest["llm"]
    by_role = usage["by_role"]
    assert by_role["generator"]["calls"] + by_role["reviewer"]["calls"] == by_stage["generate"][0]
    assert by_role["judge"]["calls"] + by_role["judge2"]["calls"] <= by_stage["judge"][1]
    assert usage["calls"] <= estimate.max_calls
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= estimate.total_tokens
    assert 0 < usage["cost_usd"] <= estimate.cost_usd


def test_estimate_counts_the_gate_judging_the_human_set(tmp_path: Path, shared_data: Path) -> None:
    """With the gate on, the judge also judges `human_set_limit` human-set items: the estimate books
    them under `gate`, and the build's gate makes that many calls."""
    with FakeLLMServer() as server:
        config = build_config(
            server.base_url,
            tmp_path,
            prompts=3,
            gate={"enabled": True, "human_set": "pandalm", "human_set_limit": 5, "min_kappa": 0.0},
        )
        spec = parse_config(config)
        prompts, rejected = load_build_prompts(spec)
        estimate = estimate_build(spec, prompts, len(rejected))
        result = run_build(spec)
    gate_lines = [line for line in estimate.lines if line.stage == "gate"]
    assert [(line.role, line.calls, line.max_calls) for line in gate_lines] == [("judge", 5, 10)]
    judge_calls = result.manifest["llm"]["by_role"]["judge"]["calls"]
    build_judge = sum(line.calls for line in estimate.lines if line.stage == "judge")
    assert judge_calls == build_judge + 5  # no re-prompts: the fake server's replies all parse
    assert gate_lines[0].prompt_tokens > 0
