"""Whether a folder may be resumed: it must be a run folder this factory wrote, in a shape it can use.

`--resume DIR` writes a whole run into DIR, so a folder that merely holds a `config.yaml` must not
qualify: a run folder carries the marker `factory-run.json` (written by `RunFolder.create`), or,
for runs made before the marker existed, `prompts.parquet` beside its `config.yaml`.

A damaged run folder is named file by file, before any model is called: a cache that is not a
SQLite database (rebuilding it would pay again for every call it answered, so that is the user's
choice), `stages/` or a stage folder that is a file, a prompts table that cannot be read. A shard
file that cannot be read or is of another schema is not an error: it is redone (see
`RunFolder.reopen_shards`), since the cache answers every call it had made.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from factory._util.errors import UserError

MARKER_NAME = "factory-run.json"
MARKER_FORMAT = 1
LEGACY_EVIDENCE = "prompts.parquet"  # what every run folder older than the marker has beside config.yaml
_SQLITE_HEADER = b"SQLite format 3\x00"
_PROMPT_COLUMNS = ("prompt_id", "turns", "source", "rejected_reason", "raw")


def marker_content() -> dict[str, object]:
    """What `RunFolder.create` writes into the marker."""
    from factory import __version__

    return {
        "format": MARKER_FORMAT,
        "factory_version": __version__,
        "created_at": datetime.now(UTC).isoformat(),
    }


def check_resumable(root: Path) -> None:
    """Raise a one-line `UserError` unless `root` is a run folder this factory wrote, intact enough to
    resume. Reads only small files and headers: cheap enough for every resume."""
    if root.exists() and not root.is_dir():
        raise UserError(f"not a run folder (a file, not a folder): {root}")
    if not root.is_dir():
        raise UserError(f"not a run folder (no such folder): {root}")
    if not (root / "config.yaml").is_file():
        raise UserError(f"not a run folder (no config.yaml): {root}")
    marker = root / MARKER_NAME
    if marker.exists() or marker.is_symlink():
        _check_marker(marker)
    elif not (root / LEGACY_EVIDENCE).is_file():
        raise UserError(
            f"not a run folder this factory wrote (no {MARKER_NAME}, nor the {LEGACY_EVIDENCE} of an "
            f"older run): {root}"
        )
    _check_prompts_table(root / "prompts.parquet")
    _check_cache(root / "cache.sqlite")
    _check_stages(root / "stages")


def _check_marker(path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("format"), int):
        raise UserError(f"damaged run folder: {path} is not the marker this factory writes")
    if data["format"] > MARKER_FORMAT:
        raise UserError(
            f"run folder written by a newer factory (marker format {data['format']}, "
            f"this one reads {MARKER_FORMAT}): {path}"
        )


def _check_prompts_table(path: Path) -> None:
    if not (path.exists() or path.is_symlink()):
        return  # a run stopped before recording its prompts records them on resume
    try:
        columns = pl.read_parquet_schema(path) if path.is_file() else None
    except Exception:
        columns = None
    if columns is None:
        raise UserError(
            f"damaged run folder: {path} is not a readable parquet file (the run's recorded prompts; "
            "start a new build)"
        )
    missing = [c for c in _PROMPT_COLUMNS if c not in columns]
    if missing:
        raise UserError(
            f"damaged run folder: {path} lacks column(s) {', '.join(missing)} (the run's recorded "
            "prompts; start a new build)"
        )


def _check_cache(path: Path) -> None:
    if not (path.exists() or path.is_symlink()):
        return  # created on first use
    hint = "move it away to start an empty cache (the calls it answered will be paid again)"
    if not path.is_file():
        raise UserError(f"damaged run folder: the request cache {path} is not a file; {hint}")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise UserError(
            f"damaged run folder: cannot read the request cache {path} ({exc.strerror}); {hint}"
        ) from None
    if header and header != _SQLITE_HEADER:
        raise UserError(f"damaged run folder: the request cache {path} is not a SQLite database; {hint}")
    if not header:
        return  # an empty file is an empty database to SQLite
    try:
        # Read-write, as the cache itself opens it: read-only mode cannot open a WAL left by a killed build.
        with closing(sqlite3.connect(str(path))) as conn:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = (
                {row[1] for row in conn.execute("PRAGMA table_info(calls)")} if "calls" in tables else None
            )
    except sqlite3.DatabaseError as exc:
        raise UserError(
            f"damaged run folder: the request cache {path} cannot be read ({exc}); {hint}"
        ) from None
    if columns is not None and not {"key", "model", "record"} <= columns:
        raise UserError(
            f"damaged run folder: the request cache {path} has a 'calls' table of another schema; {hint}"
        )


def _check_stages(path: Path) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir():
        raise UserError(
            f"damaged run folder: {path} should be the folder of stage outputs but is a file; move it "
            "away and resume to redo the stages (the cache answers the calls already made)"
        )
    for stage in path.iterdir():
        if stage.name.startswith("."):
            continue
        if not stage.is_dir():
            raise UserError(
                f"damaged run folder: {stage} should be a stage folder but is a file; move it away and "
                "resume to redo that stage"
            )
        for entry in stage.glob("shard-*.parquet"):
            if not entry.is_file():
                raise UserError(
                    f"damaged run folder: {entry} should be a shard file but is not a regular file; "
                    "move it away and resume to redo the shard"
                )
