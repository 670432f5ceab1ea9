"""Progress on both engines, for every stage: prompts done / total per stage (generate, judge, pairs,
rationales, variants), the finalize steps and the quality gate's human-set items, with calls, tokens,
dollars, failures and an ETA. The CLI is driven on a pty as a user sees it; the tracker itself is
tested directly (counting, resumes, the reporter's bounded rate)."""

from __future__ import annotations

import re
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

pytest.register_assert_rewrite("conftest_prefect")

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
from _pty import PtyCommand
from _reliability import REPO, build_config, cli_env, manifest, run_cli, write_config

from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]

# What a user sees, named here rather than imported: the CLI tests read the terminal, not the code.
STAGES = ("generate", "judge", "pairs", "rationales", "variants", "finalize", "gate")
PROMPTS, HUMAN_ITEMS = 12, 6
START_BOUND_S = 300  # interpreter start, imports, Prefect's API: a loaded two-core machine is slow
SILENCE_BOUND_S = 30  # the longest a build may show nothing new: a hang detector, not a benchmark
_FIGURES = re.compile(
    r"(\d+) calls \((\d+) cached(?:, \d+ failed calls)?\), \S+ tokens, \$\d+\.\d{4}, "
    r"(\d+) failures, elapsed \S+, ETA \S+"
)


def gated_spec(server: FakeLLMServer, tmp: Path) -> Path:
    """A small build with the quality gate judging a few items of the shared PandaLM set."""
    # min_kappa -1: any measured kappa passes; the gate's judging is watched here, not its verdict.
    config = build_config(
        server.base_url,
        tmp,
        prompts=PROMPTS,
        shard_size=4,
        concurrency=4,
        run={"name": "progress"},
        gate={"enabled": True, "human_set": "pandalm", "human_set_limit": HUMAN_ITEMS, "min_kappa": -1.0},
    )
    return write_config(tmp / "spec.yaml", config)


def stage_figures(text: str) -> dict[str, list[tuple[int, int | None]]]:
    """Every `stage done/total` shown, per stage, in order."""
    found: dict[str, list[tuple[int, int | None]]] = {s: [] for s in STAGES}
    for stage, done, total in re.findall(rf"\b({'|'.join(STAGES)})\b[ ━╸╺─]*?(\d+)/(\d+|\?)", text):
        found[stage].append((int(done), None if total == "?" else int(total)))
    return found


def check_every_stage_finished(text: str) -> None:
    figures = stage_figures(text)
    for stage in STAGES:
        assert figures[stage], f"no progress shown for {stage}:\n{text[-3000:]}"
        done = [d for d, _ in figures[stage]]
        assert done == sorted(done), f"{stage} went backwards: {done}"
        last_done, last_total = figures[stage][-1]
        assert last_total and last_done == last_total, f"{stage} ended at {last_done}/{last_total}"
    assert figures["generate"][-1] == (PROMPTS, PROMPTS)
    from factory.pipeline.progress import FINALIZE_STEPS

    assert figures["finalize"][-1] == (len(FINALIZE_STEPS), len(FINALIZE_STEPS))
    assert figures["gate"][-1][1] % HUMAN_ITEMS == 0  # the gate's items: HUMAN_ITEMS per judged setting
    assert _FIGURES.search(text), text[-3000:]


def longest_silence(cmd: PtyCommand, start: float) -> float:
    moments = [start, *[at for at in cmd.moments() if at >= start], time.monotonic()]
    return max(b - a for a, b in pairwise(moments))


def test_local_engine_shows_every_stage_and_the_gate_on_a_terminal(tmp_path: Path, shared_data: Path) -> None:
    with FakeLLMServer(latency_s=0.05) as server:
        spec = gated_spec(server, tmp_path)
        with PtyCommand(
            [sys.executable, "-m", "factory", "build", str(spec), "--engine", "local"],
            env=cli_env(),
            cwd=REPO,
        ) as cmd:
            started = cmd.wait_for(r"run folder: (\S+)", timeout=START_BOUND_S)
            began = time.monotonic()
            code = cmd.wait(timeout=START_BOUND_S)
            text = cmd.text
            silence = longest_silence(cmd, began)
    # Complete (the exit code also tells the gate's verdict, which is not the point here).
    assert code is not None and manifest(Path(started.group(1)))["status"] == "complete", text[-3000:]
    assert manifest(Path(started.group(1)))["gate"]["figures"]["n"] > 0  # the gate did judge human items
    check_every_stage_finished(text)
    assert silence < SILENCE_BOUND_S


