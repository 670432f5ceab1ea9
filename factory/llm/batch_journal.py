"""The run folder's record of submitted batches (`<run>/batches/<batch id>.json`), written before any wait.

A batch is recorded, fsync'd, as soon as the provider has accepted it, with the request key of each
of its rows, so a build killed while batches run resumes by polling the very same batches: nothing
is submitted (or paid for) twice. A record is marked `done` once every row it answered is in the
request cache; `open` records are what a resumed build polls first.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from factory._util.atomic_files import atomic_write_json

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class BatchRow:
    """One request of a batch: its cache key, and whom its usage is booked to."""

    key: str
    role: str
    tag: str | None = None


@dataclass
class BatchRecord:
    """One submitted batch. `rows` maps each row's custom_id to its request."""

    batch_id: str
    file_id: str
    endpoint: str  # model@api_base: the collector that owns it
    attempt: int
    rows: dict[str, BatchRow]
    status: Literal["open", "done"] = "open"
    created_at: float = field(default_factory=time.time)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRecord:
        rows = {cid: BatchRow(**row) for cid, row in data["rows"].items()}
        return cls(**{**data, "rows": rows})


class BatchJournal:
    """Batch records in one folder (None: kept in memory only, nothing survives the process)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._memory: dict[str, BatchRecord] = {}
        self._lock = threading.Lock()

    def _path(self, batch_id: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{_UNSAFE.sub('_', batch_id)}.json"

    def record(self, record: BatchRecord) -> None:
        """Write (or rewrite) a record durably: file and folder entry fsync'd before returning."""
        with self._lock:
            self._memory[record.batch_id] = record
            if self.folder is None:
                return
            fresh = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self._path(record.batch_id), asdict(record))
            # The rename is durable only once the folder is synced (and the folder itself, when new).
            for folder in (self.folder, self.folder.parent) if fresh else (self.folder,):
                fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def finish(self, batch_id: str) -> None:
        """Mark a batch done: its answers are in the request cache."""
        with self._lock:
            record = self._memory.get(batch_id)
        if record is not None and record.status != "done":
            record.status = "done"
            self.record(record)

    def open_batches(self, endpoint: str) -> list[BatchRecord]:
        """The recorded batches of `endpoint` not yet done (a killed build's), oldest first."""
        if self.folder is not None and self.folder.is_dir():
            for path in sorted(self.folder.glob("*.json")):
                try:
                    record = BatchRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError, TypeError, KeyError):
                    continue  # not ours (the writes are atomic, so never a torn record)
                with self._lock:
                    self._memory.setdefault(record.batch_id, record)
        with self._lock:
            found = [r for r in self._memory.values() if r.endpoint == endpoint and r.status == "open"]
        return sorted(found, key=lambda r: r.created_at)

    def all(self) -> list[BatchRecord]:
        with self._lock:
            return sorted(self._memory.values(), key=lambda r: r.created_at)
