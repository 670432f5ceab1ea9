"""`factory train RUN_DIR`: TRL DPO / KTO / RDPO on a built dataset (the CLI only parses flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factory.cli.options import finite


def train(
    run_dir: Annotated[Path, typer.Argument(help="A build's run folder (outputs/<run_id>/).")],
    loss: Annotated[str, typer.Option("--loss", help="dpo, kto, or rdpo (DPO + rationale term).")] = "dpo",
    smoke: Annotated[bool, typer.Option("--smoke", help="CPU check: 2 steps of a tiny random model.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Train even if the quality gate did not pass.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="Model to train (Hub id or folder; GPU).")] = None,
    gamma: Annotated[float, typer.Option("--gamma", callback=finite(0), help="RDPO rationale weight.")] = 0.1,
    beta: Annotated[float, typer.Option("--beta", callback=finite(0, above=True), help="DPO/KTO beta.")] = 0.1,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Stop after N steps (GPU).")] = None,
) -> None:
    """Train on the run's dataset as written; refuses data whose quality gate did not pass unless --force."""
    from factory.train import train as run_training

    result = run_training(run_dir, loss=loss, smoke=smoke, force=force, model=model,  # type: ignore[arg-type]
                          gamma=gamma, beta=beta, max_steps=max_steps)
    loss_text = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    typer.echo(f"{result.loss}{' (smoke)' if result.smoke else ''} on {result.device}: {result.steps} steps over "
               f"{result.train_rows} train rows ({result.test_rows} test), train loss {loss_text}; "
               f"gate {result.gate}")
    typer.echo(result.output_dir)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
