"""Ctrl-C during a build: the first press stops it cleanly, a second exits at once.

A terminal's Ctrl-C sends SIGINT to every process of the foreground job. Python's default turns it
into a KeyboardInterrupt wherever the main thread happens to be, which in a build is the middle of
an event loop or of Prefect's engine: clean-up runs half-way, Prefect's task threads keep going, and
a second Ctrl-C lands inside that clean-up. While `handle_interrupts()` is active instead:

* the first SIGINT sets a process-wide flag and cancels every coroutine run through `stoppable()`
  (the build's shards, the quality gate's judging). Their callers see a `CancelledError`, check
  `requested()` and end the build as interrupted (`BuildInterrupted`) without finalizing it:
  finished shard files and the request cache stay, so `--resume` repeats no answered call;
* a second SIGINT restores the terminal, runs the last-moment clean-ups registered with
  `at_hard_exit` (say, stopping a server this process started) and exits with 130 at once
  (`os._exit`: nothing that could hang runs).

The library never installs a signal handler itself; the CLI does, for the command that owns the
terminal. Code that runs without it (a notebook, a deployment) keeps Python's default behaviour.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

EXIT_CODE = 130  # 128 + SIGINT, what shells report for a job stopped by Ctrl-C
REASON = "interrupted"  # the manifest's stopped_reason
CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)

_flag = threading.Event()
# Reentrant: the signal handler runs in the main thread, possibly while that thread holds the lock.
_lock = threading.RLock()
_running: set[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = set()
_last_moment: list[Callable[[], None]] = []
_presses = 0


class BuildInterrupted(Exception):
    """The user interrupted a build; what was finished is kept for `--resume`."""

    def __init__(self, run_dir: str | Path | None, done: int, total: int) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.done, self.total = done, total
        super().__init__(self.line())

    def line(self) -> str:
        if self.run_dir is None:
            return "stopped before the build started: no run folder was written"
        return (
            f"stopped: {self.done} of {self.total} prompts done; "
            f"resume with: factory build --resume {self.run_dir}"
        )


def requested() -> bool:
    """Has the user asked this process to stop?"""
    return _flag.is_set()


def request() -> None:
    """Ask the build to stop: set the flag and cancel every running `stoppable()` coroutine.
    Safe from any thread and from a signal handler."""
    _flag.set()
    with _lock:
        running = list(_running)
    for loop, task in running:
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop has closed meanwhile: nothing left to stop there
            pass


def reset() -> None:
    """Forget an earlier request (a process that runs builds one after another, e.g. tests)."""
    global _presses
    _flag.clear()
    _presses = 0


async def stoppable(awaitable: Awaitable[T]) -> T:
    """Await `awaitable`; `request()` cancels it (also when the request came before it started)."""
    task = asyncio.current_task()
    assert task is not None, "stoppable() must run inside a task"
    entry = (asyncio.get_running_loop(), task)
    with _lock:
        _running.add(entry)
    try:
        if _flag.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never started: no "coroutine was never awaited" warning
            raise asyncio.CancelledError(REASON)
        return await awaitable
    finally:
        with _lock:
            _running.discard(entry)


def at_hard_exit(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` (quick, never blocking) before a second Ctrl-C exits; returns a function that
    unregisters it."""
    with _lock:
        _last_moment.append(callback)

    def remove() -> None:
        with _lock:
            if callback in _last_moment:
                _last_moment.remove(callback)

    return remove


@contextmanager
def handle_interrupts(
    *, raise_when_idle: bool = True, resume_hint: Callable[[], str | Path | None] = lambda: None
) -> Iterator[None]:
    """Ctrl-C handling for one command (see the module docstring); only in the main thread.

    `raise_when_idle`: a first Ctrl-C while no `stoppable()` coroutine runs raises KeyboardInterrupt
    as Python would (code between the stages is safe to unwind); False where that code is someone
    else's engine (Prefect's), which then has to notice `requested()` itself. `resume_hint` gives the
    run folder (or None) for the line a second Ctrl-C prints; it must not block or take locks."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    terminal = _terminal_state()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        global _presses
        _presses += 1
        if _presses > 1:
            _exit_now(terminal, resume_hint)
        request()
        with _lock:
            idle = not _running
        if raise_when_idle and idle:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_process(code: int = EXIT_CODE) -> NoReturn:
    """End the process now that an interrupted build has said where it stopped: output flushed and
    exit handlers run (Prefect's log flush and its temporary API's stop), but not the interpreter's
    teardown of every module, which after a large build takes seconds of a user's wait for nothing.
    Threads still running are not waited for."""
    from factory._util.process_exit import exit_now

    exit_now(code, wait_for_threads=False)


def _terminal_state() -> list[Any] | None:
    try:
        import termios

        return termios.tcgetattr(sys.stdin.fileno()) if sys.stdin.isatty() else None
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def _exit_now(terminal: list[Any] | None, resume_hint: Callable[[], str | Path | None]) -> None:
    """The second Ctrl-C: terminal back as it was, last-moment clean-ups, one line, exit 130."""
    if terminal is not None:
        try:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, terminal)
        except (OSError, ValueError):
            pass
    try:
        if os.isatty(2):
            os.write(2, b"\x1b[?25h")  # a live progress display hides the cursor
    except OSError:
        pass
    with _lock:
        callbacks = tuple(_last_moment)
    for callback in callbacks:
        try:
            callback()
        except Exception:
            pass
    try:
        run_dir = resume_hint()
    except Exception:
        run_dir = None
    way_on = f"; resume with: factory build --resume {run_dir}" if run_dir else ""
    try:
        os.write(2, f"\ninterrupted again: exiting now{way_on}\n".encode())
    except OSError:
        pass
    os._exit(EXIT_CODE)
