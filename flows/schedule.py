"""Scheduled builds: a Prefect deployment of the build flow with a cron schedule.

`register_schedule` creates (or updates) the deployment `factory-build/<name>` whose runs build
incrementally: each run takes only prompts not in earlier builds of the dataset and appends a
version (see `factory.run.incremental`). The resolved build spec travels as the deployment's
`config` parameter, so a worker on another machine needs the package installed, the model
endpoints and API keys, and the prompt file at the same path; not this machine's config file.
Where the versions go is decided by the caller before registering (`factory.run.output_location`):
an absolute folder or a storage URL, never a path relative to the worker's temporary folder.

Prefect's ephemeral API records deployments but runs no scheduler: scheduled runs need a real
`prefect server start` (or Prefect Cloud) and a worker (`prefect worker start --pool P`), or a
long-running `serve_schedule` process. See docs/orchestration.md.

Example::

    info = register_schedule(load_config("examples/demo.yaml"), "0 3 * * *", work_pool="builds")
    info.full_name   # "factory-build/demo"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factory._util.cron import check_cron, check_timezone
from factory._util.errors import UserError
from factory.config import BuildConfig
from factory.run.output_location import url_protocol
from flows.build import build_flow

DEFAULT_POOL_TYPE = "process"


@dataclass(frozen=True)
class ScheduledDeployment:
    """The deployment as registered with the Prefect API."""

    id: str
    full_name: str
    cron: str
    timezone: str | None
    work_pool: str | None


def validate_cron(cron: str, timezone: str | None = None) -> None:
    """Raise a one-line `UserError` unless `cron` is a valid 5-field cron (`factory._util.cron`, which names the
    field at fault) that Prefect accepts, and `timezone` an IANA name Prefect knows."""
    from prefect.client.schemas.schedules import CronSchedule

    check_cron(cron)
    check_timezone(timezone)
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "cron"
        reason = err["msg"].removeprefix("Value error, ")
        if field == "cron":
            raise UserError(f"invalid cron expression '{cron}': {reason}") from None
        raise UserError(f"invalid {field} '{timezone}': {reason}") from None


def _parameters(config: BuildConfig) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json"), "incremental": True}


def _ensure_work_pool(name: str) -> None:
    """Create the work pool (type `process`) when it does not exist, as `prefect worker start` would."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=DEFAULT_POOL_TYPE))


def register_schedule(
    config: BuildConfig,
    cron: str,
    *,
    name: str | None = None,
    work_pool: str | None = None,
    timezone: str | None = None,
) -> ScheduledDeployment:
    """Register (or update) the cron-scheduled, incremental build deployment `factory-build/<name>`."""
    from prefect.deployments.runner import EntrypointType, RunnerDeployment
    from prefect.schedules import Cron

    validate_cron(cron, timezone)
    if url_protocol(config.run.output_dir) is None and not Path(config.run.output_dir).is_absolute():
        # A process worker runs each flow run in a temporary folder that it deletes afterwards.
        raise UserError(
            f"run.output_dir '{config.run.output_dir}' is relative: a scheduled build needs an "
            "absolute folder or a storage URL (see factory.run.output_location.resolve_for_schedule)"
        )
    deployment_name = name or config.run.name
    if work_pool is not None:
        _ensure_work_pool(work_pool)
    deployment = RunnerDeployment.from_flow(
        flow=build_flow,
        name=deployment_name,
        schedule=Cron(cron, timezone=timezone),
        parameters=_parameters(config),
        work_pool_name=work_pool,
        description=f"Incremental build of dataset '{config.run.name}' on '{cron}' into {config.run.output_dir}",
        tags=["factory", f"dataset:{config.run.name}"],
        # The module path (flows.build.build_flow) is importable wherever the package is installed.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment_id = deployment.apply()
    return ScheduledDeployment(
        id=str(deployment_id),
        full_name=f"{build_flow.name}/{deployment_name}",
        cron=cron,
        timezone=timezone,
        work_pool=work_pool,
    )


def serve_schedule(
    config: BuildConfig, cron: str, *, name: str | None = None, timezone: str | None = None
) -> None:
    """Register the deployment and run its scheduled builds in this process until interrupted."""
    from prefect.schedules import Cron

    validate_cron(cron, timezone)
    build_flow.serve(
        name=name or config.run.name,
        schedule=Cron(cron, timezone=timezone),
        parameters=_parameters(config),
        tags=["factory", f"dataset:{config.run.name}"],
    )
