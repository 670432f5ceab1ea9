"""Run a build: prompts in, shards through the stages, tables and manifest out.

Prompts are cut into shards. Each shard goes through the stages in order and every stage writes
its shard file atomically; a shard file that exists is finished. Resuming a run therefore skips
finished shard stages, and the gateway's request cache answers every model call that completed
before an interruption, so nothing that was paid for is paid again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from factory.config import BuildConfig, dump_config, load_config
from factory.llm import Gateway
from factory.pipeline import stages
from factory.pipeline.context import BuildContext
from factory.pipeline.manifest import write_manifest
from factory.run_folder import RunFolder, atomic_write_parquet, atomic_write_text, failures_frame, rows_frame
from factory.sources import Prompt, load_prompts

# Columns stored as JSON strings in parquet that stages read back as Python values.
_JSON_COLUMNS = ("answers", "history", "reviewer_scores", "models", "turns")
# Failures that mean "stop the build", not "this item is bad": the shard stays unfinished for --resume.
_STOPPING_REASONS = ("BudgetExceededError", "CircuitOpenError")

StageFn = Callable[..., Awaitable[tuple[list[dict[str, Any]], list[dict[str, Any]]]]]


@dataclass
class BuildResult:
    run_dir: Path
    manifest: dict[str, Any]


class BuildStopped(Exception):
    """A budget or an open circuit stopped the build; finished shards are kept."""


def _decode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for col in _JSON_COLUMNS:
            if isinstance(row.get(col), str):
                row[col] = json.loads(row[col])
    return rows


def _shards(prompts: list[Prompt], size: int) -> list[list[Prompt]]:
    return [prompts[i:i + size] for i in range(0, len(prompts), size)]


async def _run_stage(ctx: BuildContext, name: str, shard: int, fn: Callable[[], Awaitable[Any]]
                     ) -> list[dict[str, Any]]:
    """Run one stage of one shard unless its shard file exists; persist rows and failures."""
    if ctx.run.shard_done(name, shard):
        frame = pl.read_parquet(ctx.run.shard_path(name, shard))
        return _decode(frame.to_dicts())
    result = fn()
    rows, failures = (await result) if asyncio.iscoroutine(result) else result
    stopping = [f for f in failures if str(f["reason"]).startswith(_STOPPING_REASONS)]
    if stopping:
        raise BuildStopped(stopping[0]["reason"])
    ctx.run.write_shard(name, shard, rows, failures)
    return rows


async def process_shard(ctx: BuildContext, shard: int, prompts: list[Prompt]) -> None:
    """All stages of one shard, in order."""
    candidates = await _run_stage(ctx, "generate", shard, lambda: stages.generate_stage(ctx, prompts))
    judgments = await _run_stage(ctx, "judge", shard, lambda: stages.judge_stage(ctx, prompts, candidates))
    await _run_stage(ctx, "pairs", shard, lambda: stages.pairs_stage(ctx, prompts, candidates, judgments))


async def run_shards(ctx: BuildContext, shards: list[list[Prompt]], parallel_shards: int = 2) -> str | None:
    """Process shards, a few at a time so stage barriers inside one shard do not idle the gateway.
    Returns the reason the build stopped early, or None."""
    semaphore = asyncio.Semaphore(parallel_shards)
    stopped: list[str] = []

    async def guarded(index: int, prompts: list[Prompt]) -> None:
        async with semaphore:
            if stopped:
                return
            try:
                await process_shard(ctx, index, prompts)
            except BuildStopped as exc:
                stopped.append(str(exc))

    await asyncio.gather(*(guarded(i, p) for i, p in enumerate(shards)))
    return stopped[0] if stopped else None


def prepare_run(config: BuildConfig | None, resume_dir: str | Path | None) -> tuple[BuildConfig, RunFolder]:
    """A new run folder with the resolved config saved, or an existing one to resume."""
    if resume_dir is not None:
        run = RunFolder.open(resume_dir)
        return load_config(run.config_path), run
    assert config is not None
    run = RunFolder.create(config.run.output_dir, config.run.name)
    atomic_write_text(run.config_path, dump_config(config))
    return config, run


def run_build(config: BuildConfig | None = None, *, resume_dir: str | Path | None = None,
              progress: Callable[[str, int], None] | None = None,
              on_start: Callable[[RunFolder, int], None] | None = None) -> BuildResult:
    """Run (or resume) a build and return its run folder and manifest."""
    config, run = prepare_run(config, resume_dir)
    prompts, rejected = load_prompts(path=config.prompts.path, name=config.prompts.name,
                                     id_field=config.prompts.id_field, text_field=config.prompts.text_field,
                                     limit=config.prompts.limit, max_chars=config.prompts.max_chars)
    prompt_rows = [p.to_row() | {"rejected_reason": None} for p in prompts]
    prompt_rows += [{"prompt_id": r.item_id, "turns": [], "source": "", "rejected_reason": r.reason} for r in rejected]
    atomic_write_parquet(run.table("prompts"), rows_frame(prompt_rows))
    if on_start:
        on_start(run, len(prompts))
    gateway = Gateway(config.models, config.gateway, cache_path=run.cache_path, budget=config.budget,
                      seed=config.run.seed)
    ctx = BuildContext(config=config, run=run, gateway=gateway, on_progress=progress or (lambda s, n: None))
    try:
        stopped = asyncio.run(run_shards(ctx, _shards(prompts, config.run.shard_size)))
        loading_failures = [stages.failure(r.item_id, "load", r.reason, r.raw) for r in rejected]
        manifest = finalize(ctx, loading_failures, stopped)
    finally:
        gateway.close()
    return BuildResult(run.root, manifest)


def finalize(ctx: BuildContext, loading_failures: list[dict[str, Any]], stopped: str | None) -> dict[str, Any]:
    """Merge shard files into the run's tables and write the manifest."""
    run = ctx.run
    tables: dict[str, pl.DataFrame] = {}
    for stage, table in (("generate", "candidates"), ("judge", "judgments"), ("pairs", "pairs")):
        frame = run.read_stage(stage)
        tables[table] = frame if frame is not None else pl.DataFrame()
        atomic_write_parquet(run.table(table), tables[table])
    failure_frames = [failures_frame(loading_failures)]
    for stage in ("generate", "judge", "pairs"):
        frame = run.read_stage(stage, "failures")
        if frame is not None:
            failure_frames.append(frame)
    failures = pl.concat(failure_frames, how="vertical_relaxed")
    atomic_write_parquet(run.table("failures"), failures)
    tables["failures"] = failures
    return write_manifest(ctx, tables, stopped)
