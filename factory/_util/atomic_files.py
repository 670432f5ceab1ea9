"""Atomic file writes: write to a hidden sibling, fsync, rename into place.

A killed process never leaves a partial file that a reader could mistake for a finished one. Used by
the run folder and by every other writer of results (calibration, reports, public-set downloads).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl


def create_temporary_sibling(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new, empty, hidden file next to `path` to write and then rename onto it: `(fd, name)`.

    Created with mode 0666 less the umask, as `open()` creates files (0644 under umask 022), so the
    renamed file has a normal file's permissions; `tempfile.mkstemp` creates 0600 files, which made every
    run file unreadable to the group that shares an output folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        name = str(path.parent / f".{path.name}.{os.urandom(4).hex()}{suffix}")
        try:
            return os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
            ), name
        except FileExistsError:
            continue


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = create_temporary_sibling(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_parquet(path: Path, frame: pl.DataFrame) -> None:
    fd, tmp = create_temporary_sibling(path)
    os.close(fd)
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
