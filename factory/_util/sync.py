"""Running a coroutine to completion from synchronous code: the one sync wrapper of the project.

`factory calibrate`, the quality gate, `judge_table_sync` and `factory injection` are synchronous
entry points over async code. Plain `asyncio.run` fails where an event loop already runs in the
thread (a notebook, an async Prefect flow, Playwright's sync API); `run_sync` then runs the
coroutine on a fresh loop in a helper thread and hands back its result or its exception.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The result of the coroutine `make()` returns, run to completion from synchronous code.

    `make` builds the coroutine only once the loop it runs on is known (a coroutine made in one
    thread and never awaited would warn when it is thrown away).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="run-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
