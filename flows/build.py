"""The build as a Prefect flow: prepare, one task per shard, finalize, artifacts.

It runs the library's own pipeline (`factory.pipeline.runner`): the same prompts, shards, stage
functions and finalize as `factory build --engine local`, so both doors give the same rows. What
Prefect adds: a task per shard with retries, any task runner (threads, or Dask processes on many
machines; see `flows.runners`), schedules, and artifacts in the UI.

Tasks receive the run folder path and the shard's prompts, never live objects: a process builds
its `Gateway` from the run's `config.yaml` on first use, so a task runs the same on a thread or on
a Dask worker on another machine. Within one process, all shards of a flow run share that gateway
and one event loop, so concurrency limits, `budget` caps and usage hold across them as in
`run_build` (on Dask: per worker process; the flow adds the workers' usage into the manifest).
A rerun with `resume_dir` skips finished shard files, and the request cache answers every call
that completed before, so a failed flow resumes where it stopped.

Progress (`factory.pipeline.progress`): the flow logs a line of every stage's figures at a bounded
rate and keeps a progress artifact (`<dataset>-progress`) up to date. An interrupt
(`factory._util.interrupts.request()`, Ctrl-C in the CLI) cancels the running shards, skips the ones not
started and the finalize, writes the interrupted manifest and ends the flow run Cancelled.

Example::

    from flows.build import build_flow
    result = build_flow(config_path="examples/demo.yaml")
    result["run_dir"], result["manifest"]["counts"]
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.states import Cancelled, State

from factory._util import interrupts
from factory._util.errors import UserError
from factory.config import BuildConfig, load_config, parse_config
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway
from factory.llm.rate_limit import LimitsHub
from factory.pipeline.build_gateway import build_gateway
from factory.pipeline.context import BuildContext
from factory.pipeline.finalize.interrupted import record_interrupt
from factory.pipeline.finalize.manifest import merge_usage
from factory.pipeline.progress import BuildProgress, ProgressReporter, ProgressSnapshot
from factory.pipeline.runner import (
    BuildPlan,
    BuildStopped,
    finalize,
    lock_for_build,
    plan_build,
    process_shard,
    salvage_delays,
    shards_to_salvage,
)
from factory.records import BuildStop, Failure, Manifest
from factory.run.folder import RunFolder
from factory.run.incremental import append_version
from factory.run.output_location import url_protocol
from factory.run.remote_output import StagedOutput
from flows.artifacts import artifact_key, publish_build_artifacts

# Per process: one event loop that runs every shard coroutine, and one gateway per flow run. Shards
# that run at once (thread runner) then share the gateway's concurrency limits, budget and usage
# exactly as in `run_build`; litellm's process-wide logging worker also needs a single loop.
_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None
_GATEWAYS: dict[str, Gateway] = {}
# Per process: the progress tracker of each flow run (token) that this process runs shards of.
_PROGRESS: dict[str, BuildProgress] = {}
# Set by `caller_progress` (`run_build_flow`, in this process): the caller's tracker and line rate.
_CALLER: dict[str, Any] = {}


T = TypeVar("T")


class ShardsFailed(RuntimeError):
    """Some shard tasks failed after their retries; finished shards are kept for a rerun."""


def _host() -> str:
    return socket.gethostname()


def _worker_id() -> str:
    return f"{_host()}:{os.getpid()}"


def _serve_loop(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_forever()
    loop.close()


def _run_on_shard_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on this process's shard loop (started on first use) and wait for it."""
    global _LOOP
    with _LOCK:
        if _LOOP is None:
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_serve_loop, args=(_LOOP,), name="factory-shards", daemon=True).start()
        loop = _LOOP
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


def _gateway(config: BuildConfig, run: RunFolder, token: str, flow_host: str) -> Gateway:
    """This process's gateway for flow run `token` (built from the run's config on first use)."""
    with _LOCK:
        if token not in _GATEWAYS:
            # SQLite's WAL journal needs every writer on one host; a worker on another machine keeps
            # its own cache file in the run folder (a resume on that host finds its calls there).
            host = _host()
            cache = run.cache_path if host == flow_host else run.root / f"cache-{host}.sqlite"
            _GATEWAYS[token] = build_gateway(config, cache, token, limits_hub=_shared_limits(config, token))
        return _GATEWAYS[token]


def _shared_limits(config: BuildConfig, token: str) -> LimitsHub | None:
    """On a Dask worker, the rate limits of flow run `token`, shared by every worker of the cluster
    (`factory.llm.rate_limit_dask`); None elsewhere (the gateway's own, shared by this process's shards)."""
    if "distributed" not in sys.modules or not any(spec.rate_limited for spec in config.models.values()):
        return None
    import distributed  # already imported in a Dask worker (checked above); a multi-second import elsewhere

    try:
        distributed.get_worker()
    except ValueError:
        return None
    from factory.llm.rate_limit_dask import DaskLimits  # imports distributed

    return DaskLimits(token)


