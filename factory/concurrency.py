"""Bounded concurrency over a stream of items without a future per item held in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def map_bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """Apply `fn` to every item with at most `limit` running at once; results keep input order."""
    materialized = list(items)
    out: list[R | None] = [None] * len(materialized)
    async for index, result in stream_bounded(materialized, fn, limit):
        out[index] = result
    return out  # type: ignore[return-value]


async def stream_bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int
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
