"""Bounded concurrency over a stream of items without a future per item held in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def map_bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """Apply `fn` to every item with at most `limit` running at once; results keep input order."""
    materialized = list(items)
    out: list[R | None] = [None] * len(materialized)
    async for index, result in stream_bounded(materialized, fn, limit):
        out[index] = result
    return out  # type: ignore[return-value]


async def stream_bounded(
    items: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int
) -> AsyncIterator[tuple[int, R]]:
    """Yield `(index, fn(item))` as they finish; at most `limit` tasks exist at any moment."""
    iterator = iter(enumerate(items))
    running: dict[asyncio.Task[R], int] = {}

    def launch() -> bool:
        try:
            index, item = next(iterator)
        except StopIteration:
            return False
        running[asyncio.ensure_future(fn(item))] = index
        return True

    for _ in range(limit):
        if not launch():
            break
    try:
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                index = running.pop(task)
                yield index, task.result()
                launch()
    finally:
        for task in running:
            task.cancel()


async def map_with_slots(
    items: Iterable[T], fn: Callable[[T], Awaitable[R]], slots: asyncio.Semaphore
) -> list[R]:
    """Apply `fn` to every item, each run holding one of `slots`; results keep input order.

    Items start in order, each as soon as a slot is free, and at most as many tasks exist as slots
    are held. Callers that share `slots` are served in the order they asked (asyncio semaphores are
    first come, first served), so a second caller's items take over the slots as the first caller's
    last items finish: no slot idles at the seam between them. A failing `fn` stops the launching;
    the runs already started finish, then the first failure is raised.
    """
    out: list[R | None] = []
    running: set[asyncio.Task[None]] = set()
    errors: list[Exception] = []

    async def run(index: int, item: T) -> None:
        try:
            out[index] = await fn(item)
        except Exception as exc:
            errors.append(exc)
        finally:
            slots.release()

    try:
        for index, item in enumerate(items):
            await slots.acquire()
            if errors:
                slots.release()
                break
            out.append(None)
            task = asyncio.ensure_future(run(index, item))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    if errors:
        raise errors[0]
    return out  # type: ignore[return-value]


async def gather_or_cancel(coros: Iterable[Awaitable[R]]) -> list[R]:
    """Run every awaitable at once; results keep input order. The first failure cancels the others
    and is raised (what a LangGraph fan-out does, without a graph: see `factory.workflows.single_agent`)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if len(tasks) == 1:
        return [await tasks[0]]
    for task in tasks:
        task.add_done_callback(_retrieve)  # a second failure is not "never retrieved"
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next(
            (t for t in tasks if t in done and not t.cancelled() and t.exception() is not None), None
        )
        if failed is not None:
            raise failed.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
