"""The end of a build: the run's tables merged from its shard files, the quality gate, the dataset
and the manifest. Every step streams from the files on disk, so finalizing a build holds a shard's
worth of rows at a time whatever the number of prompts."""

from __future__ import annotations

from typing import Any

import polars as pl

from factory._util.atomic_files import atomic_write_json
from factory.dataset.review_queue import apply_reviews, reviewed_sources
from factory.dataset.review_queue import gate_figures as review_gate_figures
from factory.dataset.shard_parts import DatasetSources
from factory.dataset.writer import write_dataset
from factory.pipeline.context import BuildContext
from factory.pipeline.cost_report import accepted_pairs, run_cost
from factory.pipeline.finalize.manifest import build_manifest, merge_usage, settle_outcome
from factory.pipeline.finalize.prefetch import wait_for_prefetch
from factory.pipeline.finalize.stage_figures import stage_figures
from factory.records import BuildStop, Failure, Manifest
from factory.run.folder import RunFolder
from factory.run.tables import merge_tables

# The judgments the gate measures (jury votes; both-order verdicts) and the columns it reads.
_GATE_COLUMNS = ("kind", "order", "votes", "models")


def gate_judgments(run: RunFolder) -> pl.DataFrame:
    """The rows of judgments.parquet the quality gate reads, not the whole table."""
    scan = pl.scan_parquet(run.table("judgments"))
    names = scan.collect_schema().names()
    wanted = [pl.col(c) == v for c, v in (("kind", "jury"), ("order", "both")) if c in names]
    if not wanted:
        return pl.DataFrame(schema={c: pl.Utf8 for c in _GATE_COLUMNS if c in names})
    return scan.filter(pl.any_horizontal(wanted)).select([c for c in _GATE_COLUMNS if c in names]).collect()


def finalize(
    ctx: BuildContext,
    loading_failures: list[Failure],
    stopped: BuildStop | None,
    other_usage: list[dict[str, Any]] | None = None,
) -> Manifest:
    """Merge shard files into the run's tables, write the dataset, decide the outcome and write the
    manifest (the only place it is written). `other_usage`: the usage of worker processes whose calls
    are not in this process's gateway (Dask workers), added to the manifest's `llm`."""
    wait_for_prefetch()  # before anything here imports `datasets` (see prefetch.py)
    from factory.pipeline.finalize.gate import run_gate

    run = ctx.run
    rows = merge_tables(run, loading_failures)
    ctx.progress.finalize_step("tables")
    # Contested pairs to the review queue; people's labels (human_labels.jsonl) applied to the pairs.
    review, decided = apply_reviews(run, ctx.config.review)
    rows["pairs"] = pl.scan_parquet(run.table("pairs")).select(pl.len()).collect().item()
    # The gate writes agreement.json + report.html (also into dataset/, which the dataset writer keeps).
    gate = run_gate(ctx, {"judgments": gate_judgments(run)})
    gate["figures"].update(review_gate_figures(review))
    ctx.progress.finalize_step("gate")
    usage = merge_usage(ctx.gateway.usage.snapshot(), other_usage or [])  # after the gate: its calls count
    manifest = build_manifest(ctx, rows, stopped, usage=usage, gate=gate)
    manifest["stages"] = stage_figures(run, ctx.config, usage)
    manifest["review"] = review
    # The dataset card quotes the manifest (gate figures), and the manifest counts the dataset's rows.
    sources = reviewed_sources(DatasetSources.from_run(run), decided)
    manifest["counts"]["dataset"] = write_dataset(run, ctx.config, sources, manifest)
    ctx.progress.finalize_step("dataset")
    manifest["counts"]["mapl_intra"] = rows["mapl_intra"]
    if ctx.config.pairs.target_pairs is not None:
        pairs = pl.scan_parquet(run.table("pairs"))
        judged = (
            pairs.filter(pl.col("source") == "judged").select(pl.len()).collect().item()
            if "source" in pairs.collect_schema().names()
            else 0
        )
        manifest["target_pairs"] = {
            "target": ctx.config.pairs.target_pairs,
            "accepted": judged,
            "reached": judged >= ctx.config.pairs.target_pairs,
        }
    # The whole run's cost (every invocation, every worker), from the ledger in its cache files.
    manifest["cost"] = run_cost(run, accepted=accepted_pairs(run))
    settle_outcome(ctx, manifest, _failure_reasons(run))
    atomic_write_json(run.manifest_path, manifest)
    ctx.progress.finalize_step("manifest")
    return manifest


def _failure_reasons(run: RunFolder) -> list[str]:
    """The reason of every failure row, in table order (the last one is the latest)."""
    table = run.table("failures")
    if not table.is_file():
        return []
    return [r or "" for r in pl.read_parquet(table, columns=["reason"])["reason"].to_list()]
