"""Shared helpers: prompt files, build configs against the fake server, child processes, the machine.

Every measured build runs in a child process (`python -m benchmarks._child ...`): its CPU time and
peak RSS are then the factory's own, not the benchmark driver's, and a SIGKILL hits only the build.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DOC_PATH = REPO / "docs" / "benchmarks.md"

# Offline and quiet, set before any child imports litellm or prefect.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True)
class Options:
    """What one benchmark run asks for. `quick` shrinks every size to a smoke run."""

    quick: bool = False
    work_dir: Path = REPO / "outputs" / "benchmarks"
    memory_prompts: tuple[int, ...] = (1000, 4000)
    loop_prompts: int = 300  # the closed-loop benchmark's build (embedded model, then DPO on CPU)
    progress: bool = True

    def log(self, message: str) -> None:
        if self.progress:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def write_prompts(path: Path, n: int) -> Path:
    """`n` distinct single-turn prompts as jsonl (ids p000000...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    topics = (
        "photosynthesis",
        "compound interest",
        "binary search",
        "the water cycle",
        "plate tectonics",
        "vaccines",
        "inflation",
        "recursion",
        "supply chains",
        "black holes",
    )
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            text = f"Explain {topics[i % len(topics)]} to a curious student (question {i})."
            handle.write(json.dumps({"id": f"p{i:06d}", "prompt": text}) + "\n")
    return path


def build_config(
    base_url: str,
    out_dir: Path,
    prompts: Path,
    *,
    concurrency: int,
    rationales: bool = True,
    shard_size: int | None = None,
    name: str = "bench",
) -> dict[str, Any]:
    """A build config (plain data) whose every role is the fake server, with `concurrency` calls in flight.

    The gateway's overall limit and each model's limit are both `concurrency`; every role names the
    same model and endpoint, so they share one per-model semaphore. Two shards run at once, each with
    `concurrency` prompts in flight, so the gateway (not the stage barriers) is what bounds the calls.
    """
    spec = {"model": "openai/fake", "api_base": base_url, "max_concurrency": concurrency, "max_tokens": 256}
    models = {"generator": spec, "judge": {**spec, "temperature": 0.0}}
    if rationales:
        models["rationale_writer"] = {**spec, "temperature": 0.3}
    return {
        "run": {
            "name": name,
            "output_dir": str(out_dir),
            "seed": 0,
            "shard_size": shard_size or max(64, 4 * concurrency),
            "concurrency": concurrency,
        },
        "models": models,
        "gateway": {"max_concurrency": concurrency},
        "prompts": {"path": str(prompts)},
        "rationales": {"enabled": rationales},
        "variants": {"enabled": False},  # MAPL variants make no model calls; keep the call graph explicit
        "gate": {"enabled": False},  # the gate judges a human set: calls unrelated to the prompt count
    }


def run_child(args: list[str], *, timeout_s: float = 1800.0, python: str | None = None) -> dict[str, Any]:
    """Run `python -m benchmarks._child ARGS`; its last stdout line is a JSON object."""
    command = [python or sys.executable, "-m", "benchmarks._child", *args]
    done = subprocess.run(
        command, check=False, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout_s
    )
    return parse_child_output(done.returncode, done.stdout, done.stderr, command)


def parse_child_output(returncode: int, stdout: str, stderr: str, command: list[str]) -> dict[str, Any]:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark child failed (exit {returncode}): {' '.join(command[2:])}\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class ServerWatch:
    """Polls a spawned fake server's /stats on a thread, to time the window in which model calls
    happened (first request arrived -> last answer sent), apart from a framework's start-up and shut-down.

    Example::

        with ServerWatch(server) as watch:
            run_something()
        watch.active_s, watch.calls
    """

    def __init__(self, server: Any, interval_s: float = 0.1) -> None:
        import threading

        self.server = server
        self.interval_s = interval_s
        self.calls = 0
        self.first_call_at: float | None = None
        self.last_call_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="server-watch", daemon=True)

    def _poll(self) -> None:
        answered = 0
        while True:
            now = time.perf_counter()
            stats = self.server.stats()
            if stats.calls > 0 and self.first_call_at is None:
                # The first request arrived somewhere in the last interval: count half of it.
                self.first_call_at = now - self.interval_s / 2
            if stats.ok > answered:
                answered = stats.ok
                self.last_call_at = now
            self.calls = stats.calls
            if self._stop.wait(self.interval_s):
                return

    @property
    def active_s(self) -> float | None:
        if self.first_call_at is None or self.last_call_at is None:
            return None
        return max(self.last_call_at - self.first_call_at, self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """The machine, the versions that matter, the date and the load at the start of a benchmark."""
    from factory import __version__

    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "factory": __version__,
            "litellm": _version("litellm"),
            "langgraph": _version("langgraph"),
            "polars": _version("polars"),
            "llama_cpp_python": _version("llama_cpp_python"),
        },
        "load_average_at_start": load_average(),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 3)
