"""How far a build is: prompts done per stage, the finalize steps, the gate's human-set items, and
the gateway's calls, tokens, dollars and failures so far, with an ETA. One tracker per build, fed
by the shards (`ShardRun`), `finalize` and the gate; both engines show it (the CLI's bars, the
Prefect flow's log lines and progress artifact, `ProgressReporter` lines where there is no terminal).

It is thread-safe: Prefect runs shards on several threads, and displays read it from their own.
A prompt counts once per stage however often it runs there (a salvage round reruns some; a resumed
build finds some stages finished on disk, which count as done but not toward the ETA's rate).

Example::

    progress = BuildProgress()
    progress.start("outputs/demo-...", prompts=40, usage=gateway.usage.snapshot)
    progress.advance("generate", "p1", failed=0)
    progress.snapshot().line()  # 'generate 1/40 | judge 0/40 | ... | 12 calls (0 cached), ...'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

# The stages every prompt goes through (factory.pipeline.shard), then the build's last steps.
PROMPT_STAGES = ("generate", "judge", "pairs", "rationales", "variants")
FINALIZE_STEPS = ("tables", "gate", "dataset", "manifest")
GATE = "gate"
FINALIZE = "finalize"


@dataclass(frozen=True)
class StageFigures:
    name: str
    done: int
    total: int | None  # None: not known yet (the gate before it starts)
    failed: int = 0

    def text(self) -> str:
        return f"{self.name} {self.done}/{'?' if self.total is None else self.total}"


@dataclass(frozen=True)
class ProgressSnapshot:
    """The figures at one moment; `line()` is what log lines and the CLI's summary show."""

    run_dir: str | None
    stages: tuple[StageFigures, ...]
    calls: int
    cache_hits: int
    tokens: int
    cost_usd: float
    call_errors: int
    failures: int
    elapsed_s: float
    eta_s: float | None
    # Batch mode: batches by state (submitted, in_progress, finalizing, done); None without batches.
    batches: dict[str, int] | None = None

    def stage(self, name: str) -> StageFigures:
        return next(s for s in self.stages if s.name == name)

    @property
    def prompts_done(self) -> int:
        """Prompts through every stage."""
        return self.stage(PROMPT_STAGES[-1]).done

    @property
    def prompts_total(self) -> int:
        return self.stage(PROMPT_STAGES[0]).total or 0

    @property
    def percent(self) -> float:
        """Share of the build done, 0-100: the prompt stages weigh 90, the finalize steps 10."""
        prompt_share = sum(s.done for s in self.stages if s.name in PROMPT_STAGES) / max(
            1, sum(s.total or 0 for s in self.stages if s.name in PROMPT_STAGES)
        )
        final = self.stage(FINALIZE)
        return round(100 * (0.9 * prompt_share + 0.1 * final.done / max(1, final.total or 1)), 1)

    def figures_text(self) -> str:
        errors = f", {self.call_errors} failed calls" if self.call_errors else ""
        b = self.batches
        batches = (
            (
                f"batches {b.get('submitted', 0)} submitted / {b.get('in_progress', 0)} in progress / "
                f"{b.get('finalizing', 0)} finalizing / {b.get('done', 0)} done, "
            )
            if b
            else ""
        )
        return (
            f"{batches}{self.calls} calls ({self.cache_hits} cached{errors}), {_count(self.tokens)} tokens, "
            f"${self.cost_usd:.4f}, {self.failures} failures, elapsed {_duration(self.elapsed_s)}, "
            f"ETA {'?' if self.eta_s is None else _duration(self.eta_s)}"
        )

    def line(self) -> str:
        return f"{' | '.join(s.text() for s in self.stages)} | {self.figures_text()}"

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "stages": {s.name: {"done": s.done, "total": s.total, "failed": s.failed} for s in self.stages},
        }


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else str(n)


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class BuildProgress:
    """The progress of one build (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.run_dir: str | None = None  # read without the lock by a signal handler: a plain attribute
        self._prompts = 0
        self._started = clock()
        self._usage: Callable[[], dict[str, Any]] = dict
        # stage -> prompt id -> failure rows it left there (a rerun replaces the figure)
        self._marks: dict[str, dict[str, int]] = {s: {} for s in PROMPT_STAGES}
        self._resumed: dict[str, set[str]] = {s: set() for s in PROMPT_STAGES}
        self._finalize_done = 0
        self._gate_total: int | None = None
        self._gate_started: float | None = None
        self._gate_parts: dict[str, int] = {}

    # ------------------------------------------------------------------ fed by the build

    def start(
        self, run_dir: str | Path, prompts: int, *, usage: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        """The build's run folder and prompt count; `usage` returns the gateway's usage snapshot."""
        with self._lock:
            self.run_dir = str(run_dir)
            self._prompts = prompts
            self._started = self._clock()
            if usage is not None:
                self._usage = usage

    def watch_usage(self, usage: Callable[[], dict[str, Any]]) -> None:
        with self._lock:
            self._usage = usage

    def advance(self, stage: str, prompt_id: str, *, failed: int = 0) -> None:
        """Prompt `prompt_id` is through `stage`, leaving `failed` failure rows there."""
        with self._lock:
            self._marks[stage][prompt_id] = failed

    def resumed(self, stage: str, prompt_ids: Iterable[str]) -> None:
        """Prompts whose `stage` an earlier run finished (its shard file is on disk)."""
        with self._lock:
            for prompt_id in prompt_ids:
                self._marks[stage].setdefault(prompt_id, 0)
                self._resumed[stage].add(prompt_id)

    def finalize_step(self, step: str) -> None:
        """One of `FINALIZE_STEPS` is done."""
        with self._lock:
            self._finalize_done = max(self._finalize_done, FINALIZE_STEPS.index(step) + 1)

    def gate_items(self, total: int) -> None:
        """The gate is about to judge `total` human-set items (all its settings together)."""
        with self._lock:
            self._gate_total = total
            self._gate_started = self._clock()

    def gate_done(self, part: str, done: int) -> None:
        """`done` items of one gate setting `part` are judged (a running count, as judges report it)."""
        with self._lock:
            self._gate_parts[part] = max(done, self._gate_parts.get(part, 0))

    def marks(self, prompt_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """This tracker's figures for some prompts, to hand to the tracker of another process."""
        wanted = set(prompt_ids)
        with self._lock:
            return {
                stage: {p: n for p, n in marks.items() if p in wanted} for stage, marks in self._marks.items()
            }

    def merge(self, marks: dict[str, dict[str, int]]) -> None:
        """Figures another process's tracker saw (a Dask worker's shard)."""
        with self._lock:
            for stage, figures in marks.items():
                self._marks[stage].update(figures)

    # ------------------------------------------------------------------ read by displays

    def snapshot(self) -> ProgressSnapshot:
        usage = self._usage() or {}
        with self._lock:
            now = self._clock()
            prompts = self._prompts
            stages = [
                StageFigures(s, len(self._marks[s]), prompts, sum(self._marks[s].values()))
                for s in PROMPT_STAGES
            ]
            stages.append(StageFigures(FINALIZE, self._finalize_done, len(FINALIZE_STEPS)))
            gate_done = sum(self._gate_parts.values())
            stages.append(StageFigures(GATE, min(gate_done, self._gate_total or gate_done), self._gate_total))
            elapsed = now - self._started
            eta = self._eta(elapsed, prompts)
        return ProgressSnapshot(
            run_dir=self.run_dir,
            stages=tuple(stages),
            calls=int(usage.get("calls", 0)),
            cache_hits=int(usage.get("cache_hits", 0)),
            tokens=int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)),
            cost_usd=float(usage.get("cost_usd", 0.0)),
            call_errors=int(usage.get("errors", 0)),
            failures=sum(s.failed for s in stages),
            elapsed_s=elapsed,
            eta_s=eta,
            batches=dict(usage["batches"]) if usage.get("batches") else None,
        )

    def _eta(self, elapsed: float, prompts: int) -> float | None:
        """Seconds left for the prompt stages at this run's own rate (work an earlier run did is
        not counted in the rate); for the gate, at the gate's rate so far. None when no rate yet."""
        todo = prompts * len(PROMPT_STAGES)
        done = sum(len(self._marks[s]) for s in PROMPT_STAGES)
        resumed = sum(len(self._resumed[s]) for s in PROMPT_STAGES)
        if done < todo:
            ran = done - resumed
            return elapsed * (todo - done) / ran if ran > 0 else None
        if self._finalize_done >= len(FINALIZE_STEPS):
            return 0.0
        gate_done = sum(self._gate_parts.values())
        if self._gate_total and self._gate_started is not None and 0 < gate_done < self._gate_total:
            return (self._clock() - self._gate_started) * (self._gate_total - gate_done) / gate_done
        return None


