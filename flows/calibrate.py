"""The calibration flow: judge a human-labelled set with every configured judge setting, rank by kappa.

It wraps `judges.calibration.calibrate` (imported when the flow runs) and publishes the ranking as a table
artifact and the report as a link, like the build flow does.

Example::

    calibrate_flow(config_path="examples/calibrate.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from factory._util.errors import UserError
from flows.artifacts import agreement_rows


@task(name="calibrate", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def run_calibration(config: dict[str, Any] | None, config_path: str | None) -> dict[str, Any]:
    """Judge and score (a retry repeats no finished model call: the calibration cache answers them)."""
    from judges.calibration.calibrate import calibrate
    from judges.calibration.config import load_calibration_config, parse_calibration_config

    spec = (
        parse_calibration_config(config) if config is not None else load_calibration_config(str(config_path))
    )
    result = calibrate(spec)
    return {"run_dir": str(result.run_dir), "agreement": result.agreement}


@flow(name="factory-calibrate", validate_parameters=True)
def calibrate_flow(config: dict[str, Any] | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Calibrate judges against human labels; returns `{"run_dir", "agreement"}` (agreement.json's content)."""
    if (config is None) == (config_path is None):
        raise UserError("give exactly one of config or config_path")
    result = run_calibration(config, config_path)
    rows = agreement_rows(result["agreement"])
    if rows:
        create_table_artifact(
            table=rows,
            key="calibration-agreement",
            description="Judge settings ranked by Cohen's kappa against human labels",
        )
    report = Path(result["run_dir"]) / "report.html"
    if report.is_file():
        create_link_artifact(
            link=report.resolve().as_uri(),
            link_text="judge-agreement report (HTML)",
            key="calibration-report",
        )
    return result
