"""The cost ledger: who paid for each model call of a build, written next to the call in the run's cache.

The run's request cache (`cache.py`) commits every call as it returns. The ledger row of a paid
call (which invocation and process paid, for which stage, role, model, workflow and tag, its tokens,
dollars and batch flag) is committed in the same SQLite transaction, so a call is in the ledger
exactly when it is in the cache: a build killed at any point loses no paid call from its ledger, and
the resume, which the cache answers, neither pays for that call again nor counts it again.

Answers that cost nothing are rows too: `replay` (the run's own cache answered: a resume, a salvage
round, a repeated request) and `saved` (the shared cache of `run.cache_dir` answered a call another
build paid for; its tokens and dollars are what the call cost then, i.e. what was saved).

Every process writes its own rows into the cache file it uses (Dask workers on the flow's host share
the run's `cache.sqlite`; workers on other hosts write `cache-<host>.sqlite`), so the ledger of a run
is the union of the ledger rows of the cache files in its folder (`read_ledger`), each row once.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any, Literal

EntryKind = Literal["paid", "replay", "saved"]
# (stage, workflow) of a usage tag; the pipeline supplies it (`factory.pipeline.cost_report.classifier`).
Classifier = Callable[[str | None], tuple[str | None, str | None]]

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    kind TEXT NOT NULL, key TEXT NOT NULL, attempt TEXT NOT NULL, process TEXT NOT NULL,
    stage TEXT, role TEXT NOT NULL, model TEXT NOT NULL, workflow TEXT, tag TEXT,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    batch INTEGER NOT NULL DEFAULT 0, at REAL NOT NULL
)"""


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger: a paid call, or an answer from a cache (which cost nothing)."""

    kind: EntryKind
    key: str  # the request key (`cache.request_key`): the same request has the same key in every run
    attempt: str  # the invocation: a build and each of its resumes are different attempts
    process: str  # host:pid of the process that made or answered the call
    stage: str | None
    role: str
    model: str
    workflow: str | None  # the generation workflow (generate stage), else None
    tag: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    batch: bool = False  # priced as a batch call (set by the batch transport's usage records)
    at: float = 0.0  # unix time the row was written

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_COLUMNS = tuple(f.name for f in fields(LedgerEntry))
INSERT_SQL = f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


def entry_params(entry: LedgerEntry) -> tuple[Any, ...]:
    """The entry as the parameters of `INSERT_SQL`."""
    return tuple(int(v) if isinstance(v, bool) else v for v in astuple(entry))


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class CostLedger:
    """What a gateway needs to write ledger rows: the attempt it belongs to and how tags map to stages."""

    attempt: str
    classify: Classifier

    def entry(
        self, kind: EntryKind, *, key: str, role: str, model: str, tag: str | None, record: dict[str, Any]
    ) -> LedgerEntry:
        """The row of a call whose response record (`cache` format) is `record`."""
        stage, workflow = self.classify(tag)
        return LedgerEntry(
            kind=kind,
            key=key,
            attempt=self.attempt,
            process=process_id(),
            stage=stage,
            role=role,
            model=model,
            workflow=workflow,
            tag=tag,
            prompt_tokens=int(record["prompt_tokens"]),
            completion_tokens=int(record["completion_tokens"]),
            cost_usd=float(record["cost_usd"]),
            batch=bool(record.get("batch", False)),
            at=time.time(),
        )


def read_ledger(paths: Iterable[Path]) -> list[LedgerEntry]:
    """Every ledger row of these cache files, oldest first (files without a ledger add nothing)."""
    entries: list[LedgerEntry] = []
    for path in paths:
        # Read-write, as the cache opens it: read-only mode cannot open the WAL of a killed process (a
        # Dask worker's file). Only SELECTs run, so no write lock is taken from a build still writing.
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='ledger'").fetchone()
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM ledger").fetchall() if has else []
        finally:
            conn.close()
        for row in rows:
            values = dict(zip(_COLUMNS, row, strict=True))
            values["batch"] = bool(values["batch"])
            entries.append(LedgerEntry(**values))
    entries.sort(key=lambda e: e.at)
    return entries
