"""The streamed finalize (tables merged file by file, dataset decided and written shard by shard)
writes exactly what building everything in memory writes: same tables, same dataset files row for
row and in order, same dedupe, KTO and split decisions, same DatasetDict.

The reference is the in-memory path: the stage files concatenated into whole tables
(`RunFolder.read_stage`), handed to `write_dataset` as one piece, which decides over the whole table
in table order as the writer always has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from datasets import load_from_disk
from polars.testing import assert_frame_equal

from factory.config import parse_config
from factory.dataset.shard_parts import DatasetSources, shard_groups
from factory.dataset.writer import write_dataset
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway
from factory.pipeline.context import BuildContext
from factory.pipeline.stages.mapl_variants import mapl_variants
from factory.run.folder import RunFolder
from factory.run.tables import merge_tables

LONG = (
    "Start with a clear goal for the week, then break it into small daily tasks that you can finish in "
    "under an hour each, and review what worked every Friday afternoon before planning again."
)


def pair(
    pid: str, n: int, chosen: str, rejected: str, text: str | None = None, **extra: Any
) -> dict[str, Any]:
    question = text or f"Question {pid}?"
    return {
        "pair_id": f"{pid}-pair{n}",
        "prompt_id": pid,
        "prompt": question,
        "turns": [question],
        "chosen": chosen,
        "rejected": rejected,
        "chosen_id": f"{pid}:c{n}",
        "rejected_id": f"{pid}:r{n}",
        "chosen_model": "openai/a",
        "rejected_model": "openai/b",
        "margin": 3.0,
        "votes": ["A"],
        "judge_id": "judge[judge]/combined10/fixed",
        "source": "judged",
        "rationale": f"Reason {n}.",
        "rationale_status": "verified",
        **extra,
    }


def shard_pairs(shard: int) -> list[dict[str, Any]]:
    """Pairs of three prompts with every kind of decision: exact and near duplicates, an answer both
    chosen and rejected (KTO conflict), and a prompt text repeated in another shard."""
    rows = []
    for k in range(3):
        pid = f"p{shard}{k}"
        good = f"{LONG} Answer {pid} is complete."
        rows += [
            pair(pid, 1, good, f"Answer {pid}: no idea."),
            pair(pid, 2, good, f"Answer {pid}: no idea."),  # exact duplicate
            pair(pid, 3, good.replace("Friday", "Monday"), f"Answer {pid}: no idea."),  # near duplicate
            pair(pid, 4, f"Answer {pid}: no idea.", f"Answer {pid}: wrong."),
        ]  # chosen here, rejected above
    # The same prompt text under another id, in shards 0 and 2: decided together, in table order.
    shared = "What is the one question every shard asks?"
    rows.append(
        pair(
            f"s{shard}",
            1,
            f"{LONG} Shared.",
            "Shared: no idea.",
            text=shared,
            margin=float(shard) if shard else 2,
        )
    )  # an int margin in one shard, floats elsewhere
    return rows


@pytest.fixture()
async def run_folder(tmp_path: Path) -> tuple[RunFolder, Any]:
    spec = {"model": "openai/fake", "api_base": "http://127.0.0.1:9/v1"}
    config = parse_config(
        {
            "run": {"name": "stream", "seed": 3, "output_dir": str(tmp_path)},
            "models": {"generator": spec, "judge": spec, "rationale_writer": spec},
            "prompts": {"path": "prompts.jsonl"},
            "dataset": {"test_fraction": 0.3, "near_duplicate_threshold": 0.8},
        }
    )
    run = RunFolder.create(tmp_path, "stream")
    ctx = BuildContext(config=config, run=run, gateway=Gateway(config.models))
    for shard in range(4):
        pairs = shard_pairs(shard) if shard != 1 else shard_pairs(shard)[:4]
        prompts = [Prompt(p["prompt_id"], tuple(p["turns"]), "test") for p in pairs]
        variants, _ = await mapl_variants(ctx, prompts, pairs)
        run.write_shard("rationales", shard, pairs, [])
        run.write_shard("variants", shard, variants, [])
    run.write_shard("rationales", 4, [], [])  # a finished shard with nothing in it
    return run, config


def test_streamed_finalize_writes_what_the_in_memory_path_writes(run_folder: Any, tmp_path: Path) -> None:
    run, config = run_folder
    rows = merge_tables(run, [])
    variants = run.read_stage("variants")
    assert (
        variants is not None and variants.filter(pl.col("source") == "mapl_intra").height
    )  # MAPL rows present
    whole = {
        "pairs": pl.concat(
            [run.read_stage("rationales"), variants.filter(pl.col("source") == "mapl_inter")],
            how="diagonal_relaxed",
        ),
        "mapl_intra": variants.filter(pl.col("source") == "mapl_intra"),
    }
    for table, frame in whole.items():
        assert_frame_equal(pl.read_parquet(run.table(table)), frame)
        assert rows[table] == frame.height

    streamed = write_dataset(run, config, DatasetSources.from_run(run), {})
    reference = RunFolder((tmp_path / "reference") / run.run_id)  # same run id: the cards can be compared
    reference.root.mkdir(parents=True)
    assert write_dataset(reference, config, whole, {}) == streamed
    assert streamed["exact_duplicates_removed"] >= 7 and streamed["near_duplicates_removed"] >= 7
    assert streamed["kto_conflicts_removed"] >= 7

    files = sorted(p.relative_to(run.root / "dataset") for p in (run.root / "dataset").rglob("*.parquet"))
    assert files == sorted(
        p.relative_to(reference.root / "dataset") for p in (reference.root / "dataset").rglob("*.parquet")
    )
    assert len(files) == 6
    for name in files:
        assert_frame_equal(
            pl.read_parquet(run.root / "dataset" / name), pl.read_parquet(reference.root / "dataset" / name)
        )
    assert (run.root / "dataset" / "README.md").read_text() == (
        reference.root / "dataset" / "README.md"
    ).read_text()
    ours, theirs = (
        load_from_disk(str(run.root / "dataset_dict")),
        load_from_disk(str(reference.root / "dataset_dict")),
    )
    assert {s: d.features for s, d in ours.items()} == {s: d.features for s, d in theirs.items()}
    assert {s: d.to_list() for s, d in ours.items()} == {s: d.to_list() for s, d in theirs.items()}
    assert not [p for p in run.root.iterdir() if p.name.startswith(".")]  # no scratch folders left


def test_shards_sharing_a_prompt_text_are_decided_together() -> None:
    assert shard_groups([(0, {1, 2}), (1, {3}), (2, {4, 1}), (3, {5, 4}), (4, set())]) == [
        [0, 2, 3],
        [1],
        [4],
    ]
