"""Where scheduled builds write: resolved when the deployment is registered, to an absolute folder or a
storage URL (fsspec) that each run copies its run folder to; incremental runs find the versions there."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")
import json
import tempfile
from pathlib import Path

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
import polars as pl
import yaml
from conftest_prefect import run_cli, write_build_config

from factory._util.errors import UserError
from factory.config import load_config
from factory.run.incremental import read_versions
from factory.run.output_location import resolve_for_schedule
from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]


def test_a_relative_output_folder_is_stored_absolute_with_a_note(tmp_path: Path) -> None:
    config = load_config(write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="rel"))
    relative = config.model_copy(update={"run": config.run.model_copy(update={"output_dir": "data/out"})})
    resolved = resolve_for_schedule(relative, tmp_path)
    assert resolved.location == str(tmp_path / "data" / "out")
    assert resolved.notes and "'data/out' is relative" in resolved.notes[0]
    assert resolve_for_schedule(relative, tmp_path, "/srv/datasets").location == "/srv/datasets"
    assert resolve_for_schedule(relative, tmp_path, "/srv/datasets").notes == []


def test_a_relative_human_set_file_is_stored_absolute(tmp_path: Path) -> None:
    config = load_config(write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="hs"))
    (tmp_path / "mine.jsonl").write_text("")
    with_file = config.model_copy(update={"gate": config.gate.model_copy(update={"human_set": "mine.jsonl"})})
    assert resolve_for_schedule(with_file, tmp_path).config.gate.human_set == str(tmp_path / "mine.jsonl")
    assert (
        resolve_for_schedule(config, tmp_path).config.gate.human_set == config.gate.human_set
    )  # a set's name


@pytest.mark.parametrize(
    "url, says",
    [
        ("s3://bucket/datasets", "Install s3fs to access S3"),
        ("nope://bucket/datasets", "fsspec knows no storage protocol 'nope://'"),
        ("https://example.org/datasets", "read-only"),
    ],
)
def test_a_storage_url_that_cannot_be_written_is_refused_at_deploy_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, says: str
) -> None:
    config = write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="badurl")
    code, out, err = run_cli(["schedule", str(config), "--cron", "0 3 * * *", "--output-dir", url], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"error: output '{url}'") and says in err and err.count("\n") == 1


def test_factory_build_refuses_a_storage_url_as_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="urlbuild")
    spec = yaml.safe_load(config.read_text())
    spec["run"]["output_dir"] = "s3://bucket/datasets"
    config.write_text(yaml.safe_dump(spec))
    code, _, err = run_cli(["build", str(config), "--engine", "local"], capsys)
    assert code == 2 and err.startswith("error: run.output_dir 's3://bucket/datasets' is a storage URL")


def test_register_schedule_refuses_a_relative_output_folder(tmp_path: Path) -> None:
    from flows.schedule import register_schedule

    config = load_config(write_build_config(tmp_path, "http://127.0.0.1:9/v1", name="relreg"))
    relative = config.model_copy(update={"run": config.run.model_copy(update={"output_dir": "outputs"})})
    with pytest.raises(UserError, match="'outputs' is relative"):
        register_schedule(relative, "0 3 * * *")


@pytest.mark.prefect
def test_runs_into_a_storage_url_copy_their_run_folder_and_find_the_earlier_versions(
    prefect_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.client.orchestration import get_client

    from flows.build import build_flow

    remote = tmp_path / "bucket"
    url = f"file://{remote}/datasets"
    first = ["Name three rivers in Africa.", "What is a prime number?", "Write a haiku about rain."]
    with FakeLLMServer() as server:
        config = write_build_config(tmp_path, server.base_url, name="remote", prompts=first)
        code, _, err = run_cli(["schedule", str(config), "--cron", "0 3 * * *", "--output-dir", url], capsys)
        assert code == 0, err
        with get_client(sync_client=True) as client:
            parameters = client.read_deployment_by_name("factory-build/remote").parameters
        assert parameters["config"]["run"]["output_dir"] == url

        v1 = build_flow(**parameters)
        prompt_file = Path(parameters["config"]["prompts"]["path"])
        with prompt_file.open("a") as f:
            f.write(json.dumps({"id": "new-a", "prompt": "How do vaccines work?"}) + "\n")
        v2 = build_flow(**parameters)
        v3 = build_flow(**parameters)  # nothing new

    home = remote / "datasets" / "remote"
    versions = read_versions(home)
    assert [(v["version"], v["new_prompts"], v["skipped_prompts"]) for v in versions] == [
        (1, 3, 0),
        (2, 1, 3),
    ]
    assert [v1["run_dir"], v2["run_dir"]] == [f"{url}/remote/{v['path']}" for v in versions]
    assert v3["run_dir"] is None
    v2_dir = home / versions[1]["path"]
    assert pl.read_parquet(v2_dir / "prompts.parquet")["prompt_id"].to_list() == ["new-a"]
    assert (v2_dir / "manifest.json").is_file() and (v2_dir / "dataset" / "README.md").is_file()
    assert not (v2_dir / ".lock").exists()
    assert sorted(p.name for p in home.iterdir()) == sorted([*(v["path"] for v in versions), "versions.json"])
    assert not list(Path(tempfile.gettempdir()).glob("factory-staging-remote-*"))  # staging folders removed
