"""SIGKILL a batch-mode build while its batches run, then `--resume`: the resumed build polls the batches
the killed one recorded, so no batch row is sent twice, no completed call is repeated (both counted
at the fake server), and the dataset equals an uninterrupted batch-mode build's.

The builds run as `python -m factory build` subprocesses against a fake server in this process, whose
counters therefore span the kill.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _reliability import REPO, build_config, cli_env, manifest, run_cli, tables, write_config

from factory.config import parse_config
from factory.pipeline import run_build
from factory.testing import FakeLLMServer, default_reply
from factory.testing.fake_batches import BatchPlan

DELAY_S = 3.0  # long enough for the kill to land while the judge's batch is in progress
FAST = {"quiet_s": 0.3, "poll_s": 0.1, "poll_max_s": 0.3}


def ref(body: dict[str, Any]) -> str:
    keys = ("model", "messages", "seed", "temperature", "max_tokens", "response_format")
    blob = json.dumps({k: body.get(k) for k in keys}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def reply(body: dict[str, Any]) -> str:
    """The default reply plus a last line naming the request, so the cache says what completed."""
    return f"{default_reply(body)}\n[ref:{ref(body)}]"


def committed_refs(run_dir: Path) -> set[str]:
    with sqlite3.connect(run_dir / "cache.sqlite") as conn:
        texts = [json.loads(r[0])["text"] for r in conn.execute("SELECT record FROM calls")]
    return {t.rsplit("[ref:", 1)[1].rstrip("]\n ") for t in texts if "[ref:" in t}


def _engine_args() -> list[str]:
    from factory.cli.build_cmd import build

    return ["--engine", "local"] if "engine" in inspect.signature(build).parameters else []


def _config(server: FakeLLMServer, tmp: Path) -> dict[str, Any]:
    tmp.mkdir()
    config = build_config(
        server.base_url, tmp, prompts=8, shard_size=4, concurrency=4, gateway={"batch": FAST}
    )
    config["models"]["judge"]["batch"] = True
    return config


def _open_records(outputs: Path) -> list[dict[str, Any]]:
    records = []
    for path in outputs.glob("*/batches/*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except ValueError:
            pass  # (written atomically: never seen torn, but a reader must not trust that blindly)
    return [r for r in records if r["status"] == "open"]


def test_sigkill_while_batches_run_then_resume_repeats_nothing(tmp_path: Path) -> None:
    with FakeLLMServer(default=reply, batch=BatchPlan(completion_delay_s=DELAY_S)) as server:
        baseline = run_build(parse_config(_config(server, tmp_path / "base"))).run_dir
        rows_needed = server.stats.batch_rows_executed
        assert rows_needed > 0 and manifest(baseline)["status"] == "complete"
        server.reset()

        work = tmp_path / "crash"
        config_path = write_config(work / "build.yaml", _config(server, work))
        build = subprocess.Popen(
            [sys.executable, "-m", "factory", "build", str(config_path), "--quiet", *_engine_args()],
            env=cli_env(),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not _open_records(work / "outputs") and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        recorded = _open_records(work / "outputs")
        assert recorded, f"no batch was recorded; build exited {build.poll()}"
        # Killed while the batch runs: the provider has it, no row of it has been executed yet.
        assert server.stats.batch_rows_executed == 0
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=30)
        assert build.returncode == -signal.SIGKILL
        if build.stderr is not None:
            build.stderr.close()

        created = server.stats.batches_created
        assert {r["batch_id"] for r in recorded} <= {f"batch-fake-{i + 1}" for i in range(created)}
        run_dir = next(p for p in (work / "outputs").iterdir() if (p / "config.yaml").is_file())
        committed = committed_refs(run_dir)
        first_online = server.stats.calls

        resumed = run_cli("build", "--resume", str(run_dir), "--quiet", *_engine_args())
        assert resumed.returncode == 0, resumed.stderr[-2000:]

        stats = server.stats
        batch_rows = server.batches.batch_rows
        outcomes = server.batches.rows
        online_after = [ref(b) for b in server.requests[first_online:]]

    # 0 batches resubmitted: no row went into a second batch, and the recorded batches were polled.
    every_row = [cid for rows in batch_rows.values() for cid in rows]
    assert len(every_row) == len(set(every_row))
    recorded_rows = {cid for r in recorded for cid in r["rows"]}
    assert recorded_rows <= set(every_row)
    assert all(o == ["ok"] for o in outcomes.values())
    # 0 completed calls repeated: each batch row ran once, no committed online call was sent again.
    assert stats.batch_rows_executed == rows_needed
    assert [r for r in online_after if r in committed] == []
    # The dataset equals the uninterrupted build's, and the run's batch records are all closed.
    assert manifest(run_dir)["status"] == "complete"
    assert tables(run_dir) == tables(baseline)
    assert _open_records(work / "outputs") == []
    print(
        f"\nkilled with {len(recorded)} batch(es) in progress ({len(recorded_rows)} rows); "
        f"batches created in all {stats.batches_created}, rows executed {stats.batch_rows_executed} "
        f"of {rows_needed} needed; online calls repeated after resume: 0"
    )
