"""`factory publish` against a loopback stand-in for the Hugging Face Hub (HF_ENDPOINT), and --dry-run."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from conftest_prefect import run_cli as _cli
from conftest_prefect import write_build_config

from factory.testing.hub_standin import HubStandIn, card_metadata_errors

TOKEN = "hf_standInTokenDoNotLeak0123456789"


def _subprocess_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _hub_env(tmp_path: Path, hub: HubStandIn | None, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _scan_for_token(*roots: Path) -> list[str]:
    hits = []
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
            if TOKEN.encode() in path.read_bytes():
                hits.append(str(path))
    return hits


def _fixture_run(root: Path, *, gate_passed: bool | None = True, dpo_train_shards: int = 1) -> Path:
    """A finished run folder with the dataset layout of docs/architecture.md (a small, fixed dataset)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    run = root / "demo-20261104-030000-1a2b"
    dataset = run / "dataset"
    (dataset / "dpo").mkdir(parents=True)
    (dataset / "kto").mkdir()
    (run / "config.yaml").write_text("run:\n  name: demo\n")
    gate = (
        None
        if gate_passed is None
        else {
            "passed": gate_passed,
            "checks": [
                {
                    "name": "min_kappa",
                    "value": 0.61 if gate_passed else 0.12,
                    "threshold": 0.4,
                    "passed": gate_passed,
                }
            ],
        }
    )
    (run / "manifest.json").write_text(json.dumps({"run_id": run.name, "status": "complete", "gate": gate}))
    _write_dpo(dataset, dpo_train_shards)
    for split, n in (("train", 4), ("test", 2)):
        pl.DataFrame(
            {
                "prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(n)],
                "completion": [[{"role": "assistant", "content": f"a{i}"}] for i in range(n)],
                "label": [i % 2 == 0 for i in range(n)],
            }
        ).write_parquet(dataset / "kto" / f"{split}-00000-of-00001.parquet")
    data = DatasetCardData(
        license="apache-2.0",
        tags=["dpo", "kto", "synthetic"],
        configs=[
            {
                "config_name": "dpo",
                "data_files": [
                    {"split": "train", "path": "dpo/train-*.parquet"},
                    {"split": "test", "path": "dpo/test-*.parquet"},
                ],
            },
            {
                "config_name": "kto",
                "data_files": [
                    {"split": "train", "path": "kto/train-*.parquet"},
                    {"split": "test", "path": "kto/test-*.parquet"},
                ],
            },
        ],
    )
    card = DatasetCard.from_template(
        data, template_str="---\n{{ card_data }}\n---\n# demo\n\nPreference pairs.\n"
    )
    card.save(dataset / "README.md")
    (dataset / "agreement.json").write_text(json.dumps({"settings": [{"setting_id": "j", "kappa": 0.61}]}))
    (dataset / "report.html").write_text("<html><body>report</body></html>")
    (dataset / ".README.md.tmp").write_text("a temporary file a killed writer left behind")
    return run


