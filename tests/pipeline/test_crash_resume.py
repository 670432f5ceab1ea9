"""SIGKILL a build at seeded random points and resume it: the final tables equal an uninterrupted
run's, no model call that had completed (was committed to the request cache) is sent again, and no
half-written file is ever visible under a name a reader would trust.

Each build runs in its own process, killed with SIGKILL. To keep ten kills fast on two cores, the
builds are forked from one warm process that has imported the factory once (a fresh interpreter pays
seconds of imports per start); the final resume is a plain `python -m factory build --resume`.
Every reply of the fake server ends with a reference to the request it answers, so the cache's
contents after a kill say exactly which requests had completed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
from _reliability import REPO, build_config, cli_env, manifest, run_cli, tables, write_config

from factory.config import parse_config
from factory.pipeline import run_build
from factory.testing import FakeLLMServer, default_reply

KILLS = 10
SEED = 20261127
_REF = re.compile(r"\[ref:([0-9a-f]{12})\]\s*$")

# A warm parent: imports the factory once, then forks one build per command line read on stdin and
# reports the child's pid and, once reaped, its exit status. Children write to their own log file.
_ZYGOTE = r"""
import json, os, sys
import factory.cli, factory.cli.build_cmd, factory.pipeline, factory.pipeline.estimate  # warm imports
import datasets, polars, litellm, judges.calibration.calibrate, factory.pipeline.finalize.gate  # noqa: F401
for line in sys.stdin:
    command = json.loads(line)
    pid = os.fork()
    if pid == 0:
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            factory.cli.main(command["args"])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        os._exit(code)
    print(json.dumps({"started": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


def ref(body: dict[str, Any]) -> str:
    """A name for one request: equal requests get equal names."""
    keys = ("model", "messages", "seed", "temperature", "max_tokens", "response_format")
    blob = json.dumps({k: body.get(k) for k in keys}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def reply(body: dict[str, Any]) -> str:
    # The protocol-aware default answer, plus a last line naming the request; judge parsers read the
    # score lines above it, so the build behaves as with the plain default.
    return f"{default_reply(body)}\n[ref:{ref(body)}]"


def committed_refs(run_dir: Path) -> set[str]:
    """The requests whose replies are in the run's cache (committed before the process died)."""
    cache = run_dir / "cache.sqlite"
    if not cache.exists():
        return set()
    with sqlite3.connect(cache) as conn:
        texts = [json.loads(r[0])["text"] for r in conn.execute("SELECT record FROM calls")]
    return {m.group(1) for m in (_REF.search(t) for t in texts) if m}


def unreadable_files(run_dir: Path) -> list[str]:
    """Files a reader would trust (no leading dot) that do not parse: partial writes."""
    bad = []
    for path in run_dir.rglob("*"):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(run_dir).parts):
            continue
        try:
            if path.suffix == ".parquet":
                pl.read_parquet(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.name == "config.yaml":
                parse_config(__import__("yaml").safe_load(path.read_text()))
        except Exception as exc:
            bad.append(f"{path.relative_to(run_dir)}: {type(exc).__name__}")
    return bad


def _engine_args() -> list[str]:
    from factory.cli.build_cmd import build

    return ["--engine", "local"] if "engine" in inspect.signature(build).parameters else []


class Zygote:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=REPO,
        )

    def start(self, args: list[str]) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"args": args, "log": str(self.logs)}) + "\n")
        self.proc.stdin.flush()
        return int(json.loads(self.proc.stdout.readline())["started"])

    def wait(self) -> int:
        assert self.proc.stdout is not None
        return int(json.loads(self.proc.stdout.readline())["code"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but is not yet reaped is a zombie: it no longer runs.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _finalizing(outputs: Path, since: float) -> bool:
    """Whether the build has started writing its merged tables (after `since`)."""
    run_dir = _run_dir(outputs)
    if run_dir is None:
        return False
    return any(
        p.exists() and p.stat().st_mtime >= since
        for p in (run_dir / "candidates.parquet", run_dir / "judgments.parquet")
    )


def _set_aside(work: Path, run_dir: Path, index: int) -> Path:
    """Move a finished build out of the way so the next round starts from an empty outputs folder."""
    target = work / f"round-{index}"
    (work / "outputs").rename(target)
    return target / run_dir.name


def _run_dir(outputs: Path) -> Path | None:
    runs = [p for p in outputs.glob("*") if (p / "config.yaml").is_file()] if outputs.is_dir() else []
    assert len(runs) <= 1, runs
    return runs[0] if runs else None


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    with FakeLLMServer(default=reply, latency_s=0.02) as server:
        # The uninterrupted run, in this process.
        (tmp_path / "base").mkdir()
        base_cfg = build_config(server.base_url, tmp_path / "base", prompts=12, shard_size=4, concurrency=2)
        baseline_dir = run_build(parse_config(base_cfg)).run_dir
        baseline = tables(baseline_dir)
        baseline_refs = [ref(b) for b in server.requests]
        calls_needed = len(baseline_refs)
        assert len(set(baseline_refs)) == calls_needed  # every call of a build is a distinct request

        work = tmp_path / "crash"
        work.mkdir()
        config_path = write_config(
            work / "build.yaml", build_config(server.base_url, work, prompts=12, shard_size=4, concurrency=2)
        )
        server.reset()
        zygote = Zygote(work / "builds.log")
        kills: list[dict[str, Any]] = []
        repeats: list[str] = []
        finished_rounds: list[Path] = []
        try:
            # Seeded kill points: most after N more calls reached the server (mid-stage), some while
            # the tables are merged and the dataset written, some after a random delay from the start.
            # On a fast machine a build can finish before all its kills land: it is then checked and
            # moved aside, and a new round starts from an empty run folder.
            attempts = 0
            while len(kills) < KILLS:
                attempts += 1
                assert attempts <= 4 * KILLS, f"only {len(kills)} kills landed in {attempts} attempts"
                run_dir = _run_dir(work / "outputs")
                committed = committed_refs(run_dir) if run_dir else set()
                first_request = server.stats.calls
                args = ["build", "--resume", str(run_dir)] if run_dir else ["build", str(config_path)]
                pid = zygote.start([*args, "--quiet", *_engine_args()])
                started, kind = time.time(), rng.random()
                if kind < 0.6:  # mid-stage: once the build has sent a few more calls
                    target = first_request + rng.randint(1, max(1, calls_needed // 6))
                    point = f"after call {target}"
                    while _alive(pid) and server.stats.calls < target:
                        time.sleep(0.002)
                    time.sleep(rng.uniform(0.0, 0.03))
                elif kind < 0.8:  # while the shard tables are merged and the dataset is written
                    point = "while finalizing"
                    while _alive(pid) and not _finalizing(work / "outputs", started):
                        time.sleep(0.002)
                    time.sleep(rng.uniform(0.0, 0.2))
                else:  # anywhere: loading, stage boundaries, ...
                    delay = rng.uniform(0.05, 1.5)
                    point = f"{delay:.2f}s after start"
                    deadline = time.monotonic() + delay
                    while _alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.002)
                killed = _alive(pid)
                if killed:
                    os.kill(pid, signal.SIGKILL)
                code = zygote.wait()
                sent = [ref(b) for b in server.requests[first_request:]]
                repeats += [r for r in sent if r in committed]
                if not killed:
                    assert code in (0, 3), f"build exited {code}; see {work / 'builds.log'}"
                    run_dir = _run_dir(work / "outputs")
                    if run_dir is not None and manifest(run_dir)["status"] == "complete":
                        finished_rounds.append(_set_aside(work, run_dir, len(finished_rounds)))
                    continue
                assert code == -signal.SIGKILL
                time.sleep(0.1)  # let the server answer what was in flight, as it would anyway
                run_dir = _run_dir(work / "outputs")
                kills.append(
                    {
                        "point": point,
                        "calls_so_far": server.stats.calls,
                        "committed": len(committed_refs(run_dir)) if run_dir else 0,
                        "partial_files": unreadable_files(run_dir) if run_dir else [],
                    }
                )
        finally:
            zygote.close()

        # The last round ends with a plain CLI resume (a fresh interpreter, as a user would run it).
        run_dir = _run_dir(work / "outputs")
        if run_dir is None:  # the last kill landed before the run folder existed
            final = run_cli("build", str(config_path), "--quiet", *_engine_args())
            run_dir = _run_dir(work / "outputs")
            committed = set()
        else:
            committed = committed_refs(run_dir)
            first_request = server.stats.calls
            final = run_cli("build", "--resume", str(run_dir), "--quiet", *_engine_args())
            sent = [ref(b) for b in server.requests[first_request:]]
            repeats += [r for r in sent if r in committed]
        assert final.returncode == 0, final.stderr[-2000:]
        assert run_dir is not None
        all_sent = [ref(b) for b in server.requests]

    assert len(kills) >= KILLS
    assert [k for k in kills if k["partial_files"]] == []
    assert repeats == []  # no call that had completed before a kill was sent again
    # Only calls cut off in flight were sent twice: every request of the build, and nothing else.
    assert set(all_sent) == set(baseline_refs)
    for finished in [*finished_rounds, run_dir]:
        assert manifest(finished)["status"] == "complete"
        assert tables(finished) == baseline
        assert list(finished.rglob(".*.tmp")) == []  # no temporary file survives the resume
        assert unreadable_files(finished) == []
    rounds = len(finished_rounds) + 1
    lost = len(all_sent) - rounds * calls_needed
    print(
        f"\n{len(kills)} kills over {rounds} build(s): {[k['point'] for k in kills]}; server requests "
        f"{len(all_sent)} for {rounds} x {calls_needed} distinct calls ({lost} cut off in flight and re-sent); "
        f"repeats of completed calls: 0"
    )
