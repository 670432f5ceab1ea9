"""`factory publish RUN_DIR --repo-id ORG/NAME`: push a build's dataset folder to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def publish(
    run_dir: Annotated[
        Path, typer.Argument(help="Run folder (outputs/<run_id>/) whose dataset/ folder is pushed.")
    ],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Dataset repository, ORG/NAME.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository as private.")] = False,
    dry_run: Annotated[
        Path | None,
        typer.Option(
            "--dry-run",
            metavar="DIR",
            help="Write the exact repository folder to DIR and load it with datasets; nothing is sent.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Publish even though the quality gate did not pass.")
    ] = False,
) -> None:
    """Publish the dataset (card, DPO and KTO parquet, agreement report) to the Hub.

    The token comes from HF_TOKEN or your `hf auth login`; HF_ENDPOINT selects another Hub.
    """
    from factory.release.publish import publish_run

    result = publish_run(run_dir, repo_id, private=private, dry_run=dry_run, force=force)
    if result.dry_run_dir is not None:
        loaded = "; ".join(
            f"{name}: " + ", ".join(f"{s} {n} rows" for s, n in splits.items())
            for name, splits in result.splits.items()
        )
        console.print(f"dry run: {len(result.files)} files written to {result.dry_run_dir} ({loaded})")
        print(result.dry_run_dir)
        return
    console.print(f"published {len(result.files)} files to {result.repo_id}")
    print(result.url)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
