"""Ctrl-C on `factory build`, as at a terminal: the command runs on a pty in its own process group and
gets SIGINT to the whole group mid-build (the fake server answers slowly, so calls are in flight).

One Ctrl-C must stop it with one line ("stopped: N of M prompts done; resume with: ..."), exit 130,
a manifest that says stopped/interrupted, and a run folder that `--resume` finishes; on the Prefect
engine the flow run must end Cancelled and the temporary Prefect API must live through the Ctrl-C.
A second Ctrl-C exits at once. Times are bounded generously: the bounds catch hangs, not slowness.

"No completed call is repeated" is checked per request: every reply of the fake server ends with
a reference to its request, so the request cache's contents after the interrupt say which calls
had been answered and recorded. Calls in flight at the interrupt were never answered to the build
(cancelled, or answered after it had stopped listening), so the resume sends them again; they are
the only requests the two runs together may send beyond what one uninterrupted build sends.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("conftest_prefect")

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
from _pty import PtyCommand
from _reliability import REPO, build_config, cli_env, manifest, tables, write_config

from factory.testing import FakeLLMServer, default_reply

pytest_plugins = ["conftest_prefect"]

PROMPTS, SHARD, CONCURRENCY = 24, 4, 4
LATENCY_S = 0.5  # slow enough that the build is mid-flight when Ctrl-C comes
STOP_BOUND_S = 20  # Ctrl-C to exit; a hang detector (today: exit 0 at once, or ~150 s / never on Prefect)
START_BOUND_S = 300  # interpreter start and imports (and Prefect's API) on a loaded two-core machine
_REF = re.compile(r"\[ref:([0-9a-f]{12})\]\s*$")
_STOPPED = re.compile(r"stopped: (\d+) of (\d+) prompts done; resume with: factory build --resume (\S+)")


def ref(body: dict[str, Any]) -> str:
    """A name for one request: equal requests get equal names."""
    keys = ("model", "messages", "seed", "temperature", "max_tokens", "response_format")
    blob = json.dumps({k: body.get(k) for k in keys}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def reply(body: dict[str, Any]) -> str:
    # The protocol-aware default answer with a last line naming the request (parsers read the lines above).
    return f"{default_reply(body)}\n[ref:{ref(body)}]"


def cached_refs(run_dir: Path) -> set[str]:
    """The requests whose replies the run's request cache holds (answered and recorded)."""
    with sqlite3.connect(run_dir / "cache.sqlite") as conn:
        texts = [json.loads(r[0])["text"] for r in conn.execute("SELECT record FROM calls")]
    return {m.group(1) for m in (_REF.search(t) for t in texts) if m}


def uninterrupted_refs(tmp: Path) -> tuple[Counter[str], Path]:
    """The requests of one uninterrupted build of the same spec (its own fast server), and its run folder."""
    from factory.config import parse_config
    from factory.pipeline import run_build

    (tmp / "baseline").mkdir()
    with FakeLLMServer(default=reply) as fast:
        result = run_build(
            parse_config(
                build_config(
                    fast.base_url,
                    tmp / "baseline",
                    prompts=PROMPTS,
                    shard_size=SHARD,
                    concurrency=CONCURRENCY,
                )
            )
        )
        assert result.manifest["status"] == "complete"
        return Counter(ref(b) for b in fast.requests), result.run_dir


