"""The request cache shared between builds: `run.cache_dir` (or `$FACTORY_CACHE_DIR`), opt-in.

One SQLite file, `<cache_dir>/requests.sqlite`, keyed like the run's own cache by the sha256 of the
normalized request (`cache.request_key`: model, endpoint, messages, parameters, schema, sample),
never by anything about the build that asked: its run id, output folder, prompt set, pair rules,
thresholds and parsers do not enter the key (replies are parsed after the cache), so a build that
differs from an earlier one only there is answered from this cache and pays for no call again.

The gateway reads it after the run's own cache and writes every call it pays for to both: the run
folder keeps a copy of what it paid for (its resume and its budget do not depend on this cache,
which `factory cache prune` may shrink at any time), and this cache gives it to the next build.

Safe under concurrent builds: WAL journal (readers never block the writer), a 30 s busy timeout
(writers queue instead of failing), and INSERT OR IGNORE (two builds that paid for the same request
at once keep the first answer; both answers are valid replies to the same request). SQLite needs
the folder on a local filesystem: a network filesystem's locks are not reliable enough for WAL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory._util.errors import UserError

FILE_NAME = "requests.sqlite"
ENV_VAR = "FACTORY_CACHE_DIR"
BUSY_TIMEOUT_S = 30.0

_DDL = (
    (
        "CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, model TEXT NOT NULL, record TEXT NOT NULL, "
        "cost_usd REAL NOT NULL, bytes INTEGER NOT NULL, created_at REAL NOT NULL)"
    ),
    "CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at)",
    "CREATE INDEX IF NOT EXISTS requests_model ON requests (model)",
)


def shared_cache_dir(configured: str | None) -> Path | None:
    """The shared cache folder of a build: `$FACTORY_CACHE_DIR` when set (it overrides the config), else
    `run.cache_dir`; None when neither is set (the build uses its run folder's cache alone)."""
    value = os.environ.get(ENV_VAR) or configured
    return Path(value).expanduser().absolute() if value else None


def check_cache_dir(folder: Path) -> None:
    """A one-line `UserError` unless `folder` is (or can become) a folder holding a usable cache file."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"cache dir {folder} is not a folder (run.cache_dir or ${ENV_VAR})")
    file = folder / FILE_NAME
    if file.exists() and not file.is_file():
        raise UserError(f"the shared request cache {file} is not a file")


class SharedCache:
    """The shared key -> response-record store. Thread-safe within a process, safe across processes."""

    def __init__(self, folder: Path, *, create: bool = True) -> None:
        check_cache_dir(folder)
        self.folder = folder
        self.path = folder / FILE_NAME
        self._lock = threading.Lock()
        if not create and not self.path.is_file():
            raise UserError(f"no shared request cache in {folder} (no {FILE_NAME})")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
            )
            self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _DDL:
                self._conn.execute(statement)
        except OSError as exc:
            raise UserError(f"cannot use cache dir {folder}: {exc.strerror or exc}") from None
        except sqlite3.DatabaseError as exc:
            raise UserError(
                f"the shared request cache {self.path} is not a usable SQLite database ({exc}); "
                "move it away to start an empty one"
            ) from None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM requests WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, record: dict[str, Any]) -> None:
        blob = json.dumps(record, ensure_ascii=False)
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO requests (key, model, record, cost_usd, bytes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    blob,
                    float(record.get("cost_usd") or 0.0),
                    len(blob.encode("utf-8")),
                    time.time(),
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def stats(self) -> CacheStats:
        """Entries, sizes, dollars and ages, in all and per model."""
        with self._lock:
            total = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(SUM(cost_usd), 0), "
                "MIN(created_at), MAX(created_at) FROM requests"
            ).fetchone()
            models = self._conn.execute(
                "SELECT model, COUNT(*), SUM(bytes), SUM(cost_usd), MIN(created_at), "
                "MAX(created_at) FROM requests GROUP BY model ORDER BY model"
            ).fetchall()
        file_bytes = sum(
            p.stat().st_size for p in (self.path, self.path.with_name(f"{FILE_NAME}-wal")) if p.exists()
        )
        return CacheStats(
            path=str(self.path),
            entries=int(total[0]),
            record_bytes=int(total[1]),
            file_bytes=file_bytes,
            cost_usd=round(float(total[2]), 8),
            oldest=total[3],
            newest=total[4],
            by_model={
                m: {
                    "entries": int(n),
                    "record_bytes": int(b),
                    "cost_usd": round(float(c), 8),
                    "oldest": lo,
                    "newest": hi,
                }
                for m, n, b, c, lo, hi in models
            },
        )

    def prune(
        self,
        *,
        older_than_s: float | None = None,
        model: str | None = None,
        max_bytes: int | None = None,
        dry_run: bool = False,
        now: float | None = None,
    ) -> PruneResult:
        """Remove entries older than `older_than_s`, entries of `model`, then the oldest entries until the
        records take at most `max_bytes`; then VACUUM. `dry_run`: count them and remove nothing."""
        if older_than_s is None and model is None and max_bytes is None:
            raise UserError("give what to prune: --older-than, --model and/or --max-size")
        now = time.time() if now is None else now
        clauses: list[str] = []
        params: list[float | str] = []
        if older_than_s is not None:
            clauses.append("created_at < ?")
            params.append(now - older_than_s)
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        with self._lock:
            doomed: set[str] = set()
            if clauses:
                # Either criterion removes an entry: `--older-than 30d --model X` drops old entries and all of X.
                where = " OR ".join(clauses)
                doomed = {r[0] for r in self._conn.execute(f"SELECT key FROM requests WHERE {where}", params)}
            if max_bytes is not None:
                kept = 0
                rows = self._conn.execute(
                    "SELECT key, bytes FROM requests ORDER BY created_at DESC, key"
                ).fetchall()
                for key, size in rows:  # newest first: the oldest go once the newer fill the allowance
                    if key in doomed:
                        continue
                    if kept + size > max_bytes:
                        doomed.add(key)
                    else:
                        kept += size
            figures = self._figures(doomed)
            if not dry_run and doomed:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany("DELETE FROM requests WHERE key = ?", [(k,) for k in doomed])
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                # Give the space back: a pruned cache file does not shrink by itself.
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            left = int(self._conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
        return PruneResult(
            removed=len(doomed),
            removed_bytes=figures[0],
            removed_cost_usd=figures[1],
            remaining=left - (len(doomed) if dry_run else 0),
            dry_run=dry_run,
        )

    def _figures(self, keys: set[str]) -> tuple[int, float]:
        size, cost = 0, 0.0
        ordered = sorted(keys)
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            row = self._conn.execute(
                f"SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(cost_usd), 0) FROM requests "
                f"WHERE key IN ({', '.join('?' for _ in chunk)})",
                chunk,
            ).fetchone()
            size, cost = size + int(row[0]), cost + float(row[1])
        return size, round(cost, 8)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass(frozen=True)
class CacheStats:
    """What `factory cache stats` prints (times are unix seconds; None for an empty cache)."""

    path: str
    entries: int
    record_bytes: int
    file_bytes: int
    cost_usd: float
    oldest: float | None
    newest: float | None
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneResult:
    """What `factory cache prune` removed (or, with `dry_run`, would remove)."""

    removed: int
    removed_bytes: int
    removed_cost_usd: float
    remaining: int
    dry_run: bool
