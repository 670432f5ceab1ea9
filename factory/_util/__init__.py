"""Small helpers with no project dependencies: errors, atomic files, the JSON-column codec, safe
reading of user files, bounded concurrency, cron, Ctrl-C handling, the sync wrapper and the Jinja
environment. Every other package may use it.

Modules:
- `atomic_files`: atomic file writes: write to a hidden sibling, fsync, rename into place.
- `concurrency`: bounded concurrency over a stream of items without a future per item held in memory.
- `cron`: cron expressions checked before anything slow is imported.
- `errors`: errors a user can act on.
- `interrupts`: ctrl-C during a build: the first press stops it cleanly, a second exits at once.
- `json_columns`: the one codec for nested columns of run tables.
- `safe_read`: reading a user's input file without hanging or running out of memory.
- `sync`: running a coroutine from synchronous code, inside or outside a running event loop.
- `templates`: the one Jinja environment factory (strict, prompts as plain text, the report as HTML).
- `yaml_input`: reading YAML the user wrote (build specs, calibration configs, fake-server scripts), safely, into typed
  models.
"""

__all__ = [
    "atomic_files",
    "concurrency",
    "cron",
    "errors",
    "interrupts",
    "json_columns",
    "safe_read",
    "sync",
    "templates",
    "yaml_input",
]
