"""`factory schedule CONFIG --cron "0 3 * * *"`: register a scheduled, incremental build with Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def schedule(
    config: Annotated[Path, typer.Argument(help="Build spec (YAML).")],
    cron: Annotated[str, typer.Option("--cron", help='Cron schedule, e.g. "0 3 * * *" (03:00 every day).')],
    name: Annotated[str | None, typer.Option("--name", help="Deployment name (default: run.name).")] = None,
    work_pool: Annotated[
        str | None,
        typer.Option(
            "--work-pool",
            help="Prefect work pool whose workers run the builds (created as type process if missing).",
        ),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA time zone of the cron (default UTC).")
    ] = None,
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir",
            help="Where the versions go (default run.output_dir): a folder, stored as an absolute "
            "path, or a storage URL fsspec opens (s3://bucket/datasets), to which each run copies its run folder.",
        ),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Also run the scheduled builds in this process until interrupted (no worker needed).",
        ),
    ] = False,
) -> None:
    """Register deployment factory-build/NAME: on each cron tick, build only new prompts as a new version."""
    from factory._util.cron import check_cron, check_timezone
    from factory._util.errors import UserError
    from factory.config import load_config
    from factory.run.output_location import resolve_for_schedule

    # Before Prefect and the build flow are imported (seconds): a typo costs no wait.
    check_cron(cron)
    check_timezone(timezone)
    if serve and work_pool is not None:
        raise UserError("--serve runs the builds itself; it takes no --work-pool")
    scheduled = resolve_for_schedule(load_config(config), Path.cwd(), output_dir)
    for note in scheduled.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    spec = scheduled.config
    from factory.pipeline.preflight import check_human_set

    check_human_set(spec)  # every tick would pay for a build whose gate cannot be checked

    from flows.schedule import register_schedule, serve_schedule

    if serve:
        console.print(
            f"serving factory-build/{name or spec.run.name} on '{cron}' into {scheduled.location} "
            "(Ctrl-C stops)"
        )
        serve_schedule(spec, cron, name=name, timezone=timezone)
        return
    info = register_schedule(spec, cron, name=name, work_pool=work_pool, timezone=timezone)
    where = (
        f"prefect worker start --pool {info.work_pool}"
        if info.work_pool
        else f"factory schedule {config} --cron '{cron}' --serve"
    )
    console.print(
        f"scheduled {info.full_name} on '{info.cron}'{' ' + info.timezone if info.timezone else ''}; "
        f"versions go to {scheduled.location}/{spec.run.name}/; "
        f"runs need a Prefect server (prefect server start) and: {where}",
        soft_wrap=True,
    )
    print(info.full_name)


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)
