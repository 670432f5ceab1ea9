"""The build streams each prompt through the stages (factory/pipeline/shard.py): no stage waits for
the whole shard to finish the one before, and the rows do not depend on how prompts interleave."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _reliability import build_config, tables

from factory.config import parse_config
from factory.pipeline import run_build
from factory.testing import FakeLLMServer


def _build(server: FakeLLMServer, tmp: Path, **run: Any) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    spec = build_config(server.base_url, tmp, prompts=12, **run, variants={"enabled": False})
    return run_build(parse_config(spec, str(tmp / "config.yaml"))).run_dir


def test_prompts_reach_the_judge_while_the_shard_is_still_generating(tmp_path: Path) -> None:
    with FakeLLMServer(latency_s=0.02) as server:
        run_dir = _build(server, tmp_path, shard_size=12, concurrency=2)
        # Roles differ by temperature in the test spec: generator 0.8, judge 0.0, rationale writer 0.3.
        order = [r.get("temperature") for r in server.requests]
    first_judge = order.index(0.0)
    last_generation = max(i for i, t in enumerate(order) if t == 0.8)
    assert first_judge < last_generation  # stage by stage, every generation came before any judge call
    assert all(
        (run_dir / "stages" / stage / "shard-00000.parquet").is_file()
        for stage in ("generate", "judge", "pairs", "rationales", "variants")
    )


def test_rows_do_not_depend_on_shard_size_or_interleaving(tmp_path: Path) -> None:
    with FakeLLMServer(latency_s=0.0) as server:
        one_shard = _build(server, tmp_path / "a", shard_size=12, concurrency=4)
        many_shards = _build(server, tmp_path / "b", shard_size=1, concurrency=1)
    assert tables(one_shard) == tables(many_shards)
