"""`factory build CONFIG`: run a dataset build (or resume one)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from factory._util.errors import UserError

if TYPE_CHECKING:
    from factory.config import BuildConfig
    from factory.pipeline import BuildResult
    from factory.pipeline.progress import BuildProgress

console = Console(stderr=True)

# Seconds between progress lines where there are no live bars (no terminal; the Prefect engine's log).
PROGRESS_EVERY_S = float(os.environ.get("FACTORY_PROGRESS_EVERY_S", "10"))


def build(
    config: Annotated[Path | None, typer.Argument(help="Build spec (YAML).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run folder.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Parent of the run folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Print the calls, tokens and cost the build may take, then exit; no model is called.",
        ),
    ] = False,
    max_calls: Annotated[
        int | None,
        typer.Option(
            "--max-calls", help="Override budget.max_calls (with --resume: saved into the run's config)."
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", help="Override budget.max_tokens (prompt + completion tokens)."),
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="Override budget.max_cost_usd (USD, litellm prices).")
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            envvar="FACTORY_ENGINE",
            help="prefect: run the build flow (a task per shard, UI, retries; "
            "the local Prefect API takes seconds to start); local: the same pipeline in this process, no Prefect.",
        ),
    ] = "prefect",
    runner: Annotated[
        str | None,
        typer.Option(
            "--runner", help="Prefect task runner: threads (default) or dask (a local cluster, or --address)."
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Dask scheduler of an existing cluster, e.g. tcp://10.0.0.5:8786 (with --runner dask).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Shards at once: threads, or local Dask worker processes (default 2)."
        ),
    ] = None,
) -> None:
    """Build a preference dataset: generate, judge, select pairs; write outputs/<run_id>/.

    Budgets count across resumes: a build stopped at a cap resumes with a raised one, e.g.
    `factory build --resume RUN_DIR --max-calls 5000`.
    """
    from factory.pipeline.preflight import (
        build_prompts,
        check_api_keys,
        check_human_set,
        check_shared_cache,
        load_build_spec,
        save_resume_config,
        with_budget,
    )

    if engine not in ("prefect", "local"):
        raise UserError(f"--engine must be prefect or local, got '{engine}'")
    if engine == "local" and (runner, address, workers) != (None, None, None):
        raise UserError("--runner, --address and --workers need --engine prefect")

    # Everything a user can get wrong is checked before a run folder exists or litellm is imported.
    spec = load_build_spec(config, resume, output_dir)
    spec = with_budget(spec, max_calls=max_calls, max_tokens=max_tokens, max_cost_usd=max_cost)
    prompts, rejected = build_prompts(spec, resume)
    if estimate:
        from factory.pipeline.estimate import estimate_build, format_estimate

        print(format_estimate(estimate_build(spec, prompts, len(rejected))))
        return
    check_human_set(spec)  # after --estimate, which sizes an unavailable set from the prompts instead
    check_api_keys(spec)
    check_shared_cache(spec)
    from factory._util.interrupts import BuildInterrupted, handle_interrupts
    from factory.pipeline.progress import BuildProgress
    from factory.run.lock import lock_run_folder

    progress = BuildProgress()
    stop: BaseException | None = None
    # A resumed run is held from here (before its config is rewritten) to the end of the build.
    lock = lock_run_folder(resume) if resume is not None else None
    try:
        # Ctrl-C stops the build cleanly, a second one at once (factory._util.interrupts). In Prefect's
        # engine a KeyboardInterrupt would unwind Prefect's own code: the flow notices the request.
        with handle_interrupts(raise_when_idle=engine == "local", resume_hint=lambda: progress.run_dir):
            if resume is not None and (max_calls, max_tokens, max_cost) != (None, None, None):
                save_resume_config(resume, spec)
            # A resumed build reads the run folder's config (just saved with any raised caps).
            build_spec: BuildConfig | None = spec if resume is None else None
            if engine == "prefect":
                from flows import run_build_flow

                # The same pipeline as a Prefect flow: Prefect's log shows the progress lines.
                outcome = run_build_flow(
                    build_spec,
                    resume_dir=resume,
                    runner=runner or "threads",
                    address=address,
                    workers=workers,
                    quiet=quiet,
                    progress=progress,
                    progress_every_s=PROGRESS_EVERY_S,
                )
                run_dir, manifest = Path(outcome["run_dir"]), outcome["manifest"]
            else:
                result = _run_local(build_spec, resume, quiet, progress)
                run_dir, manifest = result.run_dir, result.manifest
    except (BuildInterrupted, KeyboardInterrupt) as exc:
        stop = exc
    finally:
        if lock is not None:
            lock.release()
    if stop is not None:
        _interrupted(stop if isinstance(stop, BuildInterrupted) else None, progress)
    _summary(run_dir, manifest)


def _interrupted(exc: Any, progress: BuildProgress) -> None:
    """The one line of an interrupted build; exits 130."""
    from rich.markup import escape

    from factory._util.interrupts import BuildInterrupted, exit_process

    if exc is None:  # interrupted between the build's steps, before it could record anything
        snapshot = progress.snapshot()
        exc = BuildInterrupted(progress.run_dir, snapshot.prompts_done, snapshot.prompts_total)
    console.print(f"[bold yellow]{escape(exc.line())}[/bold yellow]", soft_wrap=True)
    exit_process()


def _run_local(
    spec: BuildConfig | None, resume: Path | None, quiet: bool, progress: BuildProgress
) -> BuildResult:
    from factory.pipeline import run_build
    from factory.pipeline.progress import ProgressReporter
    from factory.run.folder import RunFolder

    def on_start(run: RunFolder, n_prompts: int) -> None:
        console.print(f"run folder: {run.root}")

    if quiet:
        return run_build(spec, resume_dir=resume, progress=progress, on_start=on_start)
    if not console.is_terminal:
        # No live bars in a log file: a plain line at a bounded rate instead.
        with ProgressReporter(
            progress,
            lambda s: console.print(f"progress: {s.line()}", soft_wrap=True, highlight=False),
            every_s=PROGRESS_EVERY_S,
        ):
            return run_build(spec, resume_dir=resume, progress=progress, on_start=on_start)
    with _StageBars(progress) as bars:

        def start_bars(run: RunFolder, n_prompts: int) -> None:
            on_start(run, n_prompts)
            bars.add_stages()

        return run_build(spec, resume_dir=resume, progress=progress, on_start=start_bars)


class _StageBars(Progress):
    """Live bars of a build's `BuildProgress`: one per stage (the prompt stages, finalize, the gate's
    human-set items) and a line of calls, tokens, dollars, failures and ETA under them. They read
    the tracker on every refresh, so a stage that runs without reporting (none should) still shows."""

    def __init__(self, progress: BuildProgress) -> None:
        self.progress = progress  # before Progress's own set-up, which renders once
        self._ids: dict[str, Any] = {}
        super().__init__(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            transient=False,
            refresh_per_second=4,
        )

    def add_stages(self) -> None:
        for stage in self.progress.snapshot().stages:
            self._ids[stage.name] = self.add_task(stage.name, total=stage.total, note="")

    def get_renderables(self) -> Iterable[RenderableType]:
        snapshot = self.progress.snapshot()
        for stage in snapshot.stages:
            if stage.name in self._ids:
                self.update(
                    self._ids[stage.name],
                    completed=stage.done,
                    total=stage.total,
                    note=f"{stage.failed} failed" if stage.failed else "",
                )
        yield self.make_tasks_table(self.tasks)
        if self._ids:
            yield Text(snapshot.figures_text())


def _summary(run_dir: Path, m: dict[str, Any]) -> None:
    """The build's figures, the gate's lines and the outcome line; exits with the outcome's code."""
    from rich.markup import escape

    from factory.pipeline.cost_report import cost_line
    from factory.pipeline.finalize.gate import summary_lines
    from factory.pipeline.outcome import BuildOutcome, Outcome, gate_failed

    c, llm = m["counts"], m["llm"]
    console.print(
        f"{c['prompts']} prompts -> {c['candidates']} candidates, "
        f"{c['judgments']} judgments, {c['pairs']} pairs, {c['failures']} failures; "
        f"{llm['calls']} LLM calls ({llm['cache_hits']} from cache, {llm['errors']} failed), "
        f"{llm['prompt_tokens'] + llm['completion_tokens']} tokens, ${llm['cost_usd']:.4f}"
    )
    if m.get("cost"):
        console.print(cost_line(m["cost"]), highlight=False, soft_wrap=True)
    for i, line in enumerate(summary_lines(m.get("gate"), run_dir)):
        style = (
            "bold green" if "passed" in line and i == 0 else "bold red" if i == 0 and "FAILED" in line else ""
        )
        console.print(f"[{style}]{escape(line)}[/{style}]" if style else escape(line))
    status = Outcome(m["status"])
    recorded = m.get("outcome") or {}
    outcome = BuildOutcome(
        status, recorded.get("cause"), gate_failed=gate_failed(m.get("gate")), stop=recorded.get("stop")
    )
    line = outcome.line(run_dir)
    style = "bold red" if outcome.exit_code else "bold green"
    style = "bold yellow" if status is Outcome.PARTIAL else style
    # One line whatever the terminal width: scripts read it, and a cut endpoint is useless.
    console.print(f"[{style}]{escape(line)}[/{style}]", soft_wrap=True)
    print(run_dir)
    if outcome.exit_code:
        # Scripts and schedules must be able to tell the outcomes apart, and a failed gate from a pass.
        # (typer.Exit would come back as a return value, since the CLI runs click without standalone mode.)
        sys.exit(outcome.exit_code)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
