"""A real build on the embedded SmolLM2 model: DPO / KTO datasets that load back, rationales on every
pair, MAPL rows whose labels all re-verify (slow on CPU: `pytest -m embedded`)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from datasets import load_dataset, load_from_disk

from factory.config import parse_config
from factory.dataset.rows import reverify_dataset_row
from factory.mapl import reverify
from factory.pipeline import run_build

pytestmark = pytest.mark.embedded

PROMPTS = ["Name three fruits.", "What is the capital of France?", "Give one tip for sleeping well."]


def test_embedded_build_writes_trl_datasets(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS))
    )
    local = {"model": "local/smollm2", "max_tokens": 40}
    config = parse_config(
        {
            "run": {"name": "embedded", "output_dir": str(tmp_path / "out"), "seed": 3, "shard_size": 2},
            "models": {
                "generator": {**local, "temperature": 0.9},
                "judge": {**local, "temperature": 0.0, "max_tokens": 96},
                "rationale_writer": {**local, "temperature": 0.3, "max_tokens": 48},
            },
            "prompts": {"path": str(prompts)},
            "generation": {"workflows": [{"kind": "single", "samples": 2}]},
            "judging": {"setting": {"models": ["judge"], "protocol": "combined", "structured": True}},
            "pairs": {"keep_ties": True},  # a 135M judge calls many ties; keep them so the build has pairs
            "dataset": {"test_fraction": 0.34},
            "gate": {"enabled": False},
        }
    )
    result = run_build(config)
    run, counts = result.run_dir, result.manifest["counts"]
    assert result.manifest["status"] == "complete"
    data = counts["dataset"]
    assert data["dpo_train"] + data["dpo_test"] > 0 and data["kto_train"] + data["kto_test"] > 0

    saved = load_from_disk(str(run / "dataset_dict"))
    assert sum(len(d) for d in saved.values()) == data["dpo_train"] + data["dpo_test"]
    for name in ("dpo", "kto"):
        files = {p.name.split("-")[0]: str(p) for p in (run / "dataset" / name).glob("*.parquet")}
        loaded = load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
        assert {s: len(d) for s, d in loaded.items()} == {s: data[f"{name}_{s}"] for s in files}

    # Rationales on every pair: judged pairs were written by the model; a pair without one is a failure.
    pairs = pl.read_parquet(run / "pairs.parquet")
    judged = pairs.filter(pl.col("source") == "judged")
    assert judged.height > 0 and all(r and r.strip() for r in judged["rationale"])
    failures = pl.read_parquet(run / "failures.parquet")
    selected = sum(pl.read_parquet(p).height for p in (run / "stages" / "pairs").glob("shard-?????.parquet"))
    assert selected == judged.height + failures.filter(pl.col("stage") == "rationales").height
    dpo = pl.concat([pl.read_parquet(p) for p in (run / "dataset" / "dpo").glob("*.parquet")])
    assert all(r and r.strip() for r in dpo["rationale"])

    # MAPL rows: every label re-verified by the checkers, in the run tables and as published.
    inter = pairs.filter(pl.col("source") == "mapl_inter")
    intra = pl.read_parquet(run / "mapl_intra.parquet")
    assert inter.height + intra.height > 0
    assert all(reverify(r) for r in inter.iter_rows(named=True))
    assert all(reverify(r) for r in intra.iter_rows(named=True))
    published = dpo.filter(pl.col("source") == "mapl_inter").to_dicts()
    intra_files = list((run / "dataset" / "mapl_intra").glob("*.parquet"))
    published += pl.concat([pl.read_parquet(p) for p in intra_files]).to_dicts() if intra_files else []
    assert all(reverify_dataset_row(r) for r in published)
