"""`factory schedule CONFIG --cron "0 3 * * *"`: register a scheduled, incremental build with Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def schedule(
    config: Annotated[Path, typer.Argument(help="Build spec (YAML).")],
    cron: Annotated[str, typer.Option("--cron", help='Cron schedule, e.g. "0 3 * * *" (03:00 every day).')],
    name: Annotated[str | None, typer.Option("--name", help="Deployment name (default: run.name).")] = None,
    work_pool: Annotated[str | None, typer.Option(
        "--work-pool", help="Prefect work pool whose workers run the builds (created as type process if missing).")
    ] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA time zone of the cron (default UTC).")
                        ] = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Also run the scheduled builds in this process until interrupted (no worker needed).")
    ] = False,
) -> None:
    """Register deployment factory-build/NAME: on each cron tick, build only new prompts as a new version."""
    from factory.config import load_config
    from factory.errors import UserError
    from factory.preflight import check_human_set
    from flows.schedule import register_schedule, serve_schedule, validate_cron

    spec = load_config(config)
    check_human_set(spec)  # every tick would pay for a build whose gate cannot be checked
    validate_cron(cron, timezone)  # before Prefect's API is started: a typo costs no wait
    if serve:
        if work_pool is not None:
            raise UserError("--serve runs the builds itself; it takes no --work-pool")
        console.print(f"serving factory-build/{name or spec.run.name} on '{cron}' (Ctrl-C stops)")
        serve_schedule(spec, cron, name=name, timezone=timezone)
        return
    info = register_schedule(spec, cron, name=name, work_pool=work_pool, timezone=timezone)
    where = f"prefect worker start --pool {info.work_pool}" if info.work_pool else \
        f"factory schedule {config} --cron '{cron}' --serve"
    console.print(f"scheduled {info.full_name} on '{info.cron}'{' ' + info.timezone if info.timezone else ''}; "
                  f"runs need a Prefect server (prefect server start) and: {where}")
    print(info.full_name)


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)