def resume_in_process(run_dir: Path) -> int:
    """`factory build --resume RUN_DIR --engine local` in this process (saves an interpreter start)."""
    from factory.cli import main

    try:
        main(["build", "--resume", str(run_dir), "--engine", "local", "--quiet"])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def interrupted_build(
    server: FakeLLMServer, spec: Path, env: dict[str, str], engine: str, after_answers: int
) -> tuple[int, float, str, re.Match[str]]:
    """`factory build` on a pty, Ctrl-C once `after_answers` calls are answered: (exit code,
    seconds from Ctrl-C to exit, what it showed after the Ctrl-C, the stopped line)."""
    with PtyCommand(
        [sys.executable, "-m", "factory", "build", str(spec), "--engine", engine], env=env, cwd=REPO
    ) as cmd:
        cmd.wait_for(r"run folder: ", timeout=START_BOUND_S)
        deadline = time.monotonic() + START_BOUND_S
        while server.stats.ok < after_answers:
            assert cmd.proc.poll() is None, f"the build ended before the Ctrl-C:\n{cmd.text[-3000:]}"
            assert time.monotonic() < deadline, f"no model calls answered:\n{cmd.text[-3000:]}"
            time.sleep(0.05)
        pressed = cmd.interrupt()
        code = cmd.wait(timeout=STOP_BOUND_S * 3)
        took = time.monotonic() - pressed
        shown = cmd.text_since(pressed)
    stopped = _STOPPED.search(shown)
    assert stopped, f"no stopped line after Ctrl-C:\n{shown[-3000:]}"
    return code, took, shown, stopped


def check_resume_repeats_nothing_answered(
    server: FakeLLMServer, run_dir: Path, first_run: Counter[str], baseline: Counter[str], baseline_dir: Path
) -> None:
    answered_before = cached_refs(run_dir)
    sent_before = len(server.requests)
    assert resume_in_process(run_dir) == 0
    resumed = Counter(ref(b) for b in server.requests[sent_before:])
    # 1. No call answered and recorded before the interrupt is sent again.
    assert not set(resumed) & answered_before
    # 2. Together the two runs did the build's work, and nothing else ...
    assert set(first_run) | set(resumed) == set(baseline)
    # 3. ... and what they sent beyond one build's requests were calls in flight at the interrupt:
    #    sent by the first run, never recorded as answered, at most as many as were ever in flight.
    extra = (first_run + resumed) - baseline
    in_flight = set(first_run) - answered_before
    assert set(extra) <= in_flight
    assert sum(extra.values()) <= server.stats.peak_in_flight
    # The resumed build is the uninterrupted one, row for row.
    assert tables(run_dir) == tables(baseline_dir)
    assert manifest(run_dir)["status"] == "complete"


def check_interrupted(code: int, took: float, shown: str, stopped: re.Match[str]) -> Path:
    assert code == 130, shown[-3000:]
    assert took < STOP_BOUND_S, f"took {took:.1f} s to stop"
    assert "Traceback" not in shown, shown[-3000:]
    done, total, run_dir = int(stopped.group(1)), int(stopped.group(2)), Path(stopped.group(3))
    assert total == PROMPTS and done < total
    m = manifest(run_dir)
    assert (m["status"], m["stopped_reason"], m["outcome"]["exit_code"]) == ("stopped", "interrupted", 130)
    assert m["counts"]["prompts_done"] == done
    return run_dir


def test_ctrl_c_on_the_local_engine_stops_with_a_resume_line_and_resumes_repeating_no_answered_call(
    tmp_path: Path,
) -> None:
    baseline, baseline_dir = uninterrupted_refs(tmp_path)
    with FakeLLMServer(default=reply, latency_s=LATENCY_S) as server:
        spec = write_config(
            tmp_path / "spec.yaml",
            build_config(
                server.base_url, tmp_path, prompts=PROMPTS, shard_size=SHARD, concurrency=CONCURRENCY
            ),
        )
        result = interrupted_build(
            server, spec, cli_env(), "local", after_answers=sum(baseline.values()) // 4
        )
        run_dir = check_interrupted(*result)
        first_run = Counter(ref(b) for b in server.requests)
        check_resume_repeats_nothing_answered(server, run_dir, first_run, baseline, baseline_dir)


