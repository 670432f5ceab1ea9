"""What a calibration leaves in its run folder: the config it ran, the judgments, agreement.json and
the report (HTML + markdown).

The quality gate writes agreement.json and the report into a build's run folder through the same
`write_outputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.atomic_files import atomic_write_json, atomic_write_parquet, atomic_write_text
from factory._util.yaml_input import dump_model_yaml
from judges.calibration.config import CalibrationConfig
from judges.engine.pairwise import JUDGMENT_SCHEMA
from judges.report import render_report


def write_config(run_dir: Path, config: CalibrationConfig) -> None:
    """The resolved config (every default written out) as `calibration.yaml`, so a run can be repeated."""
    atomic_write_text(run_dir / "calibration.yaml", dump_model_yaml(config))


def write_judgments(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Every judgment row of every setting (jurors' own settings included) as `judgments.parquet`."""
    path = run_dir / "judgments.parquet"
    atomic_write_parquet(path, pl.DataFrame(rows, schema=JUDGMENT_SCHEMA))
    return path


def write_outputs(
    run_dir: Path, agreement: dict[str, Any], *, gate: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """agreement.json plus the report (HTML + markdown) in `run_dir`; returns their paths."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "agreement.json", agreement)
    paths = render_report(agreement, run_dir, gate=gate)
    return {"agreement": run_dir / "agreement.json", **paths}
