"""Resume cost: SIGKILL a running build at about half way, resume it, count the repeated calls.

Three builds of the same prompts against one spawned fake server (answers are a pure function of
the request, so every run sends the same requests): an uninterrupted reference run (U calls), a run
killed with SIGKILL once the server has seen about U/2 calls (K calls), and `--resume` of the killed
run folder (R calls). Repeated calls = K + R - U; the calls in flight at the kill never completed
(no reply reached the client), so the repeats of *completed* calls are R - (U - cached at kill),
where "cached at kill" is the number of replies committed to the run's SQLite cache. Target: 0.
The final pairs tables of the reference and the resumed run are compared, timing columns excluded.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, Options, build_config, child_env, load_average, run_child, write_prompts

NAME = "resume_cost"
LATENCY_S = 0.02
CONCURRENCY = 16
# Columns that hold wall-clock measurements or run ids, which differ between any two runs.
TIMING_KEYS = ("latency", "duration", "elapsed", "_at", "timestamp", "run_id", "time")


def _cached_calls(run_dir: Path) -> int:
    with sqlite3.connect(run_dir / "cache.sqlite") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


def _kill_at(config_path: Path, server: Any, at_calls: int, timeout_s: float) -> tuple[Path, int]:
    """Start a build and SIGKILL it once the server has received `at_calls` calls; return its run folder."""
    command = [sys.executable, "-m", "benchmarks._child", "build", str(config_path)]
    process = subprocess.Popen(
        command, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout_s
    try:
        while server.stats().calls < at_calls:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the build finished before the kill point ({at_calls} calls): raise the prompt count"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the build did not reach {at_calls} calls in {timeout_s:.0f}s")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    killed_at = server.stats().calls
    runs = config_path.parent / "runs"
    run_dir = max((p for p in runs.iterdir() if p.name.startswith("killed")), key=lambda p: p.stat().st_mtime)
    return run_dir, killed_at


def _drop_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _drop_timing(v)
            for k, v in sorted(value.items())
            if not any(t in k.lower() for t in TIMING_KEYS)
        }
    if isinstance(value, list):
        return [_drop_timing(v) for v in value]
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return _drop_timing(json.loads(value))
        except ValueError:
            return value
    return value


def comparable_pairs(run_dir: Path) -> list[dict[str, Any]]:
    """The run's pairs rows, sorted by pair id, without timing columns or timing keys inside JSON."""
    import polars as pl

    frame = pl.read_parquet(run_dir / "pairs.parquet")
    keep = [c for c in frame.columns if not any(t in c.lower() for t in TIMING_KEYS)]
    rows = frame.select(keep).to_dicts()
    return sorted((_drop_timing(r) for r in rows), key=lambda r: str(r.get("pair_id")))


def _dataset_equal(a: Path, b: Path) -> bool | None:
    import polars as pl

    files = (
        sorted(p.relative_to(a) for p in (a / "dataset").rglob("*.parquet"))
        if (a / "dataset").is_dir()
        else []
    )
    if not files:
        return None
    for rel in files:
        if not (b / rel).is_file():
            return False
        if not pl.read_parquet(a / rel).equals(pl.read_parquet(b / rel)):
            return False
    return True


def run(opts: Options) -> dict[str, Any]:
    from factory.testing import FakeLLMServer

    n_prompts = 24 if opts.quick else 400
    work = opts.work_dir / NAME
    prompts = write_prompts(work / f"prompts-{n_prompts}.jsonl", n_prompts)
    with FakeLLMServer.spawn(latency_s=LATENCY_S) as server:
        paths = {}
        for name in ("reference", "killed"):
            config = build_config(server.base_url, work / "runs", prompts, concurrency=CONCURRENCY, name=name)
            paths[name] = work / f"config-{name}.json"
            paths[name].write_text(json.dumps(config))
        opts.log(f"{NAME}: uninterrupted reference build of {n_prompts} prompts")
        server.reset()
        reference = run_child(["build", str(paths["reference"])])
        uninterrupted = server.stats().calls
        server.reset()
        kill_at = uninterrupted // 2
        opts.log(f"{NAME}: same build, SIGKILL at {kill_at} of {uninterrupted} calls")
        run_dir, killed_calls = _kill_at(paths["killed"], server, kill_at, timeout_s=1800)
        cached_at_kill = _cached_calls(run_dir)
        server.reset()
        opts.log(f"{NAME}: resume {run_dir.name}")
        load = load_average()
        resumed = run_child(["build", "--resume", str(run_dir)])
        resumed_calls = server.stats().calls
    same_pairs = comparable_pairs(Path(reference["run_dir"])) == comparable_pairs(run_dir)
    repeated = killed_calls + resumed_calls - uninterrupted
    repeated_completed = resumed_calls - (uninterrupted - cached_at_kill)
    opts.log(
        f"{NAME}: {repeated} calls repeated ({repeated_completed} of them completed before the kill); "
        f"pairs equal: {same_pairs}"
    )
    return {
        "prompts": n_prompts,
        "concurrency": CONCURRENCY,
        "latency_s": LATENCY_S,
        "uninterrupted_calls": uninterrupted,
        "killed_run_calls": killed_calls,
        "cached_at_kill": cached_at_kill,
        "in_flight_lost_at_kill": killed_calls - cached_at_kill,
        "resumed_run_calls": resumed_calls,
        "repeated_calls": repeated,
        "repeated_completed_calls": repeated_completed,
        "pairs_equal": same_pairs,
        "pairs_rows": len(comparable_pairs(run_dir)),
        "dataset_equal": _dataset_equal(Path(reference["run_dir"]), run_dir),
        "resumed_status": resumed["status"],
        "load_average": load,
        "targets": {
            "repeated_completed_calls": {"target": 0, "measured": repeated_completed},
            "pairs_equal": {"target": True, "measured": same_pairs},
        },
    }
