"""`factory schedule`: a cron deployment Prefect reports back; scheduled builds take only new prompts."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")
import json
import os
import subprocess
import sys
from pathlib import Path

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
import polars as pl
from conftest_prefect import run_cli, write_build_config

from factory.run.incremental import read_versions
from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]

PREFECT_CLI = Path(sys.executable).with_name("prefect")


def _deployment(full_name: str):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(full_name)


def _prefect_cli(args: list[str], api_url: str) -> str:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    done = subprocess.run(
        [str(PREFECT_CLI), *args], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.prefect
def test_schedule_registers_a_cron_deployment_that_prefect_lists(
    prefect_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="nightly")
    code, out, err = run_cli(
        ["schedule", str(config), "--cron", "0 3 * * *", "--work-pool", "builds"], capsys
    )
    assert code == 0, err
    assert out.strip() == "factory-build/nightly"
    assert "prefect worker start --pool builds" in err

    deployment = _deployment("factory-build/nightly")
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
    assert deployment.work_pool_name == "builds"
    assert deployment.entrypoint == "flows.build.build_flow"
    assert deployment.parameters["incremental"] is True
    assert deployment.parameters["config"]["run"]["name"] == "nightly"

    # Prefect's own CLI, in another process, lists the deployment and shows its cron schedule.
    assert "factory-build/nightly" in _prefect_cli(["deployment", "ls"], prefect_api).replace("\n", "")
    inspected = _prefect_cli(
        ["deployment", "inspect", "factory-build/nightly", "--output", "json"], prefect_api
    )
    assert json.loads(inspected)["schedules"][0]["schedule"]["cron"] == "0 3 * * *"

    # Registering again updates the same deployment (a new cron replaces the old one).
    code, out, err = run_cli(
        ["schedule", str(config), "--cron", "30 4 * * 1", "--name", "nightly", "--timezone", "Europe/Paris"],
        capsys,
    )
    assert code == 0, err
    again = _deployment("factory-build/nightly")
    assert again.id == deployment.id
    assert [(s.schedule.cron, s.schedule.timezone) for s in again.schedules] == [
        ("30 4 * * 1", "Europe/Paris")
    ]


@pytest.mark.parametrize(
    "cron, expected",
    [
        ("61 * * * *", "error: invalid cron expression '61 * * * *'"),
        ("every night", "error: invalid cron expression 'every night'"),
        ("0 3 * *", "error: invalid cron expression '0 3 * *'"),
    ],
)
def test_an_invalid_cron_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cron: str, expected: str
) -> None:
    config = write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="bad-cron")
    code, out, err = run_cli(["schedule", str(config), "--cron", cron], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(expected)
    assert out == ""


def test_an_unknown_timezone_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="bad-tz")
    code, _, err = run_cli(
        ["schedule", str(config), "--cron", "0 3 * * *", "--timezone", "Mars/Olympus"], capsys
    )
    assert code == 2
    assert err.startswith("error: invalid timezone 'Mars/Olympus'") and err.count("\n") == 1


@pytest.mark.prefect
def test_scheduled_runs_build_only_new_prompts_as_new_versions(
    prefect_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.build import build_flow

    first = [
        "Name three rivers in Africa.",
        "What is a prime number?",
        "Explain photosynthesis briefly.",
        "Write a haiku about rain.",
    ]
    with FakeLLMServer() as server:
        config = write_build_config(tmp_path, server.base_url, name="growing", prompts=first)
        code, _, err = run_cli(["schedule", str(config), "--cron", "0 3 * * *"], capsys)
        assert code == 0, err
        parameters = _deployment("factory-build/growing").parameters  # what every scheduled run receives

        v1 = build_flow(**parameters)
        # The source grows: two new prompts, and an old prompt renumbered (same text: not new).
        prompt_file = Path(parameters["config"]["prompts"]["path"])
        rows = [
            {"id": "renumbered-0", "prompt": first[0]},
            *({"id": f"q{i}", "prompt": t} for i, t in enumerate(first)),
        ]
        rows += [
            {"id": "new-a", "prompt": "How do vaccines work?"},
            {"id": "new-b", "prompt": "Define entropy."},
        ]
        prompt_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        v2 = build_flow(**parameters)
        v3 = build_flow(**parameters)  # nothing new since v2

    home = tmp_path / "outputs" / "growing"
    versions = read_versions(home)
    assert [(v["version"], v["new_prompts"], v["skipped_prompts"]) for v in versions] == [
        (1, 4, 0),
        (2, 2, 5),
    ]
    assert [home / v["path"] for v in versions] == [Path(v1["run_dir"]), Path(v2["run_dir"])]
    assert v2["version"] == versions[1]
    v2_prompts = pl.read_parquet(Path(v2["run_dir"]) / "prompts.parquet")["prompt_id"].to_list()
    assert sorted(v2_prompts) == ["new-a", "new-b"]
    v2_pairs = pl.read_parquet(Path(v2["run_dir"]) / "pairs.parquet")
    assert set(v2_pairs["prompt_id"].to_list()) <= {"new-a", "new-b"} and v2_pairs.height > 0
    assert v3["run_dir"] is None
    assert sorted(p.name for p in home.iterdir() if p.is_dir()) == sorted(
        [Path(v1["run_dir"]).name, Path(v2["run_dir"]).name]
    )


def test_the_example_prefect_yaml_names_real_flows_and_parameters() -> None:
    import inspect

    import yaml
    from prefect.flows import load_flow_from_entrypoint

    from factory.config import load_config
    from flows.schedule import validate_cron

    root = Path(__file__).resolve().parents[2]
    project = yaml.safe_load((root / "prefect.yaml").read_text())
    names = set()
    for deployment in project["deployments"]:
        file, _, function = deployment["entrypoint"].partition(":")
        flow = load_flow_from_entrypoint(f"{root / file}:{function}")
        names.add(f"{flow.name}/{deployment['name']}")
        parameters = deployment.get("parameters", {})
        assert set(parameters) <= set(inspect.signature(flow.fn).parameters), deployment["name"]
        for schedule in deployment.get("schedules", []):
            validate_cron(schedule["cron"], schedule.get("timezone"))
        if "config_path" in parameters:
            assert load_config(root / parameters["config_path"]).run.name == "demo"
    assert names == {"factory-build/demo-nightly", "factory-publish/hub", "factory-calibrate/calibrate"}
