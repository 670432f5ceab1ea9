"""Prefect flows over the library: build, calibrate, publish, train; schedules; task runners.

The library (`factory/`, `judges/`) never imports Prefect; these flows call the same functions the
CLI calls, so `factory build` (whose default engine is this flow) and a Prefect deployment give the
same run folder. Importing this package imports Prefect (seconds); the CLI does it only when needed.

Example::

    from flows import build_flow
    build_flow(config_path="examples/demo.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.build import build_flow
from flows.calibrate import calibrate_flow
from flows.publish import publish_flow
from flows.runners import make_task_runner
from flows.train import train_flow

__all__ = ["build_flow", "calibrate_flow", "make_task_runner", "publish_flow", "run_build_flow", "train_flow"]


def run_build_flow(
    config: Any | None,
    *,
    resume_dir: str | Path | None = None,
    runner: str = "threads",
    address: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    progress: Any | None = None,
    progress_every_s: float = 10.0,
) -> dict[str, Any]:
    """Run the build flow once from the command line: the chosen task runner, no heartbeat delay.

    `config` is a `BuildConfig` (or None with `resume_dir`). Raises `UserError` on bad runner options
    before Prefect starts anything. `progress` (a `BuildProgress`) is fed by the flow, which logs it
    every `progress_every_s` seconds. Raises `BuildInterrupted` when `factory._util.interrupts.request()`
    (Ctrl-C in the CLI) stopped the flow; its flow run is then marked Cancelled.
    """
    import logging

    from prefect.exceptions import CancelledRun
    from prefect.settings import temporary_settings

    from factory._util import interrupts
    from factory.pipeline.progress import BuildProgress
    from flows.build import caller_progress
    from flows.local_api import start_local_api

    progress = progress or BuildProgress()
    task_runner = make_task_runner(runner, address=address, workers=workers)
    flow = build_flow.with_options(task_runner=task_runner)
    if quiet:
        logging.getLogger("prefect").setLevel(logging.WARNING)
    stop_api = start_local_api()
    forget = interrupts.at_hard_exit(stop_api) if stop_api is not None else (lambda: None)
    # Heartbeats serve zombie detection of deployment runs; a run from the CLI is watched by its
    # user, and the heartbeat thread adds about a second to every flow run.
    try:
        with (
            temporary_settings(updates={"flows.heartbeat_frequency": None}),
            caller_progress(progress, progress_every_s),
        ):
            return flow(
                config=config.model_dump(mode="json") if config is not None else None,
                resume_dir=str(resume_dir) if resume_dir is not None else None,
            )
    except CancelledRun:
        if not interrupts.requested():
            raise
        snapshot = progress.snapshot()
        raise interrupts.BuildInterrupted(
            progress.run_dir, snapshot.prompts_done, snapshot.prompts_total
        ) from None
    finally:
        forget()
