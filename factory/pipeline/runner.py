"""Run a build: prompts in, shards through the stages, tables and manifest out.

Prompts are cut into shards. Each prompt of a shard goes through the stages on its own (no barrier
between stages, see `factory.pipeline.shard`), and every stage writes its shard file atomically
once the shard's prompts are through it; a shard file that exists is finished. Resuming a run
therefore skips finished shard stages, and the gateway's request cache answers every model call that completed
before an interruption, so nothing that was paid for is paid again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.config import BuildConfig, dump_config, load_config
from factory.llm import Gateway
from factory.pipeline import stages
from factory.pipeline.context import BuildContext
from factory.pipeline.finalize import finalize
from factory.pipeline.shard import STOPPING_REASONS, BuildStopped, run_shard
from factory.run_folder import RunFolder, atomic_write_parquet, atomic_write_text, rows_frame
from factory.sources import Prompt, RejectedPrompt, load_prompts

# Failures that may pass: a resume redoes the shards that recorded one (finished calls come from the cache).
_RETRY_ON_RESUME = (*STOPPING_REASONS, "ProviderError", "RateLimitError", "LLMTimeoutError")


@dataclass
class BuildResult:
    run_dir: Path
    manifest: dict[str, Any]


def _shards(prompts: list[Prompt], size: int) -> list[list[Prompt]]:
    return [prompts[i:i + size] for i in range(0, len(prompts), size)]


async def process_shard(ctx: BuildContext, shard: int, prompts: list[Prompt],
                        slots: asyncio.Semaphore | None = None) -> int:
    """All stages of one shard, each prompt streamed through them (see `factory.pipeline.shard`);
    returns the shard's accepted judged pairs. `slots` bounds the prompts in flight; shards given
    the same `slots` share the bound (default: `run.concurrency` prompts for this shard alone)."""
    return await run_shard(ctx, shard, prompts, slots or asyncio.Semaphore(ctx.config.run.concurrency))


async def run_shards(ctx: BuildContext, shards: list[list[Prompt]], parallel_shards: int = 2) -> str | None:
    """Process shards in order, up to `parallel_shards` at once, their prompts sharing
    `parallel_shards * run.concurrency` prompt slots. Returns the reason the build stopped early, or None.

    The slots are shared and handed out first come, first served, so the next shard's prompts take
    over the slots as the current shard's last prompts finish: the gateway sees a steady stream of
    calls instead of a dip at every shard's end. A shard waits for the one before it to finish
    only when more than `parallel_shards` would be open (bounded memory).

    With `pairs.target_pairs`, shards start in order and no new shard starts once the accepted
    judged pairs reach the target; shards already running finish, so the build may overshoot by
    up to `parallel_shards - 1` shards. A budget still stops the build first if it runs out."""
    open_shards = asyncio.Semaphore(parallel_shards)
    slots = asyncio.Semaphore(parallel_shards * ctx.config.run.concurrency)
    stopped: list[str] = []
    target = ctx.config.pairs.target_pairs
    accepted = 0

    async def guarded(index: int, prompts: list[Prompt]) -> None:
        nonlocal accepted
        async with open_shards:
            if stopped or (target is not None and accepted >= target):
                return
            try:
                accepted += await process_shard(ctx, index, prompts, slots)
            except BuildStopped as exc:
                stopped.append(str(exc))

    await asyncio.gather(*(guarded(i, p) for i, p in enumerate(shards)))
    return stopped[0] if stopped else None


def prepare_run(config: BuildConfig | None, resume_dir: str | Path | None) -> tuple[BuildConfig, RunFolder]:
    """A new run folder with the resolved config saved, or an existing one to resume."""
    if resume_dir is not None:
        run = RunFolder.open(resume_dir)
        run.prepare_resume(_RETRY_ON_RESUME)
        return load_config(run.config_path), run
    assert config is not None
    run = RunFolder.create(config.run.output_dir, config.run.name)
    atomic_write_text(run.config_path, dump_config(config))
    return config, run


# The steps of `run_build` before and around the shards, public so that the Prefect flow
# (flows/build.py) runs the very same pipeline: prepare_run -> load_build_prompts ->
# write_prompts_table -> process_shard per shard -> finalize.
def load_build_prompts(config: BuildConfig) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """The build's usable prompts and the rejected ones (empty, too long), as the config names them."""
    return load_prompts(path=config.prompts.path, name=config.prompts.name, id_field=config.prompts.id_field,
                        text_field=config.prompts.text_field, limit=config.prompts.limit,
                        max_chars=config.prompts.max_chars)


def write_prompts_table(run: RunFolder, prompts: list[Prompt], rejected: list[RejectedPrompt]) -> None:
    """prompts.parquet: every prompt of the run, rejects with their reason."""
    prompt_rows = [p.to_row() | {"rejected_reason": None} for p in prompts]
    prompt_rows += [{"prompt_id": r.item_id, "turns": [], "source": "", "rejected_reason": r.reason} for r in rejected]
    atomic_write_parquet(run.table("prompts"), rows_frame(prompt_rows))


def loading_failures(rejected: list[RejectedPrompt]) -> list[dict[str, Any]]:
    """Failure rows (stage `load`) for prompts rejected while loading."""
    return [stages.failure(r.item_id, "load", r.reason, r.raw) for r in rejected]


def shard_prompts(prompts: list[Prompt], size: int) -> list[list[Prompt]]:
    """Prompts cut into shards of `size`, in order; shard N is the same in every engine."""
    return _shards(prompts, size)


def run_build(config: BuildConfig | None = None, *, resume_dir: str | Path | None = None,
              progress: Callable[[str, int], None] | None = None,
              on_start: Callable[[RunFolder, int], None] | None = None) -> BuildResult:
    """Run (or resume) a build and return its run folder and manifest."""
    config, run = prepare_run(config, resume_dir)
    prompts, rejected = load_build_prompts(config)
    write_prompts_table(run, prompts, rejected)
    if on_start:
        on_start(run, len(prompts))
    gateway = Gateway(config.models, config.gateway, cache_path=run.cache_path, budget=config.budget,
                      seed=config.run.seed, budget_includes_cache=True)
    ctx = BuildContext(config=config, run=run, gateway=gateway, on_progress=progress or (lambda s, n: None))
    try:
        stopped = asyncio.run(run_shards(ctx, _shards(prompts, config.run.shard_size)))
        manifest = finalize(ctx, loading_failures(rejected), stopped)
    finally:
        gateway.close()
    return BuildResult(run.root, manifest)
