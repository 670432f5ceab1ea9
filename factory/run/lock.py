"""One process at a time per run folder.

Two builds resuming one run folder at once would both pay for the calls neither has cached yet,
and race on the shard files. A run folder is therefore locked for the whole build with an advisory
`flock` on `<run>/.lock`: the kernel drops it when the holder exits, however it exits (SIGKILL
included), so a killed build never leaves a stale lock behind. The holder writes who it is into
the file, so the second process can say whom it waits for.

Re-entrant within a process: the CLI takes the lock before it rewrites a resumed run's config and
the pipeline takes it again for the build; both share one file descriptor, because a second
`flock` from the same process on another descriptor would conflict with the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from factory._util.errors import UserError

LOCK_NAME = ".lock"

_held: dict[str, tuple[int, int]] = {}  # resolved run path -> (fd, depth)
_guard = threading.Lock()


@dataclass
class RunLock:
    """A held lock on one run folder; `release()` (or leaving the `with` block) lets it go."""

    root: Path
    _key: str
    _released: bool = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _guard:
            fd, depth = _held[self._key]
            if depth > 1:
                _held[self._key] = (fd, depth - 1)
                return
            del _held[self._key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_folder(root: Path) -> RunLock:
    """Lock `root` for this process, or raise `UserError` naming the process that holds it."""
    key = str(root.resolve())
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            return RunLock(root, key)
        path = root / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot lock run folder {root}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise UserError(
                f"run folder {root} is in use by {holder}; wait for it to end (or stop it) before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_record()).encode("utf-8"), 0)
        _held[key] = (fd, 1)
        return RunLock(root, key)


def _holder_record() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200],
    }


def _describe_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another process"
    return f"pid {record['pid']} on {record.get('host', '?')} since {record.get('since', '?')}"
