"""The dataset writer (factory.dataset.writer): TRL formats, dedupe, leak-free split, Hub layout, card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from datasets import load_dataset, load_from_disk
from huggingface_hub import DatasetCard

from factory._util.json_columns import rows_frame
from factory.config import parse_config
from factory.dataset.decide import KTO_FIRST, KTO_SECOND, PairDedupe, decide, split_test_prompts
from factory.dataset.rows import dpo_rows, kto_row, reverify_dataset_row
from factory.dataset.shard_parts import DatasetSources
from factory.dataset.writer import write_dataset
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway
from factory.pipeline.context import BuildContext
from factory.pipeline.stages.mapl_variants import mapl_variants
from factory.run.folder import RunFolder

LONG = (
    "Start with a clear goal for the week, then break it into small daily tasks that you can finish in "
    "under an hour each, and review what worked every Friday afternoon before planning again."
)


def judged(i: int, chosen: str, rejected: str, pid: str | None = None) -> dict[str, Any]:
    prompt_id = pid or f"p{i}"
    return {
        "pair_id": f"pair{i}-{len(chosen)}-{len(rejected)}",
        "prompt_id": prompt_id,
        "prompt": f"Question {prompt_id}?",
        "turns": [f"Question {prompt_id}?"],
        "chosen": chosen,
        "rejected": rejected,
        "chosen_id": f"{prompt_id}:c1",
        "rejected_id": f"{prompt_id}:c2",
        "chosen_model": "openai/a",
        "rejected_model": "openai/b",
        "margin": 3.0,
        "votes": ["A"],
        "judge_id": "judge[judge]/combined10/fixed",
        "source": "judged",
        "rationale": f"Reason {i}.",
        "rationale_status": "verified",
    }


@pytest.fixture()
async def built(tmp_path: Path) -> tuple[RunFolder, Any, dict[str, pl.DataFrame]]:
    spec = {"model": "openai/fake", "api_base": "http://127.0.0.1:9/v1"}
    config = parse_config(
        {
            "run": {"name": "unit", "seed": 1, "output_dir": str(tmp_path)},
            "models": {"generator": spec, "judge": spec, "rationale_writer": spec},
            "prompts": {"path": "prompts.jsonl"},
            "dataset": {"test_fraction": 0.3, "near_duplicate_threshold": 0.8},
        }
    )
    run = RunFolder.create(tmp_path, "unit")
    pairs = [judged(i, f"{LONG} Answer {i} is complete.", f"Answer {i}: no idea.") for i in range(10)]
    pairs.append({**judged(0, pairs[0]["chosen"], pairs[0]["rejected"]), "pair_id": "exact-copy"})
    pairs.append(
        {
            **judged(0, pairs[0]["chosen"].replace("Friday", "Monday"), pairs[0]["rejected"]),
            "pair_id": "near-copy",
        }
    )
    pairs.append(
        {**judged(11, pairs[0]["chosen"], pairs[0]["rejected"], pid="p11")}
    )  # same texts, other prompt
    ctx = BuildContext(config=config, run=run, gateway=Gateway(config.models))
    prompts = [Prompt(p["prompt_id"], tuple(p["turns"]), "test") for p in pairs]
    variants, _ = await mapl_variants(ctx, prompts, pairs[:10])
    tables = {
        "pairs": rows_frame(pairs + [r for r in variants if r["source"] == "mapl_inter"]),
        "mapl_intra": rows_frame([r for r in variants if r["source"] == "mapl_intra"]),
    }
    return run, config, tables


def read(run: RunFolder, name: str) -> dict[str, pl.DataFrame]:
    folder = run.root / "dataset" / name
    return {p.name.split("-")[0]: pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def test_hub_layout_counts_and_trl_formats(built: Any) -> None:
    run, config, tables = built
    counts = write_dataset(run, config, tables, {})
    for name in ("dpo", "kto", "mapl_intra"):
        files = read(run, name)
        assert set(files) == {"train", "test"}
        for split, frame in files.items():
            assert frame.height == counts[f"{name}_{split}"] > 0
    dpo = pl.concat(read(run, "dpo").values())
    row = dpo.filter(pl.col("source") == "judged").row(0, named=True)
    assert row["prompt"] == [{"role": "user", "content": f"Question {row['prompt_id']}?"}]
    assert row["chosen"][0]["role"] == "assistant" and row["rejected"][0]["role"] == "assistant"
    assert row["rationale"].startswith("Reason") and row["judge_setting"] == "judge[judge]/combined10/fixed"
    assert json.loads(row["votes"]) == ["A"] and row["margin"] == 3.0
    assert set(dpo["source"]) == {"judged", "mapl_inter"}
    kto = pl.concat(read(run, "kto").values())
    assert kto.schema["label"] == pl.Boolean and set(kto["label"]) == {True, False}
    assert {c["role"] for cs in kto["completion"] for c in cs} == {"assistant"}
    intra = pl.concat(read(run, "mapl_intra").values())
    assert set(intra.columns) >= {"prompt_chosen", "prompt_rejected", "response"}


def test_split_keeps_every_prompt_on_one_side(built: Any) -> None:
    run, config, tables = built
    counts = write_dataset(run, config, tables, {})
    sides: dict[str, set[str]] = {"train": set(), "test": set()}
    for name in ("dpo", "kto", "mapl_intra"):
        for split, frame in read(run, name).items():
            sides[split] |= set(frame["prompt_id"])
    assert sides["train"] and sides["test"] and not sides["train"] & sides["test"]
    assert len(sides["test"]) == counts["test_prompts"]


def test_exact_and_near_duplicates_are_removed_within_a_prompt_only(built: Any) -> None:
    run, config, tables = built
    counts = write_dataset(run, config, tables, {})
    assert counts["exact_duplicates_removed"] == 1 and counts["near_duplicates_removed"] == 1
    dpo = pl.concat(read(run, "dpo").values()).filter(pl.col("source") == "judged")
    assert "exact-copy" not in set(dpo["pair_id"]) and "near-copy" not in set(dpo["pair_id"])
    assert "p11" in set(dpo["prompt_id"])  # same texts under another prompt are not duplicates


def test_dedupe_thresholds() -> None:
    def kept(threshold: float) -> int:
        dedupe = PairDedupe(threshold)
        return sum(
            dedupe.keep("q", chosen, "no")
            for chosen in (LONG, LONG.replace("Friday", "Monday"), "A different answer entirely, short.")
        )

    assert [kept(0.8), kept(0.95)] == [2, 3]


def test_kto_leaves_out_an_answer_that_is_both_chosen_and_rejected() -> None:
    pairs = pl.DataFrame([judged(1, "best", "middle"), {**judged(1, "middle", "worst"), "pair_id": "x"}])
    decisions = decide(DatasetSources.from_frames(pairs, None), 0.9)
    rows = [
        kto_row(row, candidate)
        for row, flag in zip(dpo_rows(pairs), decisions.pairs[0], strict=True)
        for candidate, bit in enumerate((KTO_FIRST, KTO_SECOND))
        if flag & bit
    ]
    assert decisions.kto_conflicts == 1
    assert sorted((r["completion"][0]["content"], r["label"]) for r in rows) == [
        ("best", True),
        ("worst", False),
    ]


def test_mapl_rows_re_verify_as_published(built: Any) -> None:
    run, config, tables = built
    write_dataset(run, config, tables, {})
    dpo = pl.concat(read(run, "dpo").values()).filter(pl.col("source") == "mapl_inter")
    intra = pl.concat(read(run, "mapl_intra").values())
    assert dpo.height and intra.height
    assert all(reverify_dataset_row(r) for r in dpo.iter_rows(named=True))
    assert all(reverify_dataset_row(r) for r in intra.iter_rows(named=True))
    tampered = {**intra.row(0, named=True)}
    tampered["prompt_chosen"], tampered["prompt_rejected"] = (
        tampered["prompt_rejected"],
        tampered["prompt_chosen"],
    )
    assert not reverify_dataset_row(tampered)


def test_datasets_reads_it_back_three_ways(built: Any, tmp_path: Path) -> None:
    run, config, tables = built
    counts = write_dataset(run, config, tables, {})
    folder = run.root / "dataset"
    saved = load_from_disk(str(run.root / "dataset_dict"))
    assert {s: len(d) for s, d in saved.items()} == {"train": counts["dpo_train"], "test": counts["dpo_test"]}
    files = {s: str(folder / "kto" / f"{s}-00000-of-00001.parquet") for s in ("train", "test")}
    kto = load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert len(kto["train"]) == counts["kto_train"] and kto["train"].features["label"].dtype == "bool"
    for name in ("dpo", "kto", "mapl_intra"):
        loaded = load_dataset(str(folder), name, cache_dir=str(tmp_path / "hf"))
        assert {s: len(d) for s, d in loaded.items()} == {s: counts[f"{name}_{s}"] for s in ("train", "test")}
    assert saved["train"][0]["prompt"][0]["role"] == "user"


def test_card_metadata_and_gate_figures(built: Any) -> None:
    run, config, tables = built
    write_dataset(run, config, tables, {})
    card = DatasetCard.load(run.root / "dataset" / "README.md")
    assert card.data.license == "apache-2.0"
    assert [c["config_name"] for c in card.data.configs] == ["dpo", "kto", "mapl_intra"]
    assert card.data.configs[0]["data_files"][0] == {"split": "train", "path": "dpo/train-*.parquet"}
    assert "No quality-gate result" in card.text and "judge[judge]/combined10/fixed" in card.text
    write_dataset(run, config, tables, {"gate": {"passed": True, "kappa": 0.61, "min_kappa": 0.4}})
    card = DatasetCard.load(run.root / "dataset" / "README.md")
    assert "passed: **True**" in card.text and "kappa: 0.61" in card.text


def test_card_declares_language_features_and_split_sizes_and_describes_every_column(
    built: Any, tmp_path: Path
) -> None:
    from factory.dataset.card import _DESCRIPTIONS
    from factory.dataset.rows import SCHEMAS

    run, config, tables = built
    counts = write_dataset(run, config, tables, {})
    folder = run.root / "dataset"
    card = DatasetCard.load(folder / "README.md")
    assert card.data.language == ["en"]
    infos = {info["config_name"]: info for info in card.data.dataset_info}
    assert sorted(infos) == ["dpo", "kto", "mapl_intra"]
    for name, info in infos.items():
        assert {s["name"]: s["num_examples"] for s in info["splits"]} == {
            s: counts[f"{name}_{s}"] for s in ("train", "test")
        }
        assert [f["name"] for f in info["features"]] == list(SCHEMAS[name])
        # The card's column prose names every column of the config.
        assert [c for c in SCHEMAS[name] if f"`{c}`" not in _DESCRIPTIONS[name]] == []
    # The declared features are the files' own: load_dataset casts to them without complaint.
    loaded = load_dataset(str(folder), "mapl_intra", cache_dir=str(tmp_path / "hf"))
    assert loaded["train"][0]["response"][0]["role"] == "assistant"
    assert {s: len(d) for s, d in loaded.items()} == {s: counts[f"mapl_intra_{s}"] for s in ("train", "test")}


def test_card_rounds_gate_figures(built: Any) -> None:
    run, config, tables = built
    gate = {
        "enabled": True,
        "passed": False,
        "judge_setting": "judge[bad]/combined10/fixed",
        "figures": {"kappa": 0.042553191489361764, "flip_rate": 0.3333333333333333},
        "checks": [
            {
                "name": "min_kappa",
                "value": 0.042553191489361764,
                "threshold": 0.4,
                "passed": False,
                "note": None,
            }
        ],
    }
    write_dataset(run, config, tables, {"gate": gate})
    text = DatasetCard.load(run.root / "dataset" / "README.md").text
    assert "0.0425531" not in text and "0.33333" not in text
    assert "kappa=0.043" in text and "flip_rate=0.333" in text
    assert "| min_kappa | 0.043 | >= 0.4 | FAIL |" in text


def test_builds_with_equal_counts_load_as_themselves_from_one_cache(built: Any, tmp_path: Path) -> None:
    from factory.dataset.card import config_patterns, data_fingerprint, declared_fingerprint

    run, config, tables = built
    other = RunFolder.create(tmp_path, "unit")  # beside `run`: both folders are `<run>/dataset`
    retold = {**tables, "pairs": tables["pairs"].with_columns(pl.col("rationale") + " Retold.")}
    assert write_dataset(run, config, tables, {}) == write_dataset(other, config, retold, {})
    cache = str(tmp_path / "shared-hf-cache")
    for written in (run, other, run):  # run again, after other's rows are in the cache
        loaded = load_dataset(str(written.root / "dataset"), "dpo", cache_dir=cache)
        assert {s: sorted(d["rationale"]) for s, d in loaded.items()} == {
            s: sorted(f["rationale"].to_list()) for s, f in read(written, "dpo").items()
        }
    assert (
        read(run, "dpo")["train"]["rationale"].to_list() != read(other, "dpo")["train"]["rationale"].to_list()
    )
    cards = [DatasetCard.load(written.root / "dataset" / "README.md") for written in (run, other)]
    declared = [declared_fingerprint(card.data.configs[0]["description"]) for card in cards]
    assert declared[0] == data_fingerprint(run.root / "dataset", config_patterns("dpo", ["train", "test"]))
    assert declared[0] != declared[1]


def test_rewrite_keeps_other_steps_files(built: Any) -> None:
    run, config, tables = built
    write_dataset(run, config, tables, {})
    (run.root / "dataset" / "agreement.json").write_text("{}")
    write_dataset(run, config, {**tables, "mapl_intra": pl.DataFrame()}, {})
    assert (run.root / "dataset" / "agreement.json").read_text() == "{}"
    assert not (run.root / "dataset" / "mapl_intra").exists()  # no rows, no folder, no config
    assert [c["config_name"] for c in DatasetCard.load(run.root / "dataset" / "README.md").data.configs] == [
        "dpo",
        "kto",
    ]
    assert not list(run.root.glob(".dataset*"))  # no temporary folders left behind


def test_split_is_seeded_and_never_leaves_a_side_empty() -> None:
    ids = [f"p{i}" for i in range(20)]
    assert split_test_prompts(ids, 0.25, 0) == split_test_prompts(reversed(ids), 0.25, 0)
    assert len(split_test_prompts(ids, 0.25, 0)) == 5
    assert split_test_prompts(ids, 0.25, 0) != split_test_prompts(ids, 0.25, 1)
    assert len(split_test_prompts(["a", "b"], 0.1, 0)) == 1 and split_test_prompts(["a"], 0.5, 0) == set()
    assert split_test_prompts(ids, 0.0, 0) == set()


def test_a_build_against_the_fake_server_writes_counts_that_match_the_files(tmp_path: Path) -> None:
    from factory.pipeline import run_build
    from factory.testing import FakeLLMServer

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"Explain topic {i} simply."}) + "\n" for i in range(6))
    )
    with FakeLLMServer() as server:
        spec = {"model": "openai/fake", "api_base": server.base_url}
        config = parse_config(
            {
                "run": {"output_dir": str(tmp_path / "out"), "shard_size": 3},
                "models": {"generator": spec, "judge": spec, "rationale_writer": spec},
                "prompts": {"path": str(prompts)},
                "gate": {"enabled": False},
                "generation": {"workflows": [{"kind": "single", "samples": 3}]},
                "dataset": {"test_fraction": 0.34},
            }
        )
        result = run_build(config)
    run, counts = result.run_dir, result.manifest["counts"]
    assert counts["pairs"] == pl.read_parquet(run / "pairs.parquet").height > 0
    assert counts["mapl_intra"] == pl.read_parquet(run / "mapl_intra.parquet").height
    for name in ("dpo", "kto", "mapl_intra"):
        for path in (run / "dataset" / name).glob("*.parquet"):
            assert pl.read_parquet(path).height == counts["dataset"][f"{name}_{path.name.split('-')[0]}"]
    pairs = pl.read_parquet(run / "pairs.parquet")
    assert all(r.strip() for r in pairs["rationale"])  # judged by the writer, MAPL by the checkers
    assert set(pairs["source"]) == {"judged", "mapl_inter"}
