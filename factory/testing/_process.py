"""The stats snapshot, and the handle of a fake server running in its own process.

A separate process matters for benchmarks: an in-thread server shares the client's GIL, so the
client's measured throughput would include the server's CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self


@dataclass(frozen=True)
class ServerStats:
    """Counters since start or reset. `ok` counts well-formed HTTP 200 completions; token totals
    count only those. `faults` counts injected faults by kind ("429", "500", "timeout", "malformed",
    "truncated", "outage", "first_n_fail"); `by_model` has calls and tokens per requested model."""

    calls: int = 0
    ok: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    # The Files and Batches endpoints (`fake_batches.py`): rows executed count failed rows, not expired ones.
    files_uploaded: int = 0
    batches_created: int = 0
    batch_rows_executed: int = 0
    batch_rows_failed: int = 0
    batch_rows_expired: int = 0
    batches_cancelled: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (status codes become string keys, as JSON requires)."""
        data = asdict(self)
        data["status_counts"] = {str(k): v for k, v in self.status_counts.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerStats:
        values = dict(data)
        values["status_counts"] = {int(k): v for k, v in data.get("status_counts", {}).items()}
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


class SpawnedServer:
    """A fake server in a child process. `close()` (or leaving the `with` block) terminates it."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, stderr: Any, host: str = "127.0.0.1"
    ) -> None:
        self.process = process
        self.host = host
        self.port = port
        self._stderr = stderr

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. "http://127.0.0.1:PORT/v1"."""
        return f"http://{self.host}:{self.port}/v1"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://{self.host}:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def stats(self) -> ServerStats:
        """The server's counters, fetched from GET /stats."""
        return ServerStats.from_dict(self._call("GET", "/stats"))

    def reset(self) -> None:
        """Forget requests and stats on the server (POST /reset)."""
        self._call("POST", "/reset", {})

    def set_outage(self, on: bool) -> None:
        """Start or end a sustained outage (every request 503) on the server."""
        self._call("POST", "/outage", {"on": on})

    def close(self, timeout_s: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after `timeout_s`) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spawn_server(args: list[str], startup_timeout_s: float = 30.0) -> SpawnedServer:
    """Start `python -m factory.testing.fake_server --port 0 ARGS` and wait for its port line."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "factory.testing.fake_server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *args,
    ]
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child; closed by close()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env
    )
    first_line: list[bytes] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: first_line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(startup_timeout_s)
    line = first_line[0].strip() if first_line else b""
    if not line.isdigit():
        if process.poll() is None:
            process.kill()
        process.wait()
        stderr.seek(0)
        detail = stderr.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        stderr.close()
        stdout.close()
        raise RuntimeError(f"fake LLM server did not start within {startup_timeout_s:g}s: {detail[0]}")
    return SpawnedServer(process, int(line), stderr)