@pytest.mark.prefect
def test_ctrl_c_on_the_prefect_engine_cancels_the_flow_run_and_resumes_repeating_no_answered_call(
    prefect_api: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter

    baseline, baseline_dir = uninterrupted_refs(tmp_path)
    with FakeLLMServer(default=reply, latency_s=LATENCY_S) as server:
        spec = write_config(
            tmp_path / "spec.yaml",
            build_config(
                server.base_url, tmp_path, prompts=PROMPTS, shard_size=SHARD, concurrency=CONCURRENCY
            ),
        )
        env = cli_env(PREFECT_API_URL=prefect_api, PREFECT_HOME=str(tmp_path / "prefect-home"))
        started = time.time()
        result = interrupted_build(server, spec, env, "prefect", after_answers=sum(baseline.values()) // 4)
        run_dir = check_interrupted(*result)
        with get_client(sync_client=True) as client:
            runs = [r for r in client.read_flow_runs() if r.created and r.created.timestamp() >= started - 5]
            assert [r.state.type.value for r in runs] == ["CANCELLED"]
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])),
                task_run_filter=TaskRunFilter(),
            )
        assert tasks and not [
            t.name for t in tasks if t.state and t.state.type.value in ("RUNNING", "PENDING")
        ]
        first_run = Counter(ref(b) for b in server.requests)
        check_resume_repeats_nothing_answered(server, run_dir, first_run, baseline, baseline_dir)


@pytest.mark.prefect
def test_the_temporary_prefect_api_lives_through_ctrl_c_and_records_the_cancelled_run(tmp_path: Path) -> None:
    """The default set-up: no PREFECT_API_URL, so the build starts Prefect's temporary API, which
    shares the terminal's process group. Today Ctrl-C kills it: a minute of connection errors, then
    exit 1 (or a hang), the flow run left Running in its database."""
    with FakeLLMServer(default=reply, latency_s=LATENCY_S) as server:
        spec = write_config(
            tmp_path / "spec.yaml",
            build_config(
                server.base_url, tmp_path, prompts=PROMPTS, shard_size=SHARD, concurrency=CONCURRENCY
            ),
        )
        home = tmp_path / "prefect-home"
        env = cli_env(
            PREFECT_HOME=str(home), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=str(START_BOUND_S)
        )
        env.pop("PREFECT_API_URL", None)
        code, took, shown, stopped = interrupted_build(server, spec, env, "prefect", after_answers=20)
    check_interrupted(code, took, shown, stopped)
    assert "Finished in state Cancelled" in shown
    for symptom in ("Unable to connect", "Error logging to API", "All connection attempts failed"):
        assert symptom not in shown, shown[-3000:]
    # The temporary API's own database (it is gone with the command): the run was recorded Cancelled.
    with sqlite3.connect(home / "prefect.db") as db:
        assert [s for (s,) in db.execute("SELECT state_type FROM flow_run")] == ["CANCELLED"]


_STUCK = r"""
import asyncio, sys
from pathlib import Path
from factory._util import interrupts
async def stuck_clean_up() -> None:
    # A clean-up that does not end when cancelled (what a wedged engine or a hung server call does).
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        print("first Ctrl-C: stopping", flush=True)
        await asyncio.sleep(3600)

interrupts.at_hard_exit(lambda: Path(sys.argv[1]).write_text("cleaned up"))
with interrupts.handle_interrupts(raise_when_idle=False, resume_hint=lambda: "/runs/demo-1"):
    print("running", flush=True)
    asyncio.run(interrupts.stoppable(stuck_clean_up()))
"""


def test_a_second_ctrl_c_exits_at_once_when_the_first_cannot_finish(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    with PtyCommand([sys.executable, "-c", _STUCK, str(marker)], env=cli_env(), cwd=REPO) as cmd:
        cmd.wait_for("running", timeout=START_BOUND_S)
        cmd.interrupt()
        cmd.wait_for("first Ctrl-C: stopping", timeout=STOP_BOUND_S)
        assert cmd.proc.poll() is None  # the first press only asked
        pressed = cmd.interrupt()
        code = cmd.wait(timeout=STOP_BOUND_S * 3)
        took = time.monotonic() - pressed
        shown, raw = cmd.text, cmd.raw
    assert code == 130
    assert took < STOP_BOUND_S
    assert "interrupted again: exiting now; resume with: factory build --resume /runs/demo-1" in shown
    assert "Traceback" not in shown
    assert marker.read_text() == "cleaned up"  # the last-moment clean-ups ran (a temporary API's stop)
    assert "\x1b[?25h" in raw  # the cursor is shown again (live progress bars hide it)