def _dask_client() -> Any:
    """The Dask client of this flow run's task runner, or None when it does not run on Dask."""
    runners = sys.modules.get("prefect_dask.task_runners")  # imported by `make_task_runner("dask")`
    context = FlowRunContext.get()
    runner = getattr(context, "task_runner", None)
    if runners is None or not isinstance(runner, runners.DaskTaskRunner):
        return None
    return runner.client  # (started on first use)


def _share_rate_limits(config: BuildConfig, token: str) -> None:
    """On Dask, start the limiter that every worker's gateway draws from (before any shard is submitted)."""
    if not any(spec.rate_limited for spec in config.models.values()):
        return
    client = _dask_client()
    if client is not None:
        from factory.llm.rate_limit_dask import create_shared_limits  # imports distributed (already loaded)

        create_shared_limits(token, client)


def _release_gateway(token: str) -> None:
    """Close flow run `token`'s gateway; stop the shard loop once no flow run in this process needs it."""
    global _LOOP
    with _LOCK:
        gateway = _GATEWAYS.pop(token, None)
        loop = _LOOP if not _GATEWAYS else None
        if loop is not None:
            _LOOP = None
    if gateway is not None:
        gateway.close()
    client = _dask_client() if "distributed" in sys.modules else None
    if client is not None:
        from factory.llm.rate_limit_dask import release_shared_limits  # imports distributed (already loaded)

        try:
            release_shared_limits(token, client)
        except Exception as exc:
            logging.getLogger(__name__).debug("rate limits of %s not released: %s", token, exc)
    if loop is not None:
        # Cancel what litellm left running (its logging worker) so that nothing is destroyed pending.
        async def cancel_the_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)


@contextmanager
def caller_progress(progress: BuildProgress | None, every_s: float) -> Iterator[None]:
    """Flow runs started in this process meanwhile feed `progress` and log it every `every_s` s."""
    _CALLER.update(progress=progress, every_s=every_s)
    try:
        yield
    finally:
        _CALLER.clear()


def _progress(token: str) -> BuildProgress:
    """The tracker of flow run `token` in this process (a Dask worker's own, handed back per shard)."""
    with _LOCK:
        return _PROGRESS.setdefault(token, BuildProgress())


def _usage(token: str) -> dict[str, Any]:
    gateway = _GATEWAYS.get(token)
    return gateway.usage.snapshot() if gateway is not None else {}


@contextmanager
def _reporting(plan: BuildPlan, config: BuildConfig) -> Iterator[BuildProgress]:
    """The flow run's tracker, its log line at a bounded rate and its progress artifact."""
    progress = _CALLER.get("progress") or BuildProgress()
    with _LOCK:
        _PROGRESS[plan.token] = progress
    progress.start(plan.run_dir, plan.new_prompts, usage=lambda: _usage(plan.token))
    logger = get_run_logger()
    artifact: list[Any] = []
    try:
        artifact.append(
            create_progress_artifact(
                0.0, key=artifact_key(config.run.name, "progress"), description=progress.snapshot().line()
            )
        )
    except Exception as exc:
        logger.debug("no progress artifact: %s", exc)

    def emit(snapshot: ProgressSnapshot) -> None:
        logger.info("progress: %s", snapshot.line())
        if artifact:
            update_progress_artifact(artifact[0], snapshot.percent, description=snapshot.line())

    try:
        with ProgressReporter(progress, emit, every_s=float(_CALLER.get("every_s") or 10.0)):
            yield progress
    finally:
        with _LOCK:
            _PROGRESS.pop(plan.token, None)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(
    config: dict[str, Any] | None, config_path: str | None, resume_dir: str | None, incremental: bool
) -> BuildPlan | None:
    """Open or create the run folder and cut its prompts into shards (`plan_build`; None: nothing new)."""
    logger = get_run_logger()
    spec: BuildConfig | None = None
    if resume_dir is None:
        spec = (
            parse_config(config, "flow parameter 'config'")
            if config is not None
            else load_config(str(config_path))
        )
    planned = plan_build(spec, resume_dir, incremental=incremental)
    if planned is None:
        assert spec is not None
        logger.info("no new prompts for %s; no new version", spec.run.name)
        return None
    spec, plan = planned
    logger.info(
        "run folder: %s (%d prompts in shards of %d)", plan.run_dir, plan.new_prompts, spec.run.shard_size
    )
    return plan


