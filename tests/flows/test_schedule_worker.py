"""A scheduled build run by a real Prefect process worker keeps its output, and the next run builds only
new prompts. The worker runs each flow run in a temporary folder that it deletes afterwards, so a
deployment that stored `run.output_dir: outputs` as written lost every run."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
import polars as pl
import yaml
from conftest_prefect import run_cli, write_build_config

from factory.run.incremental import read_versions
from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]

PREFECT_CLI = Path(sys.executable).with_name("prefect")
REPO = Path(__file__).resolve().parents[2]
POOL = "factory-test-pool"
RUN_TIMEOUT_S = 300  # one flow run on a loaded machine: worker poll, process start, imports, build


def _env(api_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PYTHONPATH": str(REPO),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "0",
    }


@pytest.fixture()
def worker(prefect_api: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`prefect worker start --pool POOL --type process` in its own process group, stopped at the end."""
    log = (tmp_path / "worker.log").open("wb")
    cwd = tmp_path / "worker-cwd"
    cwd.mkdir()
    process = subprocess.Popen(
        [str(PREFECT_CLI), "worker", "start", "--pool", POOL, "--type", "process"],
        cwd=cwd,
        env=_env(prefect_api),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        log.close()


def _run_deployment(full_name: str, api_url: str, tmp_path: Path) -> str:
    """`prefect deployment run NAME --watch`: waits (bounded) for the flow run's final state."""
    done = subprocess.run(
        [str(PREFECT_CLI), "deployment", "run", full_name, "--watch", "--watch-timeout", str(RUN_TIMEOUT_S)],
        env=_env(api_url),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S + 60,
        check=False,
    )
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}\nworker:\n{worker_log}"
    assert "Completed" in done.stdout, done.stdout[-2000:]
    return done.stdout


@pytest.mark.prefect
def test_a_worker_run_keeps_its_run_folder_and_the_next_run_builds_only_new_prompts(
    prefect_api: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    worker: subprocess.Popen[bytes],
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    first = ["Name three rivers in Africa.", "What is a prime number?", "Write a haiku about rain."]
    with FakeLLMServer() as server:
        config = write_build_config(project, server.base_url, name="worker-nightly", prompts=first)
        spec = yaml.safe_load(config.read_text())
        spec["run"]["output_dir"] = "outputs"  # relative, as users write it
        config.write_text(yaml.safe_dump(spec, sort_keys=False))

        code, _, err = run_cli(["schedule", str(config), "--cron", "0 3 * * *", "--work-pool", POOL], capsys)
        assert code == 0, err
        home = project / "outputs" / "worker-nightly"
        assert (
            f"note: output folder 'outputs' is relative: the deployment stores {project / 'outputs'}" in err
        )
        assert f"versions go to {project / 'outputs'}/worker-nightly/" in err

        _run_deployment("factory-build/worker-nightly", prefect_api, tmp_path)
        versions = read_versions(home)
        assert [(v["version"], v["new_prompts"], v["status"]) for v in versions] == [(1, 3, "complete")]
        v1 = home / versions[0]["path"]
        assert (v1 / "manifest.json").is_file() and (v1 / "dataset" / "README.md").is_file()
        assert pl.read_parquet(v1 / "pairs.parquet").height > 0

        prompt_file = Path(spec["prompts"]["path"])
        with prompt_file.open("a") as f:
            for i, text in enumerate(["How do vaccines work?", "Define entropy."]):
                f.write(json.dumps({"id": f"new-{i}", "prompt": text}) + "\n")
        _run_deployment("factory-build/worker-nightly", prefect_api, tmp_path)

    versions = read_versions(home)
    assert [(v["version"], v["new_prompts"], v["skipped_prompts"]) for v in versions] == [
        (1, 3, 0),
        (2, 2, 3),
    ]
    v2 = home / versions[1]["path"]
    assert sorted(pl.read_parquet(v2 / "prompts.parquet")["prompt_id"].to_list()) == ["new-0", "new-1"]
    # Nothing was written where the worker was started, nor in the temporary folder it ran in.
    assert not any((tmp_path / "worker-cwd").iterdir())
