"""Rate limits shared by every process of a build on Dask, with Dask's own primitives (no new server).

A build's limiters (`rate_limit.ModelLimiter`, one per endpoint) live in one Dask actor
(`LimiterActor`) on one worker of the cluster; every worker's gateway draws its tickets from it, so
4 workers together send what one model allows, not 4 times that. The flow's process creates the
actor through the task runner's client before it submits any shard (`create_shared_limits`) and
publishes its future in a `distributed.Variable` named after the flow run; each worker's gateway
finds it there (`DaskLimits`) and the flow deletes it at the end. The actor's methods are
coroutines, so they run on its worker's event loop and a waiting acquire holds no thread.

The gateway's shard loop is not Dask's: each call is handed to this worker's Dask event loop with
`run_coroutine_threadsafe` and awaited from the shard loop through `wrap_future`. `finish` is sent
without waiting (a late finish only frees its slot later). An acquire cancelled on the caller's side
is cancelled on the actor's too, and a ticket granted meanwhile is given back as sent.

If the actor's worker dies, calls fail with its error and the shard task is retried by Prefect;
attempts of a worker that died without finishing count as ended `stale_after_s` after their grant.

Import this module only in a Dask worker (it imports distributed).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Coroutine
from typing import Any

import distributed

from factory.llm.rate_limit import Cost, LocalLimits, ModelLimits, Outcome
from factory.llm.rate_limit_headers import ServerLimits

log = logging.getLogger(__name__)
# How long a worker looks for the flow's actor (published before any shard is submitted).
_LOOKUP_TIMEOUT_S = 30.0


def shared_limits_name(token: str) -> str:
    """The name of a flow run's lock and variable (and so of its limiters) on the cluster."""
    return f"factory-rate-limits-{token}"


class LimiterActor:
    """The limiters of one build, for every worker of the cluster (a Dask actor)."""

    def __init__(self) -> None:
        self._hub = LocalLimits()
        self._waiting: dict[str, asyncio.Task[int]] = {}
        self._granted: dict[str, tuple[str, int]] = {}  # request -> (key, ticket) until finished
        self._request_of: dict[tuple[str, int], str] = {}

    async def acquire(self, key: str, limits: ModelLimits, cost: Cost, request: str) -> int:
        task = asyncio.ensure_future(self._hub.acquire(key, limits, cost))
        self._waiting[request] = task
        try:
            ticket = await task
        except asyncio.CancelledError:
            return 0  # cancelled by `cancel`: the caller is gone
        finally:
            self._waiting.pop(request, None)
        self._granted[request] = (key, ticket)
        self._request_of[key, ticket] = request
        return ticket

    async def finish(self, key: str, ticket: int, outcome: Outcome) -> None:
        self._granted.pop(self._request_of.pop((key, ticket), ""), None)
        self._hub.finish(key, ticket, outcome)

    async def cancel(self, request: str) -> None:
        """The caller of `acquire(request=...)` was cancelled: stop waiting, or give back its ticket."""
        task = self._waiting.pop(request, None)
        if task is not None:
            task.cancel()
        granted = self._granted.pop(request, None)
        if granted is not None:
            self._request_of.pop(granted, None)
            self._hub.abandon(*granted)

    async def observe(self, key: str, limits: ModelLimits, server: ServerLimits) -> None:
        self._hub.observe(key, limits, server)

    async def snapshot(self, key: str) -> dict[str, Any]:
        return self._hub.snapshot(key)


async def _invoke(actor: distributed.Actor, method: str, *args: Any) -> Any:
    return await getattr(actor, method)(*args)


class DaskLimits:
    """The `LimitsHub` of a gateway in a Dask worker: the build's `LimiterActor`.

    Create it in a task, after `create_shared_limits` ran in the flow's process."""

    def __init__(self, token: str) -> None:
        worker = distributed.get_worker()
        name = shared_limits_name(token)
        try:
            future = distributed.Variable(name).get(timeout=_LOOKUP_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(
                f"no shared rate limiter '{name}' on the Dask cluster: the flow creates it "
                "(create_shared_limits) before it submits the shards"
            ) from None
        found = future.result()
        # Bound to this worker explicitly: calls come from the gateway's own thread, where Dask
        # cannot tell which worker it is in.
        self._actor = distributed.Actor(LimiterActor, found._address, found.key, worker=worker)
        self._loop: asyncio.AbstractEventLoop = worker.loop.asyncio_loop  # type: ignore[attr-defined]
        self._requests = itertools.count()
        self._prefix = f"{worker.address}-{os.getpid()}-{id(self)}"

    def _send(self, method: str, *args: Any) -> asyncio.Future[Any]:
        coroutine: Coroutine[Any, Any, Any] = _invoke(self._actor, method, *args)
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def _post(self, method: str, *args: Any) -> None:
        """Send without waiting; a failure is logged (the slot then frees `stale_after_s` late)."""
        future = asyncio.run_coroutine_threadsafe(_invoke(self._actor, method, *args), self._loop)
        future.add_done_callback(_log_failure)

    async def acquire(self, key: str, limits: ModelLimits, cost: Cost) -> int:
        request = f"{self._prefix}-{next(self._requests)}"
        try:
            ticket: int = await self._send("acquire", key, limits, cost, request)
        except asyncio.CancelledError:
            self._post("cancel", request)
            raise
        return ticket

    def finish(self, key: str, ticket: int, outcome: Outcome) -> None:
        self._post("finish", key, ticket, outcome)

    def abandon(self, key: str, ticket: int) -> None:
        self._post("finish", key, ticket, Outcome("failed"))

    def observe(self, key: str, limits: ModelLimits, server: ServerLimits) -> None:
        self._post("observe", key, limits, server)

    def snapshot(self, key: str) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run_coroutine_threadsafe(
            _invoke(self._actor, "snapshot", key), self._loop
        ).result(timeout=30)
        return result


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("rate limiter: %s", future.exception())


def create_shared_limits(token: str, client: distributed.Client) -> None:
    """Start flow run `token`'s `LimiterActor` through the task runner's Dask `client` and publish it.

    The flow does this before it submits any shard: creating an actor is a task, and once every
    worker thread runs a shard (one thread per worker) it would never start."""
    name = shared_limits_name(token)
    actor = client.submit(LimiterActor, actor=True, pure=False, key=f"{name}-actor")
    actor.result()  # started, or its error here rather than in every shard
    distributed.Variable(name, client=client).set(actor)


def release_shared_limits(token: str, client: distributed.Client) -> None:
    """Drop a finished flow run's actor (its variable)."""
    distributed.Variable(shared_limits_name(token), client=client).delete()