@task(
    name="shard",
    retries=2,
    retry_delay_seconds=[2, 10],
    cache_policy=NO_CACHE,
    task_run_name="shard-{index:05d}",
)
def run_shard(run_dir: str, index: int, prompts: list[Prompt], token: str, flow_host: str) -> dict[str, Any]:
    """Every stage of one shard (`process_shard`); finished stage files are skipped on a retry or rerun.

    Returns `stopped` (the reason a budget or open circuit stopped the shard, else None) and this
    process's usage totals so far, which the flow adds up across Dask workers.
    """
    run = RunFolder.open(run_dir)
    config = load_config(run.config_path)
    gateway = _gateway(config, run, token, flow_host)
    progress = _progress(token)
    ctx = BuildContext(config=config, run=run, gateway=gateway, progress=progress)
    stopped: BuildStop | None = None
    try:
        _run_on_shard_loop(interrupts.stoppable(process_shard(ctx, index, prompts)))
    except BuildStopped as exc:
        # Not a failure to retry: the run stops cleanly and `--resume` finishes it later.
        stopped = exc.stop
    except interrupts.CANCELLED:
        if not interrupts.requested():
            raise
        stopped = {"kind": "interrupted", "reason": interrupts.REASON}  # the user stopped the build
    return {
        "stopped": stopped,
        "worker": _worker_id(),
        "usage": gateway.usage.snapshot(),
        "progress": progress.marks(p.prompt_id for p in prompts),
    }


@task(name="finalize", retries=2, cache_policy=NO_CACHE)
def finalize_build(
    run_dir: str,
    failures: list[Failure],
    stopped: BuildStop | None,
    token: str,
    other_usage: list[dict[str, Any]],
) -> Manifest | None:
    """Tables, dataset, gate, outcome and manifest of the run (the library's `finalize`)."""
    run = RunFolder.open(run_dir)
    config = load_config(run.config_path)
    gateway = _gateway(config, run, token, _host())
    ctx = BuildContext(config=config, run=run, gateway=gateway, progress=_progress(token))
    try:
        return finalize(ctx, failures, stopped, other_usage)
    except interrupts.CANCELLED:
        if not interrupts.requested():
            raise
        return None  # interrupted (in the gate's judging): the flow ends the run as cancelled