def test_local_engine_without_a_terminal_writes_progress_lines(tmp_path: Path, shared_data: Path) -> None:
    """A build whose output goes to a file (CI, nohup, a scheduler) gets plain lines at a bounded rate."""
    with FakeLLMServer(latency_s=0.05) as server:
        spec = gated_spec(server, tmp_path)
        done = run_cli(
            "build",
            str(spec),
            "--engine",
            "local",
            env=cli_env(FACTORY_PROGRESS_EVERY_S="1"),
            timeout=START_BOUND_S,
        )
    lines = [line for line in done.stderr.splitlines() if line.startswith("progress: generate")]
    assert lines, done.stderr[-3000:]
    check_every_stage_finished("\n".join(lines))
    assert "\x1b[" not in done.stderr  # no live-display escapes in a log file


@pytest.mark.prefect
def test_prefect_engine_logs_every_stage_and_the_gate_at_a_bounded_rate_and_keeps_an_artifact(
    prefect_api: str, tmp_path: Path, shared_data: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with FakeLLMServer(latency_s=0.05) as server:
        spec = gated_spec(server, tmp_path)
        env = cli_env(
            PREFECT_API_URL=prefect_api,
            PREFECT_HOME=str(tmp_path / "prefect-home"),
            FACTORY_PROGRESS_EVERY_S="1",
        )
        with PtyCommand(
            [sys.executable, "-m", "factory", "build", str(spec), "--engine", "prefect"], env=env, cwd=REPO
        ) as cmd:
            code = cmd.wait(timeout=START_BOUND_S * 2)
            text = cmd.text
            moments = cmd.moments("progress: generate")
    run_dir = re.findall(r"run folder: (\S+)", text)[0]
    assert code is not None and manifest(Path(run_dir))["status"] == "complete", text[-3000:]
    lines = [line for line in text.splitlines() if "progress: generate" in line]
    assert lines, text[-3000:]
    check_every_stage_finished("\n".join(lines))
    # A line at least every SILENCE_BOUND_S from the first to the last (Prefect's log, 1 s rate here).
    assert max((b - a for a, b in pairwise(moments)), default=0) < SILENCE_BOUND_S
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["progress-progress"]))
        )
    assert found, "no progress artifact"
    latest = max(found, key=lambda a: a.created)  # the session's API may hold other runs of this name
    assert latest.type == "progress"
    assert float(latest.data) == 100.0
    assert "gate" in (latest.description or "")


# ---------------------------------------------------------------- the tracker and the reporter


def test_a_prompt_counts_once_per_stage_and_resumed_work_is_not_in_the_eta() -> None:
    from factory.pipeline.progress import BuildProgress

    now = [0.0]
    progress = BuildProgress(clock=lambda: now[0])
    progress.start(
        "run",
        prompts=4,
        usage=lambda: {
            "calls": 7,
            "cache_hits": 2,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "cost_usd": 0.25,
            "errors": 1,
        },
    )
    progress.resumed("generate", ["a", "b"])  # an earlier run's shard file
    progress.advance("generate", "c", failed=1)
    progress.advance("generate", "c", failed=0)  # a salvage round ran it again, and it passed
    now[0] = 10.0
    snap = progress.snapshot()
    assert snap.stage("generate").done == 3 and snap.stage("generate").failed == 0
    assert (snap.calls, snap.cache_hits, snap.tokens, snap.cost_usd, snap.call_errors) == (7, 2, 15, 0.25, 1)
    # One unit of work (c's generate) in 10 s by this run; 20 - 3 units left -> 170 s.
    assert snap.eta_s == pytest.approx(170.0)
    assert snap.line().startswith(
        "generate 3/4 | judge 0/4 | pairs 0/4 | rationales 0/4 | variants 0/4 | finalize 0/4 | gate 0/?"
    )
    progress.gate_items(8)
    progress.gate_done("setting-a", 3)
    progress.gate_done("setting-a", 2)  # reports come in any order; a running count never goes back
    assert progress.snapshot().stage("gate").text() == "gate 3/8"


def test_the_reporter_writes_at_a_bounded_rate_and_once_as_each_stage_finishes() -> None:
    from factory.pipeline.progress import BuildProgress, ProgressReporter

    progress = BuildProgress()
    progress.start("run", prompts=2)
    lines: list[str] = []
    with ProgressReporter(progress, lambda s: lines.append(s.line()), every_s=3600):
        for prompt in ("a", "b"):
            progress.advance("generate", prompt)
        deadline = time.monotonic() + 30
        while not any("generate 2/2" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(50):
            progress.snapshot()  # reading never writes a line
    assert [line.split(" | ")[0] for line in lines] == [
        "generate 2/2"
    ]  # the finished stage, then nothing new
