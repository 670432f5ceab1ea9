"""Ending a command-line process without the interpreter's teardown.

After its work is on disk, a CPython process still tears every module down and runs a last full
collection over its heap before it exits. After a large build that is a wait for nothing: measured
at 0.25-0.6 s after a 1,500-prompt build (2 cores), most of it `gc_collect_main` in py-spy's native
frames. `exit_now` does what a normal exit does that matters (non-daemon threads joined when asked,
output flushed, `atexit` handlers run: logging's flush, `weakref.finalize` clean-ups, Prefect's log
flush and its temporary API's stop) and then `os._exit`s. Only the process's entry point may call it:
a library caller (a test calling `factory.cli.main`, a notebook) must get control back.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_code(code: object) -> int:
    """The status Python gives `sys.exit(code)`: None is 0, an int is itself, anything else is
    printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def exit_now(code: int, *, wait_for_threads: bool = True) -> NoReturn:
    """Join the non-daemon threads (unless told not to: an interrupted build exits at once), flush,
    run the exit handlers, and end the process with `code`."""
    if wait_for_threads:
        # What the interpreter's own exit does first (private, but what CPython itself calls):
        # threading's exit callbacks, which tell idle thread-pool workers to stop, then a join of
        # every non-daemon thread. A plain join of the threads would wait on those idle workers.
        threading._shutdown()  # type: ignore[attr-defined]
    _flush()
    atexit._run_exitfuncs()
    _flush()
    os._exit(code)