def _worker_usage(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest usage of every process other than this one (a ledger only grows, so: the largest)."""
    latest: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        worker, usage = outcome["worker"], outcome["usage"]
        if worker == _worker_id():
            continue
        size = sum(usage.get(k, 0) for k in ("calls", "cache_hits", "retries", "errors"))
        if worker not in latest or size >= sum(
            latest[worker].get(k, 0) for k in ("calls", "cache_hits", "retries", "errors")
        ):
            latest[worker] = usage
    return list(latest.values())


def _run_shards(plan: BuildPlan, indices: list[int]) -> list[dict[str, Any]]:
    """Submit the given shards to the task runner; raise `ShardsFailed` once all have ended if any failed."""
    flow_host = _host()
    futures = [(i, run_shard.submit(plan.run_dir, i, plan.shards[i], plan.token, flow_host)) for i in indices]
    outcomes: list[dict[str, Any]] = []
    errors: list[str] = []
    progress = _progress(plan.token)
    for index, future in futures:
        if interrupts.requested():
            future.wrapped_future.cancel()  # type: ignore[attr-defined]  # (every runner's future has one) not started yet: it never will (running ones stop themselves)
        try:
            outcome = future.result()
        except interrupts.CANCELLED:
            continue
        except Exception as exc:
            errors.append(f"shard {index}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            continue
        if outcome["worker"] != _worker_id():
            progress.merge(outcome["progress"])  # a Dask worker's figures: not in this process's tracker
        outcomes.append(outcome)
    if interrupts.requested():
        return outcomes  # a shard failure now is the interrupt's doing, not one to report
    if errors:
        # The way out first: callers (the CLI) may cut long messages.
        raise ShardsFailed(
            f"{len(errors)} of {len(futures)} shards failed; finished shards are kept, rerun with: "
            f"factory build --resume {plan.run_dir} (or resume_dir=...); first error: {errors[0]}"
        )
    return outcomes


def _run_with_salvage(plan: BuildPlan, config: BuildConfig) -> tuple[list[dict[str, Any]], BuildStop | None]:
    """Every shard, then the salvage rounds (`factory.pipeline.runner`): shards that recorded a
    transient failure run again after a backoff. Returns every shard outcome and what stopped the build."""
    run = RunFolder(Path(plan.run_dir))
    outcomes = _run_shards(plan, list(range(len(plan.shards))))
    stopped = next((o["stopped"] for o in outcomes if o["stopped"]), None)
    for delay in salvage_delays(config):
        if stopped is not None or interrupts.requested():
            break
        reopened = shards_to_salvage(run, plan)
        if not reopened:
            break
        time.sleep(delay)
        again = _run_shards(plan, reopened)
        outcomes += again
        stopped = next((o["stopped"] for o in again if o["stopped"]), None)
    return outcomes, stopped


def _cancelled(stop: interrupts.BuildInterrupted) -> State[Any]:
    """The flow run's final state after an interrupt: Cancelled, with the way on as its message."""
    get_run_logger().warning("%s", stop.line())
    return Cancelled(message=stop.line())


@flow(name="factory-build", validate_parameters=True)
def build_flow(
    config: dict[str, Any] | None = None,
    config_path: str | None = None,
    resume_dir: str | None = None,
    incremental: bool = False,
) -> dict[str, Any]:
    """Build (or resume) a preference dataset; one task per shard.

    Give the build spec as `config` (a mapping, e.g. from a deployment) or `config_path` (YAML),
    or `resume_dir` to finish an earlier run. `incremental=True` builds only prompts not in earlier
    builds of the same dataset and records the run as a new version (see `factory.run.incremental`).
    Returns `{"run_dir", "manifest", "version", "workers"}` (`run_dir` None when there was nothing new;
    `workers`: the `host:pid` of every process that ran a shard). A storage URL as `run.output_dir`
    (`s3://bucket/datasets`) builds in a local staging folder and copies the run folder to the URL at
    the end (`factory.run.remote_output`); `run_dir` is then its URL.
    """
    if sum(x is not None for x in (config, config_path, resume_dir)) != 1:
        raise UserError("give exactly one of config, config_path or resume_dir")
    config, staged = _stage_storage_url(config, config_path)
    if staged is not None:
        config_path = None
    try:
        result = _build(config, config_path, resume_dir, incremental)
        if staged is not None and result["run_dir"] is not None:
            # Pushed whatever the outcome: a stopped or failed run is worth reading where the user looks.
            result["run_dir"] = staged.push(result["run_dir"])
            get_run_logger().info("run folder copied to %s", result["run_dir"])
        return result
    finally:
        if staged is not None:
            staged.close()


def _stage_storage_url(
    config: dict[str, Any] | None, config_path: str | None
) -> tuple[dict[str, Any] | None, StagedOutput | None]:
    """With a storage URL as `run.output_dir`: the config pointed at a local staging folder that holds the
    URL's version index, and the staging area (see `factory.run.remote_output`); else `config` as given."""
    if config is None and config_path is None:
        return config, None
    spec = (
        parse_config(config, "flow parameter 'config'")
        if config is not None
        else load_config(str(config_path))
    )
    if url_protocol(spec.run.output_dir) is None:
        return config, None
    staged = StagedOutput.open(spec.run.output_dir, spec.run.name)
    local = spec.model_copy(
        update={"run": spec.run.model_copy(update={"output_dir": str(staged.local_root)})}
    )
    return local.model_dump(mode="json"), staged


def _build(
    config: dict[str, Any] | None, config_path: str | None, resume_dir: str | None, incremental: bool
) -> dict[str, Any]:
    if interrupts.requested():
        return Cancelled(message=interrupts.BuildInterrupted(None, 0, 0).line())  # type: ignore[return-value]
    lock = lock_for_build(resume_dir)
    try:
        plan = prepare(config, config_path, resume_dir, incremental)
        if plan is None:
            return {"run_dir": None, "manifest": None, "version": None, "workers": []}
        lock = lock or RunFolder(Path(plan.run_dir)).lock()
        spec = load_config(Path(plan.run_dir) / "config.yaml")
        manifest: Manifest | None = None
        try:
            _share_rate_limits(spec, plan.token)
            with _reporting(plan, spec) as progress:
                outcomes, stopped = _run_with_salvage(plan, spec)
                if not interrupts.requested():
                    # Calls made in Dask worker processes are not in this process's ledger: finalize adds them.
                    manifest = finalize_build(
                        plan.run_dir, plan.loading_failures, stopped, plan.token, _worker_usage(outcomes)
                    )
                if manifest is None:  # interrupted: no finalize, the run folder is kept for --resume
                    usage = merge_usage(_usage(plan.token), _worker_usage(outcomes))
                    stop = record_interrupt(RunFolder(Path(plan.run_dir)), spec, progress, usage)
                    return _cancelled(stop)  # type: ignore[return-value]
        finally:
            _release_gateway(plan.token)
    finally:
        if lock is not None:
            lock.release()
    version = None
    if plan.incremental and plan.dataset_home is not None and manifest.get("status") == "complete":
        version = append_version(
            plan.dataset_home,
            plan.run_dir,
            manifest,
            new_prompts=plan.new_prompts,
            skipped=plan.skipped_prompts,
        )
    publish_build_artifacts(Path(plan.run_dir), version=version)
    return {
        "run_dir": plan.run_dir,
        "manifest": manifest,
        "version": version,
        "workers": sorted({o["worker"] for o in outcomes}),
    }