class ProgressReporter:
    """A progress line at a bounded rate, from a daemon thread: at most one every `every_s`
    seconds, plus one as each stage finishes (a fixed handful more), plus one at `stop()`.
    `emit` gets the snapshot (a logger call, a print, a Prefect artifact update)."""

    def __init__(
        self, progress: BuildProgress, emit: Callable[[ProgressSnapshot], None], *, every_s: float = 10.0
    ) -> None:
        self.progress, self.emit, self.every_s = progress, emit, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="factory-progress", daemon=True)
        self._finished: set[str] = set()
        self._last: str | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join(timeout=5)
            self._report(force=True)

    def _run(self) -> None:
        next_at = time.monotonic() + self.every_s
        while not self._stop.wait(min(0.5, self.every_s)):
            snapshot = self.progress.snapshot()
            finished = {s.name for s in snapshot.stages if s.total and s.done >= s.total}
            if time.monotonic() >= next_at or finished - self._finished:
                self._report(snapshot=snapshot)
                next_at = time.monotonic() + self.every_s

    def _report(self, *, snapshot: ProgressSnapshot | None = None, force: bool = False) -> None:
        snapshot = snapshot or self.progress.snapshot()
        if snapshot.run_dir is None:
            return  # the build has not started yet
        self._finished |= {s.name for s in snapshot.stages if s.total and s.done >= s.total}
        line = snapshot.line()
        if force and line == self._last:
            return
        self._last = line
        try:
            self.emit(snapshot)
        except Exception:
            pass
