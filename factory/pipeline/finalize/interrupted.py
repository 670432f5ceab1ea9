"""The end of an interrupted build: a manifest that says so, written in milliseconds.

An interrupt skips `finalize` (merging tables, the quality gate, the dataset): the user asked to
stop now, and all of it is redone by `factory build --resume`, which finds the finished shard files
and answers every completed model call from the request cache. The manifest still records how the
run ended and how far it got, so a script or a look into the folder can tell; publishing and
training refuse it (no gate result, not approved) as they refuse any unfinished build.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from factory import __version__
from factory._util.atomic_files import atomic_write_json
from factory._util.interrupts import EXIT_CODE, REASON, BuildInterrupted
from factory.config import BuildConfig
from factory.pipeline.cost_report import run_cost
from factory.pipeline.outcome import Outcome
from factory.pipeline.progress import BuildProgress
from factory.run.folder import RunFolder


def record_interrupt(
    run: RunFolder, config: BuildConfig, progress: BuildProgress, usage: dict[str, Any] | None = None
) -> BuildInterrupted:
    """Write the interrupted run's manifest; return the exception that tells the caller."""
    snapshot = progress.snapshot()
    manifest = {
        "run_id": run.run_id,
        "factory_version": __version__,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": Outcome.STOPPED.value,
        "stopped_reason": REASON,
        "stop": "interrupted",
        "outcome": {
            "status": Outcome.STOPPED.value,
            "cause": REASON,
            "exit_code": EXIT_CODE,
            "stop": "interrupted",
        },
        "counts": {"prompts": snapshot.prompts_total, "prompts_done": snapshot.prompts_done},
        "progress": snapshot.as_dict(),
        "llm": usage if usage is not None else {},
        "cost": run_cost(run),  # what the run has paid so far, over all its invocations
        "models": {role: spec.model for role, spec in config.models.items()},
        "judge_setting": config.judging.setting.setting_id,
        "gate": None,
        "approved": False,
    }
    atomic_write_json(run.manifest_path, manifest)
    return BuildInterrupted(run.root, snapshot.prompts_done, snapshot.prompts_total)
