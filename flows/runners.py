"""Task runners for the build flow: local threads, or Dask worker processes (on one or many machines).

A build task is one shard of prompts (`run.shard_size`), so the runner only decides where shards
run; the work inside a shard is asyncio through the gateway either way.

* `threads` (default): a thread pool in the flow's process; `workers` shards run at once. The
  gateway's concurrency limits hold per event loop, i.e. per running shard, so a model sees at
  most `workers x max_concurrency` requests in flight.
* `dask` with no address: a `distributed.LocalCluster` of `workers` processes (one thread each),
  started for the flow run and torn down after it.
* `dask` with `address="tcp://scheduler:8786"`: an existing cluster, e.g. `dask scheduler` on one
  machine and `dask worker tcp://scheduler:8786` on each of the others (see docs/orchestration.md).

Example::

    flow = build_flow.with_options(task_runner=make_task_runner("dask", workers=4))
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from factory._util.errors import UserError

RunnerKind = Literal["threads", "dask"]
DEFAULT_WORKERS = 2


def make_task_runner(
    kind: str = "threads", *, address: str | None = None, workers: int | None = None
) -> TaskRunner[Any]:
    """The Prefect task runner for `kind` (`threads` or `dask`); raises `UserError` on bad options."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if kind == "threads":
        if address is not None:
            raise UserError("--address needs --runner dask (a Dask scheduler address)")
        return ThreadPoolTaskRunner(max_workers=workers or DEFAULT_WORKERS)
    if kind != "dask":
        raise UserError(f"unknown runner '{kind}' (use threads or dask)")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise UserError("--runner dask needs prefect-dask: pip install 'preference-factory[dask]'") from None
    if address is not None:
        if not address.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://", "ucx://")):
            raise UserError(
                f"--address must be a Dask scheduler address like tcp://HOST:8786, got '{address}'"
            )
        if workers is not None:
            raise UserError(
                "--workers applies to a local Dask cluster; an existing cluster (--address) has its own"
            )
        return DaskTaskRunner(address=address)
    # One thread per worker process: a shard task runs its own event loop, and processes (not
    # threads) are what spreads litellm's CPU cost over cores.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers or DEFAULT_WORKERS,
            "processes": True,
            "threads_per_worker": 1,
            "dashboard_address": None,
        }
    )
