"""Run a build: prompts in, shards through the stages, tables and manifest out.

Both engines run the same steps, from this module:

    lock -> plan_build (run folder, its prompts, shards) -> shards -> salvage rounds -> finalize

`run_build` runs them in this process; the Prefect flow (`flows/build.py`) runs the very same
functions with one task per shard. Prompts are cut into shards. Each prompt of a shard goes
through the stages on its own (no barrier between stages, see `factory.pipeline.shard`), and every
stage writes its shard file atomically once the shard's prompts are through it; a shard file that
exists is finished. Resuming a run therefore skips finished shard stages, and the gateway's request
cache answers every model call that completed before an interruption, so nothing that was paid for
is paid again.

The run folder owns its inputs: `prompts.parquet` is written once, when the run starts, and a
resume reads the prompts from it, never again from the prompt source (which may have changed).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory._util import interrupts
from factory._util.atomic_files import atomic_write_text
from factory._util.gc_settings import long_lived_heap
from factory.config import BuildConfig, dump_config, load_config
from factory.inputs.prompt_sources import Prompt, RejectedPrompt
from factory.pipeline.build_gateway import build_gateway, with_shared_cache_dir
from factory.pipeline.context import BuildContext
from factory.pipeline.cost_report import save_estimate
from factory.pipeline.finalize.interrupted import record_interrupt
from factory.pipeline.finalize.prefetch import prefetch_finalize_imports, wait_for_prefetch
from factory.pipeline.outcome import STOPPING_REASONS, transient_reasons
from factory.pipeline.progress import BuildProgress
from factory.pipeline.shard import BuildStopped, run_shard
from factory.pipeline.stages import per_prompt as stages
from factory.records import BuildStop, Failure, Manifest
from factory.run.folder import RunFolder
from factory.run.incremental import built_fingerprints, dataset_home, select_new_prompts
from factory.run.lock import RunLock
from factory.run.recorded_inputs import load_build_prompts, run_prompts, write_prompts_table

__all__ = [
    "BuildPlan",
    "BuildResult",
    "BuildStopped",
    "finalize",
    "load_build_prompts",
    "lock_for_build",
    "plan_build",
    "process_shard",
    "run_build",
    "salvage_delays",
    "shards_to_salvage",
]


@dataclass
class BuildResult:
    run_dir: Path
    manifest: Manifest


@dataclass(frozen=True)
class BuildPlan:
    """What a build runs, as plain data (picklable for Prefect tasks on Dask workers)."""

    run_dir: str
    shards: list[list[Prompt]]
    loading_failures: list[Failure]
    new_prompts: int
    skipped_prompts: int | None = None
    incremental: bool = False
    dataset_home: str | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


def loading_failures(rejected: list[RejectedPrompt]) -> list[Failure]:
    """Failure rows (stage `load`) for prompts rejected while loading."""
    return [stages.failure(r.item_id, "load", r.reason, r.raw) for r in rejected]


def shard_prompts(prompts: list[Prompt], size: int) -> list[list[Prompt]]:
    """Prompts cut into shards of `size`, in order; shard N is the same in every engine."""
    return [prompts[i : i + size] for i in range(0, len(prompts), size)]


def lock_for_build(resume_dir: str | Path | None) -> RunLock | None:
    """Hold the run folder being resumed before anything in it is read or written (a new build's
    folder is locked as soon as it exists, by `plan_build`'s caller)."""
    return RunFolder.open(resume_dir).lock() if resume_dir is not None else None


def plan_build(
    config: BuildConfig | None, resume_dir: str | Path | None, *, incremental: bool = False
) -> tuple[BuildConfig, BuildPlan] | None:
    """Open the run folder (or create one with the resolved config saved) and cut its prompts into
    shards. A resume reopens the shards that recorded a failure that may pass (stops, transient
    errors) and works on the run's recorded prompts.

    `incremental` (a new build only): only prompts not built by an earlier finished build of the same
    dataset name, in a run folder under `<output_dir>/<name>/`; None when there is nothing new."""
    skipped: int | None = None
    home: Path | None = None
    if resume_dir is not None:
        run = RunFolder.open_for_resume(resume_dir)
        run.drop_temporary_files()
        run.reopen_shards((*STOPPING_REASONS, *transient_reasons()))
        config = load_config(run.config_path)
        prompts, rejected = run_prompts(run, config)
        home = run.root.parent if incremental else None
    else:
        assert config is not None
        if incremental:
            # Versions of a dataset live together: outputs/<name>/<run_id>/ + outputs/<name>/versions.json.
            home = dataset_home(config.run.output_dir, config.run.name)
            prompts, rejected = load_build_prompts(config)
            prompts, skipped = select_new_prompts(
                prompts, built_fingerprints(config.run.output_dir, config.run.name)
            )
            if not prompts:
                return None
            config = config.model_copy(
                update={"run": config.run.model_copy(update={"output_dir": str(home)})}
            )
        run = RunFolder.create(config.run.output_dir, config.run.name)
        config = with_shared_cache_dir(config)
        atomic_write_text(run.config_path, dump_config(config))
        if incremental:
            write_prompts_table(run, prompts, rejected)
        else:
            prompts, rejected = run_prompts(run, config)
        save_estimate(run, config, prompts, len(rejected))  # shown beside the actual cost by finalize
    plan = BuildPlan(
        run_dir=str(run.root),
        shards=shard_prompts(prompts, config.run.shard_size),
        loading_failures=loading_failures(rejected),
        new_prompts=len(prompts),
        skipped_prompts=skipped,
        incremental=incremental,
        dataset_home=str(home) if home else None,
    )
    return config, plan


def finalize(
    ctx: BuildContext,
    loading_failures: list[Failure],
    stopped: BuildStop | None,
    other_usage: list[dict[str, Any]] | None = None,
) -> Manifest:
    """The run's tables, dataset, gate and manifest (`finalize/finalize_run.py`).

    Imported on first use: the dataset writer pulls in pyarrow's parquet module (about 0.1 s, more on
    a busy machine), which the build does not need before its first model call. The prefetch thread
    may be importing the same modules at this moment, hence the wait first (see prefetch.py)."""
    wait_for_prefetch()
    from factory.pipeline.finalize.finalize_run import finalize as finalize_run

    return finalize_run(ctx, loading_failures, stopped, other_usage)


def salvage_delays(config: BuildConfig) -> list[float]:
    """The waits before each salvage round: `run.salvage_backoff_s`, doubling, `run.salvage_rounds` of them."""
    return [config.run.salvage_backoff_s * 2**i for i in range(config.run.salvage_rounds)]


def shards_to_salvage(run: RunFolder, plan: BuildPlan) -> list[int]:
    """Reopen the plan's shards that recorded a transient failure (rate limit, 5xx, timeout, empty
    reply) and return them: a salvage round runs them again, the cache answering what had finished."""
    return run.reopen_shards(transient_reasons(), only=set(range(len(plan.shards))))


async def process_shard(
    ctx: BuildContext, shard: int, prompts: list[Prompt], slots: asyncio.Semaphore | None = None
) -> int:
    """All stages of one shard, each prompt streamed through them (see `factory.pipeline.shard`);
    returns the shard's accepted judged pairs. `slots` bounds the prompts in flight; shards given
    the same `slots` share the bound (default: `run.concurrency` prompts for this shard alone)."""
    return await run_shard(ctx, shard, prompts, slots or asyncio.Semaphore(ctx.config.run.concurrency))


async def run_shards(
    ctx: BuildContext, shards: list[tuple[int, list[Prompt]]], parallel_shards: int = 2
) -> BuildStop | None:
    """Process `(index, prompts)` shards in order, up to `parallel_shards` at once, their prompts sharing
    `parallel_shards * run.concurrency` prompt slots. Returns what stopped the build early, or None.

    The slots are shared and handed out first come, first served, so the next shard's prompts take
    over the slots as the current shard's last prompts finish: the gateway sees a steady stream of
    calls instead of a dip at every shard's end. A shard waits for the one before it to finish
    only when more than `parallel_shards` would be open (bounded memory).

    With `pairs.target_pairs`, shards start in order and no new shard starts once the accepted
    judged pairs reach the target; shards already running finish, so the build may overshoot by
    up to `parallel_shards - 1` shards. A budget still stops the build first if it runs out."""
    open_shards = asyncio.Semaphore(parallel_shards)
    slots = asyncio.Semaphore(parallel_shards * ctx.config.run.concurrency)
    stopped: list[BuildStop] = []
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
                stopped.append(exc.stop)

    await asyncio.gather(*(guarded(i, p) for i, p in shards))
    return stopped[0] if stopped else None


async def _run_with_salvage(ctx: BuildContext, plan: BuildPlan) -> BuildStop | None:
    # Once the first calls are out, the wait on them hides finalize's imports (prefetch.py).
    asyncio.get_running_loop().call_later(0.5, prefetch_finalize_imports)
    stopped = await run_shards(ctx, list(enumerate(plan.shards)))
    for delay in salvage_delays(ctx.config):
        if stopped is not None:
            break
        reopened = shards_to_salvage(ctx.run, plan)
        if not reopened:
            break
        await asyncio.sleep(delay)
        stopped = await run_shards(ctx, [(i, plan.shards[i]) for i in reopened])
    return stopped


def run_build(
    config: BuildConfig | None = None,
    *,
    resume_dir: str | Path | None = None,
    progress: BuildProgress | None = None,
    on_start: Callable[[RunFolder, int], None] | None = None,
) -> BuildResult:
    """Run (or resume) a build in this process and return its run folder and manifest.

    `progress` is fed as the build goes (see `factory.pipeline.progress`). Raises `BuildInterrupted`
    after `factory._util.interrupts.request()` (Ctrl-C in the CLI): the shards and the gate are cancelled,
    finalize is skipped, and the manifest says `stopped` / `interrupted`."""
    progress = progress or BuildProgress()
    lock = lock_for_build(resume_dir)
    try:
        planned = plan_build(config, resume_dir)
        assert planned is not None  # only incremental plans come back empty
        config, plan = planned
        run = RunFolder(Path(plan.run_dir))
        lock = lock or run.lock()
        gateway = build_gateway(config, run.cache_path, plan.token)
        progress.start(run.root, plan.new_prompts, usage=gateway.usage.snapshot)
        if on_start:
            on_start(run, plan.new_prompts)
        ctx = BuildContext(config=config, run=run, gateway=gateway, progress=progress)
        try:
            with long_lived_heap():
                stopped = asyncio.run(interrupts.stoppable(_run_with_salvage(ctx, plan)))
                manifest = finalize(ctx, plan.loading_failures, stopped)
        except (*interrupts.CANCELLED, KeyboardInterrupt):
            if not interrupts.requested():
                raise
            raise record_interrupt(run, config, progress, gateway.usage.snapshot()) from None
        finally:
            gateway.close()
    finally:
        if lock is not None:
            lock.release()
    return BuildResult(run.root, manifest)
