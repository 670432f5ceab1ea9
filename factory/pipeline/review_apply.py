"""`factory annotate RUN --apply`: rebuild a finished run's pairs and dataset from people's labels.

Why a command of its own rather than `factory build --resume RUN`: a resume goes on with whatever
the run has left to do (a stopped build calls models again) and re-runs the quality gate through the
gateway, so it is only free when every call is in the cache. Applying labels must never cost a call,
so this redoes only the end of a build from the files on disk: the tables merged from the shard
files, the review queue and the labels (`factory.dataset.review_queue.apply_reviews`), the dataset and card, and
the manifest. The gate is not re-measured: its human-set figures stay as the build measured them
(the judge did not change), and the figures from the run's own labels are updated.

A later `factory build --resume RUN` applies the same labels in the same way, so both paths give
the same dataset.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import polars as pl

from factory._util.atomic_files import atomic_write_json
from factory._util.errors import UserError
from factory.config import load_config
from factory.dataset.review_queue import apply_reviews, gate_figures, reviewed_sources
from factory.dataset.shard_parts import DatasetSources
from factory.dataset.writer import write_dataset
from factory.llm import Gateway
from factory.pipeline.context import BuildContext
from factory.pipeline.finalize.finalize_run import _failure_reasons
from factory.pipeline.finalize.manifest import settle_outcome
from factory.pipeline.runner import loading_failures
from factory.records import Manifest
from factory.run.folder import RunFolder
from factory.run.recorded_inputs import recorded_prompts
from factory.run.tables import merge_tables


def apply_labels(run_dir: Path) -> Manifest:
    """Re-finalize `run_dir` with its `human_labels.jsonl`; returns the new manifest. Calls no model."""
    run = RunFolder.open(run_dir)
    if not run.manifest_path.is_file():
        raise UserError(
            f"{run_dir} has no manifest.json: finish the build first (factory build --resume {run_dir})"
        )
    with run.lock():
        config = load_config(run.config_path)
        manifest: Manifest = json.loads(run.manifest_path.read_text(encoding="utf-8"))
        recorded = recorded_prompts(run)
        rows = merge_tables(run, loading_failures(recorded[1] if recorded else []))
        review, decided = apply_reviews(run, config.review)
        review["applied_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        rows["pairs"] = pl.scan_parquet(run.table("pairs")).select(pl.len()).collect().item()
        counts = manifest["counts"]
        counts["candidates"], counts["judgments"] = rows["candidates"], rows["judgments"]
        counts["pairs"], counts["failures"] = rows["pairs"], rows["failures"]
        manifest["review"] = review
        gate = manifest.get("gate")
        if isinstance(gate, dict):
            figures = {k: v for k, v in (gate.get("figures") or {}).items() if not k.startswith("review_")}
            gate["figures"] = {**figures, **gate_figures(review)}
        sources = reviewed_sources(DatasetSources.from_run(run), decided)
        manifest["counts"]["dataset"] = write_dataset(run, config, sources, manifest)
        manifest["counts"]["mapl_intra"] = rows["mapl_intra"]
        # settle_outcome reads the config and the run folder only: no gateway exists, so none can be called
        ctx = BuildContext(config=config, run=run, gateway=cast(Gateway, None))
        settle_outcome(ctx, manifest, _failure_reasons(run))
        atomic_write_json(run.manifest_path, manifest)
    return manifest


def summary_line(manifest: Manifest) -> str:
    """One line for the terminal: what the labels did to the dataset."""
    r = manifest.get("review") or {}
    dpo = sum(v for k, v in (manifest["counts"].get("dataset") or {}).items() if k.startswith("dpo_"))
    return (
        f"applied {r.get('reviewed', 0)} reviewed pairs ({r.get('reviewed_in_queue', 0)} of {r.get('queued', 0)} "
        f"queued): {r.get('kept', 0)} kept, {r.get('flipped', 0)} flipped, {r.get('dropped', 0)} dropped; "
        f"{manifest['counts']['pairs']} pairs, {dpo} DPO rows; no model was called"
    )
