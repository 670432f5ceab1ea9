"""`factory build CONFIG`: run a dataset build (or resume one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from factory.errors import UserError

console = Console(stderr=True)

STAGES = ("generate", "judge")


def build(
    config: Annotated[Optional[Path], typer.Argument(help="Build spec (YAML).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this run folder.")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Parent of the run folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Build a preference dataset: generate, judge, select pairs; write outputs/<run_id>/."""
    from factory.config import load_config
    from factory.pipeline import run_build

    if (config is None) == (resume is None):
        raise UserError("give a CONFIG file or --resume RUN_DIR (not both)")
    spec = None
    if config is not None:
        spec = load_config(config)
        if output_dir is not None:
            spec = spec.model_copy(update={"run": spec.run.model_copy(update={"output_dir": str(output_dir)})})
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=quiet, transient=False) as progress:
        tasks: dict[str, int] = {}

        def on_start(run, n_prompts: int) -> None:  # type: ignore[no-untyped-def]
            console.print(f"run folder: {run.root}")
            for stage in STAGES:
                tasks[stage] = progress.add_task(stage, total=n_prompts)

        def on_progress(stage: str, n: int) -> None:
            if stage in tasks:
                progress.advance(tasks[stage], n)

        result = run_build(spec, resume_dir=resume, progress=on_progress, on_start=on_start)
    m = result.manifest
    c, llm = m["counts"], m["llm"]
    console.print(
        f"[bold]{m['status']}[/bold]: {c['prompts']} prompts -> {c['candidates']} candidates, "
        f"{c['judgments']} judgments, {c['pairs']} pairs, {c['failures']} failures; "
        f"{llm['calls']} LLM calls ({llm['cache_hits']} from cache), "
        f"{llm['prompt_tokens'] + llm['completion_tokens']} tokens, ${llm['cost_usd']:.4f}")
    if m.get("stopped_reason"):
        console.print(f"stopped early: {m['stopped_reason']}; finish with: factory build --resume {result.run_dir}")
    print(result.run_dir)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
