"""The cycle collector's settings while a build runs.

A build process holds a large heap that lives as long as the build: every imported module, the
config, the plan and its prompts. CPython's default thresholds (700, 10, 10) run a young collection
every 700 net allocations and, every hundred of those, a full one that walks that whole heap again;
the per-call objects of thousands of concurrent model calls trigger them all the time. Measured on a
1,500-prompt build at 64 calls in flight (2 cores, quiet): 756 young, 69 middle and 6 full collections
took 1.1 s of the build's ~10 s; with the long-lived heap frozen and the thresholds below, 216 / 18 / 1
collections took 0.15 s. Reference cycles are still collected, only less often; the extra memory is
bounded by the young generation's threshold (a few MB of objects).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Young generation: collect after this many net container allocations (default 700); the middle
# and old generations after this many collections of the one below (defaults 10, 10).
BUILD_THRESHOLDS = (20_000, 20, 10)


@contextmanager
def long_lived_heap() -> Iterator[None]:
    """Within the block, what exists now is never scanned again and collections run less often; both
    are undone on the way out, so a library caller's process gets its own settings back. (A process
    that had frozen objects itself keeps everything frozen: `gc.unfreeze` cannot tell whose they are.)"""
    before, frozen_by_caller = gc.get_threshold(), gc.get_freeze_count() > 0
    gc.freeze()
    gc.set_threshold(*BUILD_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if not frozen_by_caller:
            gc.unfreeze()
