"""Every build's `dataset/` folder loads as itself with `datasets.load_dataset(folder, "dpo")`, whatever
was loaded before from one shared HF_DATASETS_CACHE: builds under one `outputs/`, builds with the same
row counts, and the folders `factory publish --dry-run` writes (all named alike). Each load runs in a
fresh process, as a user's would, so nothing is shared but the cache folder."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
from conftest_prefect import write_build_config

# One process per folder: every config the card declares, and the DatasetDict beside a run's dataset/.
_LOAD = """
import json, sys
from pathlib import Path
import datasets
from huggingface_hub import DatasetCard

folder = Path(sys.argv[1])
out = {}
for config in DatasetCard.load(folder / "README.md").data.configs:
    loaded = datasets.load_dataset(str(folder), config["config_name"])
    out[config["config_name"]] = {s: ds.to_pandas().to_json(orient="records") for s, ds in loaded.items()}
if (folder.parent / "dataset_dict").is_dir():
    saved = datasets.load_from_disk(str(folder.parent / "dataset_dict"))
    out["dataset_dict"] = {split: ds.to_pandas().to_json(orient="records") for split, ds in saved.items()}
print(json.dumps(out))
"""


def _load_in_fresh_process(folder: Path, cache: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(
        HF_HOME=str(cache.parent / "hf-home"),
        HF_DATASETS_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: {s: json.loads(rows) for s, rows in splits.items()} for name, splits in loaded.items()}


def _keys(rows: list[dict[str, Any]]) -> list[str]:
    """A row's identity: its pair id (the same ids recur across runs: q0, q1 ...) and its texts."""
    return sorted(json.dumps([r["pair_id"], r["prompt"], r["chosen"], r["rejected"]]) for r in rows)


def _expected(folder: Path) -> dict[str, list[str]]:
    """What the folder's own `dpo` parquet files hold, per split."""
    files = sorted((folder / "dpo").glob("*.parquet"))
    return {p.name.split("-")[0]: _keys(pl.read_parquet(p).to_dicts()) for p in files}


def _prompts(folder: Path) -> set[str]:
    frame = pl.concat([pl.read_parquet(p) for p in (folder / "dpo").glob("*.parquet")])
    return {turns[0]["content"] for turns in frame["prompt"].to_list()}


def _assert_loads_as_itself(folder: Path, cache: Path) -> None:
    loaded = _load_in_fresh_process(folder, cache)
    assert {s: _keys(rows) for s, rows in loaded["dpo"].items()} == _expected(folder)
    assert {s: len(rows) for s, rows in loaded["kto"].items()} == {
        p.name.split("-")[0]: pl.read_parquet(p).height for p in (folder / "kto").glob("*.parquet")
    }
    if "dataset_dict" in loaded:
        assert {s: _keys(rows) for s, rows in loaded["dataset_dict"].items()} == _expected(folder)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three builds into one outputs/: `a` and `c` with as many prompts (other texts), `b` with fewer."""
    from factory.config import load_config
    from factory.pipeline import run_build
    from factory.testing import FakeLLMServer

    folder = tmp_path_factory.mktemp("builds")
    prompts = {
        "a": [f"How do I plan week {i} of a garden?" for i in range(4)],
        "b": [f"Why is river {i} salty?" for i in range(3)],
        "c": [f"What makes bread recipe {i} rise?" for i in range(4)],
    }
    runs = []
    with FakeLLMServer() as server:
        for name, texts in prompts.items():
            config = write_build_config(folder, server.base_url, name=name, prompts=texts, shard_size=4)
            runs.append(run_build(load_config(config)).run_dir)
    assert len({run.parent for run in runs}) == 1  # one outputs/ parent, every folder named dataset/
    return runs


def test_each_run_loads_its_own_rows_from_one_shared_cache(three_runs: list[Path], tmp_path: Path) -> None:
    a, b, c = (run / "dataset" for run in three_runs)
    assert len({frozenset(_prompts(f)) for f in (a, b, c)}) == 3
    # a and c differ only in their texts: the fix must not depend on row counts.
    assert {s: len(v) for s, v in _expected(a).items()} == {s: len(v) for s, v in _expected(c).items()}
    assert {s: len(v) for s, v in _expected(a).items()} != {s: len(v) for s, v in _expected(b).items()}
    cache = tmp_path / "hf-datasets-cache"
    for folder in (a, b, c, a):  # a again, after the others filled the cache
        _assert_loads_as_itself(folder, cache)


def test_dry_run_folders_load_as_themselves_from_one_shared_cache(
    three_runs: list[Path], tmp_path: Path
) -> None:
    from factory.release.publish import publish_run

    targets = []
    for i, run in enumerate(three_runs):
        target = tmp_path / f"dry-{i}" / "repo"  # the same folder name for every run
        publish_run(run, "my-org/prefs", dry_run=target, force=True)
        targets.append(target)
    cache = tmp_path / "hf-datasets-cache"
    for target in (*targets, targets[0]):
        _assert_loads_as_itself(target, cache)
