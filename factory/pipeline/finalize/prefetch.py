"""Import what `finalize` needs while the build's first model calls are in flight.

`datasets` (with pandas and the Hub client) takes 1-2 s to import, and only `finalize` uses it. A
build spends most of its calling phase waiting on the network (at 8 calls in flight against a
100 ms endpoint the process is idle most of the time), so importing it on a background thread then
costs no wall time, where importing it at `finalize` adds it to every build's duration. A failure
here is ignored: `finalize` imports again and reports it.

`finalize` must `wait_for_prefetch()` before it imports any of these itself: two threads importing
the same package at once can see it partially initialized (an ImportError from a circular import).
"""

from __future__ import annotations

import threading


def _import_finalize_modules() -> None:
    try:
        import datasets  # noqa: F401

        import factory.dataset.card
        import factory.pipeline.finalize.finalize_run  # noqa: F401
    except Exception:
        pass


_started: list[threading.Thread] = []


def prefetch_finalize_imports() -> threading.Thread:
    """Start importing `finalize`'s heavy modules on a daemon thread; returns the thread."""
    thread = threading.Thread(target=_import_finalize_modules, name="factory-prefetch-imports", daemon=True)
    _started.append(thread)
    thread.start()
    return thread


def wait_for_prefetch() -> None:
    """Block until every prefetch started in this process has finished importing."""
    while _started:
        _started.pop().join()
