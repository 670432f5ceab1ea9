"""A command on a pseudo-terminal, driven as a user at a terminal would: read what it shows, press Ctrl-C.

The command is a session leader on a fresh pty (so it and every process it starts share one process
group, as in a shell's foreground job); `interrupt()` sends SIGINT to that group, which is what a
terminal does on Ctrl-C. Output (stdout and stderr, as on a terminal) is collected by a reader thread.

Example::

    with PtyCommand([sys.executable, "-m", "factory", "build", "spec.yaml"], env=env) as cmd:
        cmd.wait_for(r"run folder: (\\S+)", timeout=60)
        cmd.interrupt()
        code = cmd.wait(timeout=60)
    cmd.text  # everything shown, ANSI sequences removed
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

# CSI / OSC sequences and lone escapes: what rich's live display writes to move the cursor and colour.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def plain(raw: str) -> str:
    """Terminal output as text: escape sequences removed, carriage returns as line breaks."""
    return _ANSI.sub("", raw).replace("\r\n", "\n").replace("\r", "\n")


class PtyCommand:
    """`argv` on its own pty, in its own session and process group."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        columns: int = 200,
        rows: int = 50,
    ) -> None:
        master, slave = os.openpty()
        # A real terminal size: rich sizes its bars from it (a pty starts at 0 x 0).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self._master = master
        self.proc = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self._chunks: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()
        self.started = time.monotonic()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the slave side has gone
                return
            if not data:
                return
            with self._lock:
                self._chunks.append((time.monotonic(), data.decode("utf-8", "replace")))

    @property
    def raw(self) -> str:
        with self._lock:
            return "".join(text for _, text in self._chunks)

    @property
    def text(self) -> str:
        return plain(self.raw)

    def moments(self, containing: str = "") -> list[float]:
        """When output arrived (time.monotonic()), of the reads that contain `containing`."""
        with self._lock:
            return [at for at, text in self._chunks if containing in text]

    def text_since(self, moment: float) -> str:
        """What was shown after `moment` (time.monotonic())."""
        with self._lock:
            return plain("".join(text for at, text in self._chunks if at >= moment))

    def wait_for(self, pattern: str, *, timeout: float, since: float | None = None) -> re.Match[str]:
        """The first match of `pattern` in the output (after `since`); AssertionError on timeout or exit."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            text = self.text if since is None else self.text_since(since)
            match = compiled.search(text)
            if match:
                return match
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader drain what the process wrote last
                text = self.text if since is None else self.text_since(since)
                if match := compiled.search(text):
                    return match
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before showing {pattern!r}:\n{text[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not shown within {timeout:.0f} s:\n{text[-3000:]}")
            time.sleep(0.1)

    def interrupt(self) -> float:
        """Ctrl-C: SIGINT to the whole foreground process group. Returns when it was sent."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return time.monotonic()

    def wait(self, *, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        # Whatever the command started (a Prefect API, say) must not outlive the test.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._reader.join(timeout=5)
        os.close(self._master)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
