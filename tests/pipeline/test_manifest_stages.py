"""manifest.json's `stages`: per stage, prompts in, rows out, failures and the usage of its calls."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from _reliability import build_config

from factory.config import parse_config
from factory.pipeline import run_build
from factory.pipeline.finalize.stage_figures import STAGE_ORDER, USAGE_FIGURES
from factory.testing import FakeLLMServer, Rule


def test_stages_add_up_to_the_build_and_its_usage(tmp_path: Path) -> None:
    # One prompt's answers are all the same text: it fails at generate (fewer than two distinct candidates).
    rules = [Rule(contains="topic number 3", reply="The same answer every time.")]
    with FakeLLMServer(rules=rules) as server:
        spec = build_config(server.base_url, tmp_path, prompts=6, shard_size=3)
        result = run_build(parse_config(spec, "test"))
    m = result.manifest
    stages = m["stages"]
    assert list(stages) == [*STAGE_ORDER, "gate"]
    run = result.run_dir

    assert stages["generate"]["prompts_in"] == m["counts"]["prompts"]
    assert stages["generate"]["rows_out"] == m["counts"]["candidates"]
    assert stages["judge"]["rows_out"] == m["counts"]["judgments"]
    candidates = pl.read_parquet(run / "candidates.parquet")
    assert stages["judge"]["prompts_in"] == candidates["prompt_id"].n_unique()
    failures = pl.read_parquet(run / "failures.parquet")
    by_stage = dict(failures.group_by("stage").len().iter_rows())
    assert {s: stages[s]["failures"] for s in STAGE_ORDER} == {s: by_stage.get(s, 0) for s in STAGE_ORDER}
    assert stages["generate"]["failures"] >= 1
    assert (
        stages["rationales"]["prompts_in"] <= stages["pairs"]["prompts_in"] <= stages["judge"]["prompts_in"]
    )

    # Every model call of the build is attributed to exactly one stage.
    for key in USAGE_FIGURES:
        assert sum(s[key] for s in stages.values()) == m["llm"][key], key
    assert (
        stages["generate"]["calls"] > 0 and stages["judge"]["calls"] > 0 and stages["rationales"]["calls"] > 0
    )
    assert stages["pairs"]["calls"] == 0 and stages["gate"]["calls"] == 0
