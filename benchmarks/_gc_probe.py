"""`python benchmarks/_gc_probe.py build CONFIG ...`: a `factory build` that reports its garbage
collections (count and seconds per generation, from `gc.callbacks`) as JSON on stderr's last line.
With FACTORY_BENCH_GC=default the build runs on CPython's default collector settings (the build's
`long_lived_heap` replaced by a no-op), for the before/after figure of `benchmarks/profile.py`."""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import sys
import time

_started: dict[int, float] = {}
_counts = {0: 0, 1: 0, 2: 0}
_seconds = {0: 0.0, 1: 0.0, 2: 0.0}


def _timed(phase: str, info: dict[str, int]) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
    else:
        _counts[generation] += 1
        _seconds[generation] += time.perf_counter() - _started.pop(generation)


def _report() -> None:
    total = sum(_seconds.values())
    seconds = {g: round(s, 3) for g, s in _seconds.items()}
    print(
        json.dumps({"collections": _counts, "seconds": seconds, "total_s": round(total, 3)}), file=sys.stderr
    )


def _main() -> None:
    gc.callbacks.append(_timed)
    atexit.register(_report)
    if os.environ.get("FACTORY_BENCH_GC") == "default":
        import factory.pipeline.runner as runner

        runner.long_lived_heap = contextlib.nullcontext  # type: ignore[assignment]
    from factory.cli import main

    main(sys.argv[1:])


if __name__ == "__main__":
    _main()
