"""The end of a build: merged tables, the quality gate, the dataset, and the manifest (written in
one place, `manifest.py`), or the manifest of an interrupted build.

Modules:
- `finalize_run`: the end of a build: the run's tables merged from its shard files, the quality gate, the dataset and the manifest.
- `gate`: the quality gate: may this build's data reach a trainer or the Hub?
- `interrupted`: the end of an interrupted build: a manifest that says so, written in milliseconds.
- `manifest`: manifest.json: what a build produced, what it cost and how it ended, written in one place.
- `prefetch`: import what `finalize` needs while the build's first model calls are in flight.
- `stage_figures`: the manifest's `stages`: what went into and came out of each stage of a build, and what it cost.
"""

__all__ = ["finalize_run", "gate", "interrupted", "manifest", "prefetch", "stage_figures"]
