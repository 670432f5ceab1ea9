"""Persistent request cache (SQLite, one file per run folder).

Every completed call is committed as soon as it returns, so a build killed at any point repeats
no call that already finished. The key is the sha256 of the normalized request (sorted JSON of
model, endpoint, messages, parameters, schema and sample index), never of secrets.

The file also holds the run's cost ledger (`cost_ledger.py`): a paid call's ledger row is committed
in the same transaction as its response.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from factory._util.errors import UserError
from factory.llm.cost_ledger import INSERT_SQL, LEDGER_DDL, LedgerEntry, entry_params


def request_key(request: dict[str, Any]) -> str:
    """sha256 of the normalized request; the same request always maps to the same key."""
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class RequestCache:
    """A key -> response-record store. Thread-safe; WAL journal so readers never block the writer."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, Any]] = {}
        self.memory_ledger: list[LedgerEntry] = []  # the ledger of a cache without a file
        self._conn: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL survives a killed process (not a power cut) and keeps commits cheap.
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, record TEXT NOT NULL)"
                )
                self._conn.execute(LEDGER_DDL)
            except sqlite3.DatabaseError as exc:
                # A damaged file, or a folder in its place: the user decides whether to drop what it holds.
                raise UserError(
                    f"the request cache {path} is not a usable SQLite database ({exc}); move it "
                    "away to start an empty cache (the calls it answered will be paid again)"
                ) from None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if self._conn is None:
                return self._memory.get(key)
            row = self._conn.execute("SELECT record FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, record: dict[str, Any], entry: LedgerEntry | None = None) -> None:
        """Store a response; with `entry` (its ledger row) both in one transaction: both or neither."""
        with self._lock:
            if self._conn is None:
                self._memory[key] = record
                if entry is not None:
                    self.memory_ledger.append(entry)
                return
            blob = json.dumps(record, ensure_ascii=False)
            if entry is None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO calls (key, model, record) VALUES (?, ?, ?)", (key, model, blob)
                )
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO calls (key, model, record) VALUES (?, ?, ?)", (key, model, blob)
                )
                self._conn.execute(INSERT_SQL, entry_params(entry))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add_entry(self, entry: LedgerEntry) -> None:
        """Append a ledger row that has no response to store (an answer from a cache)."""
        with self._lock:
            if self._conn is None:
                self.memory_ledger.append(entry)
                return
            self._conn.execute(INSERT_SQL, entry_params(entry))

    def totals(self) -> tuple[int, int, float]:
        """Calls, tokens (prompt + completion) and cost recorded so far: what the run has spent."""
        with self._lock:
            if self._conn is None:
                records = list(self._memory.values())
                return (
                    len(records),
                    sum(r["prompt_tokens"] + r["completion_tokens"] for r in records),
                    sum(r["cost_usd"] for r in records),
                )
            row = self._conn.execute(
                "SELECT COUNT(*), SUM(json_extract(record, '$.prompt_tokens') + json_extract(record, "
                "'$.completion_tokens')), SUM(json_extract(record, '$.cost_usd')) FROM calls"
            ).fetchone()
        return int(row[0] or 0), int(row[1] or 0), float(row[2] or 0.0)

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return len(self._memory)
            return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
