"""Scale-out: the build flow on a local Dask cluster of 2 worker processes builds the same dataset."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")
import json
import os
import socket
from pathlib import Path

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
from conftest_prefect import comparable_rows, run_cli, write_build_config

from factory._util.errors import UserError
from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]


@pytest.mark.prefect
def test_a_local_dask_cluster_of_two_processes_builds_the_same_dataset(
    prefect_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from factory.config import load_config
    from flows import run_build_flow

    with FakeLLMServer() as server:
        config = write_build_config(tmp_path, server.base_url, name="scale-out", n_prompts=8, shard_size=2)
        code, out, err = run_cli(["build", str(config), "--engine", "local", "--quiet"], capsys)
        assert code == 0, err
        local = Path(out.strip().splitlines()[-1])
        # The function `factory build --runner dask --workers 2` calls, for its report of the workers.
        result = run_build_flow(load_config(config), runner="dask", workers=2)
    dasked = Path(result["run_dir"])

    # Four shards ran in two worker processes, neither of them this one.
    assert len(result["workers"]) == 2
    assert f"{socket.gethostname()}:{os.getpid()}" not in result["workers"]
    for table in ("candidates", "judgments", "pairs", "failures"):
        assert comparable_rows(local / f"{table}.parquet") == comparable_rows(dasked / f"{table}.parquet"), (
            table
        )
    files = sorted(p.relative_to(local) for p in (local / "dataset").rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(dasked) for p in (dasked / "dataset").rglob("*.parquet"))
    for rel in files:
        assert comparable_rows(local / rel) == comparable_rows(dasked / rel), rel
    # Calls made in the workers are counted in the manifest as if one process had made them.
    m_local = json.loads((local / "manifest.json").read_text())
    m_dask = json.loads((dasked / "manifest.json").read_text())
    assert m_dask["counts"] == m_local["counts"]
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        assert m_dask["llm"][key] == m_local["llm"][key], key
    assert m_dask["llm"]["by_role"].keys() == m_local["llm"]["by_role"].keys()


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("threads", {"address": "tcp://10.0.0.5:8786"}, "--address needs --runner dask"),
        ("ray", {}, "unknown runner 'ray' (use threads or dask)"),
        (
            "dask",
            {"address": "10.0.0.5:8786"},
            "--address must be a Dask scheduler address like tcp://HOST:8786",
        ),
        (
            "dask",
            {"address": "tcp://10.0.0.5:8786", "workers": 3},
            "--workers applies to a local Dask cluster",
        ),
        ("threads", {"workers": 0}, "--workers must be at least 1, got 0"),
    ],
)
def test_bad_runner_options_are_user_errors(kind: str, options: dict[str, object], message: str) -> None:
    from flows.runners import make_task_runner

    with pytest.raises(UserError) as caught:
        make_task_runner(kind, **options)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_runner_options_reach_the_task_runner() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import make_task_runner

    threads = make_task_runner("threads", workers=3)
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    remote = make_task_runner("dask", address="tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = make_task_runner("dask", workers=4)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 4


def test_engine_local_refuses_runner_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="local-only")
    code, _, err = run_cli(["build", str(config), "--engine", "local", "--runner", "dask"], capsys)
    assert code == 2 and err == "error: --runner, --address and --workers need --engine prefect\n"
    assert not (tmp_path / "outputs").exists()


def test_worker_usage_adds_up_totals_and_breakdowns() -> None:
    from factory.pipeline.finalize.manifest import merge_usage

    base = {"calls": 2, "cache_hits": 1, "cost_usd": 0.5, "by_role": {"judge": {"calls": 2, "cost_usd": 0.5}}}
    worker = {
        "calls": 3,
        "cache_hits": 0,
        "cost_usd": 0.25,
        "by_role": {"judge": {"calls": 1, "cost_usd": 0.25}, "generator": {"calls": 2}},
    }
    merged = merge_usage(base, [worker, worker])
    assert merged["calls"] == 8 and merged["cache_hits"] == 1 and merged["cost_usd"] == 1.0
    assert merged["by_role"] == {"judge": {"calls": 4, "cost_usd": 1.0}, "generator": {"calls": 4}}