def _write_dpo(dataset: Path, train_shards: int) -> None:
    for old in (dataset / "dpo").glob("*.parquet"):
        old.unlink()
    rows = 6
    for split, n, shards in (("train", rows, train_shards), ("test", 2, 1)):
        for s in range(shards):
            ids = range(s, n, shards)
            pl.DataFrame(
                {
                    "prompt": [[{"role": "user", "content": f"q{i}"}] for i in ids],
                    "chosen": [[{"role": "assistant", "content": f"good {i}"}] for i in ids],
                    "rejected": [[{"role": "assistant", "content": f"bad {i}"}] for i in ids],
                }
            ).write_parquet(dataset / "dpo" / f"{split}-{s:05d}-of-{shards:05d}.parquet")


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    """The stand-in Hub, with this process's huggingface_hub pointed at it (for in-process CLI runs)."""
    import huggingface_hub.constants as hf_constants

    with HubStandIn(expected_token=TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        # The suite runs with HF_HUB_OFFLINE=1 (read once at import); publishing is the one exception.
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        yield hub


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real build against the fake server (local engine): the dataset folder the dataset writer makes."""
    from factory.config import load_config
    from factory.pipeline import run_build
    from factory.testing import FakeLLMServer

    folder = tmp_path_factory.mktemp("built")
    with FakeLLMServer() as server:
        config = write_build_config(folder, server.base_url, name="to-publish", n_prompts=8, shard_size=4)
        return run_build(load_config(config)).run_dir


def test_publish_sends_every_file_and_a_valid_card_and_never_the_token(
    built_run: Path, tmp_path: Path
) -> None:
    from huggingface_hub import DatasetCard

    with HubStandIn(expected_token=TOKEN) as hub:
        done = _subprocess_cli(
            ["publish", str(built_run), "--repo-id", "my-org/prefs", "--private"], _hub_env(tmp_path, hub)
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == f"{hub.url}/datasets/my-org/prefs"
        repo = hub.repos["my-org/prefs"]
        log, unknown, unauthorized = list(hub.log), list(hub.unknown), hub.unauthorized

    local = _files(built_run / "dataset")
    assert repo.files == local  # every file arrived, byte for byte, and nothing else
    assert {"README.md", "dpo/train-00000-of-00001.parquet", "kto/train-00000-of-00001.parquet"} <= set(local)
    assert repo.private and repo.repo_type == "dataset"
    assert unknown == [] and unauthorized == 0
    assert (
        log[0] == "POST /api/repos/create -> 200"
        and log[-1] == "POST /api/datasets/my-org/prefs/commit/main -> 200"
    )

    card = DatasetCard(repo.files["README.md"].decode())
    assert {c["config_name"] for c in card.data.configs} >= {"dpo", "kto"}
    assert card.data.license
    assert card_metadata_errors(repo.files["README.md"].decode()) == []

    assert TOKEN not in done.stdout + done.stderr + "\n".join(log)
    assert not any(TOKEN.encode() in data for data in repo.files.values())
    assert _scan_for_token(built_run, tmp_path) == []


def test_dry_run_writes_the_exact_repository_folder_and_it_loads(
    built_run: Path, tmp_path: Path, hub_env: HubStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    import datasets

    target = tmp_path / "repo"
    code, out, err = _cli(
        ["publish", str(built_run), "--repo-id", "my-org/prefs", "--dry-run", str(target)], capsys
    )
    assert code == 0, err
    assert out.strip() == str(target)
    assert _files(target) == _files(built_run / "dataset")
    assert hub_env.log == []  # a dry run sends nothing
    loaded = datasets.load_dataset(str(target), "dpo", cache_dir=str(tmp_path / "cache"))
    for split in loaded:
        expected = sum(pl.read_parquet(p).height for p in (target / "dpo").glob(f"{split}-*.parquet"))
        assert loaded[split].num_rows == expected > 0
    assert set(loaded["train"].column_names) >= {"prompt", "chosen", "rejected"}
    assert f"{loaded['train'].num_rows} rows" in err


def test_a_card_whose_sha256_no_longer_matches_its_files_is_refused(
    built_run: Path, tmp_path: Path, hub_env: HubStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / built_run.name
    shutil.copytree(built_run, run)
    _write_dpo(run / "dataset", train_shards=1)  # other rows under the card that names the build's rows
    target = tmp_path / "repo"
    code, _, err = _cli(["publish", str(run), "--repo-id", "my-org/prefs", "--dry-run", str(target)], capsys)
    assert code == 2 and "config 'dpo' declares a sha256 its data files" in err and err.count("\n") == 1
    assert not target.exists() and hub_env.log == []


def test_a_failed_gate_is_refused_unless_forced(
    tmp_path: Path, hub_env: HubStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _fixture_run(tmp_path, gate_passed=False)
    code, out, err = _cli(["publish", str(run), "--repo-id", "my-org/prefs"], capsys)
    assert code == 2
    assert err == (
        "error: refusing to publish: the quality gate failed (min_kappa); pass --force to publish anyway\n"
    )
    assert hub_env.log == []

    code, _, err = _cli(["publish", str(run), "--repo-id", "my-org/prefs", "--force"], capsys)
    assert code == 0, err
    # Hidden files (a temporary left by a killed writer) are never part of the repository.
    assert hub_env.repos["my-org/prefs"].files == {
        k: v for k, v in _files(run / "dataset").items() if not k.startswith(".")
    }


def test_a_build_without_a_gate_outcome_is_refused(
    tmp_path: Path, hub_env: HubStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _fixture_run(tmp_path, gate_passed=None)
    code, _, err = _cli(["publish", str(run), "--repo-id", "my-org/prefs"], capsys)
    assert code == 2 and err.startswith("error: refusing to publish: the quality gate did not run")


def test_republishing_replaces_stale_shards(
    tmp_path: Path, hub_env: HubStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _fixture_run(tmp_path)
    assert _cli(["publish", str(run), "--repo-id", "my-org/prefs"], capsys)[0] == 0
    _write_dpo(run / "dataset", train_shards=2)  # the next version has two train shards
    code, _, err = _cli(["publish", str(run), "--repo-id", "my-org/prefs"], capsys)
    assert code == 0, err
    remote = hub_env.repos["my-org/prefs"].files
    assert sorted(k for k in remote if k.startswith("dpo/")) == [
        "dpo/test-00000-of-00001.parquet",
        "dpo/train-00000-of-00002.parquet",
        "dpo/train-00001-of-00002.parquet",
    ]
    assert len(hub_env.repos["my-org/prefs"].commits) == 2


@pytest.mark.parametrize(
    "card, message",
    [
        ("---\nlicense: mit\n---\n# no configs\n", "declares no 'configs' in its YAML metadata"),
        (
            (
                "---\nlicense: mit\nconfigs:\n- config_name: dpo\n  data_files:\n  - split: train\n"
                "    path: dpo/missing-*.parquet\n---\n"
            ),
            "config 'dpo' names 'dpo/missing-*.parquet', which matches no file",
        ),
        ("---\nconfigs:\n- config_name: dpo\n  data_files: dpo/train-*.parquet\n---\n", "has no license"),
    ],
)
def test_an_invalid_card_is_refused_before_any_upload(
    tmp_path: Path, hub_env: HubStandIn, capsys: pytest.CaptureFixture[str], card: str, message: str
) -> None:
    run = _fixture_run(tmp_path)
    (run / "dataset" / "README.md").write_text(card)
    code, _, err = _cli(["publish", str(run), "--repo-id", "my-org/prefs"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert hub_env.log == []


def test_without_a_token_publishing_is_a_one_line_error(tmp_path: Path) -> None:
    run = _fixture_run(tmp_path)
    with HubStandIn() as hub:
        done = _subprocess_cli(
            ["publish", str(run), "--repo-id", "my-org/prefs"], _hub_env(tmp_path, hub, token=None)
        )
        assert done.returncode == 2
        assert done.stderr == "error: no Hugging Face token: set HF_TOKEN or log in with `hf auth login`\n"
        assert hub.log == []


def test_a_bad_repo_id_or_a_wrong_token_are_one_line_errors(
    tmp_path: Path, hub_env: HubStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _fixture_run(tmp_path)
    code, _, err = _cli(["publish", str(run), "--repo-id", "just-a-name"], capsys)
    assert code == 2 and err == "error: --repo-id must look like ORG/NAME, got 'just-a-name'\n"
    wrong = "hf_wrongTokenAlsoSecret987"
    monkeypatch.setenv("HF_TOKEN", wrong)
    code, _, err = _cli(["publish", str(run), "--repo-id", "my-org/prefs"], capsys)
    assert code == 2 and err.startswith("error: the Hub refused create_repo (HTTP 401)")
    assert wrong not in err and err.count("\n") == 1
