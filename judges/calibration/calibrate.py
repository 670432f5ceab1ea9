"""`factory calibrate`: judge settings over a human-labelled set, scored, ranked, written to a run folder.

The entry point over the calibration's parts: `config` (what to run), `sweep` (the settings,
judged and scored), `agreement` (the agreement.json document) and `outputs` (the run folder).
The run folder `<output_dir>/<run_id>/` receives `calibration.yaml`, `agreement.json`,
`judgments.parquet`, `report.html` and `report.md`; the request cache sits in
`<output_dir>/cache.sqlite`, shared by every run there, so a rerun (or a wider sweep over the same
models) repeats no finished call.

Example:
    >>> config = CalibrationConfig(human_set="pandalm", human_set_limit=100,
    ...                            models=["openai/gpt-4o-mini"], orders=["fixed", "both"])
    >>> result = calibrate(config)
    >>> result.agreement["settings"][0]["kappa"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory._util.errors import UserError
from factory._util.run_ids import new_run_id
from factory._util.sync import run_sync
from factory.llm import Gateway
from judges.calibration.agreement import build_agreement, judging_outcome
from judges.calibration.config import CalibrationConfig
from judges.calibration.outputs import write_config, write_judgments, write_outputs
from judges.calibration.sweep import Progress, evaluate, expand_settings
from judges.humans.human_sets import load_human_set
from judges.metrics.scoring import read_judgments, score_judgments


@dataclass
class CalibrationResult:
    """A finished calibration: its run folder and the agreement.json document written there."""

    run_dir: Path
    agreement: dict[str, Any]


async def calibrate_async(
    config: CalibrationConfig, *, progress: Progress | None = None
) -> CalibrationResult:
    """`calibrate` for callers that already run an event loop."""
    human = load_human_set(
        config.human_set,
        mapping=config.mapping,
        data_dir=config.data_dir,
        limit=config.human_set_limit,
        seed=config.seed,
    )
    out = Path(config.output_dir)
    run_id = new_run_id("calibrate")
    run_dir = out / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise UserError(f"cannot create run folder {run_dir}: {exc.strerror}") from None
    write_config(run_dir, config)
    if config.judgments is not None:
        entries = score_judgments(
            read_judgments(config.judgments),
            human,
            n_boot=config.bootstrap,
            seed=config.seed,
            source=Path(config.judgments).stem,
        )
        agreement = build_agreement(
            human,
            entries,
            run_id=run_id,
            source=f"judgments file {config.judgments}",
            human_set_spec=config.human_set,
            min_kappa=config.min_kappa,
            n_boot=config.bootstrap,
            seed=config.seed,
        )
    else:
        roles = {spec.model: spec for spec in config.models}
        gateway = Gateway(
            roles, config.gateway, cache_path=out / "cache.sqlite", budget=config.budget, seed=config.seed
        )
        try:
            entries, rows = await evaluate(
                gateway,
                expand_settings(config),
                human,
                concurrency=config.concurrency,
                n_boot=config.bootstrap,
                seed=config.seed,
                progress=progress,
            )
            llm = gateway.usage.snapshot()
        finally:
            gateway.close()
        all_rows = [row for setting_rows in rows.values() for row in setting_rows]
        write_judgments(run_dir, all_rows)
        agreement = build_agreement(
            human,
            entries,
            run_id=run_id,
            source="models",
            llm=llm,
            human_set_spec=config.human_set,
            min_kappa=config.min_kappa,
            n_boot=config.bootstrap,
            seed=config.seed,
        )
        agreement["outcome"] = judging_outcome(llm, all_rows, config.models)
    write_outputs(run_dir, agreement)
    return CalibrationResult(run_dir, agreement)


def calibrate(config: CalibrationConfig, *, progress: Progress | None = None) -> CalibrationResult:
    """Run a calibration: judge the human set with every setting, rank by kappa, write the run folder."""
    return run_sync(lambda: calibrate_async(config, progress=progress))
