"""A run's prompts: read from the prompt source once, when the run starts, and recorded in
`prompts.parquet`; every later step (a resume, a salvage round, the Prefect flow) reads them back
from there, so the run folder owns its inputs whatever happens to the source afterwards."""

from __future__ import annotations

import polars as pl

from factory._util.atomic_files import atomic_write_parquet
from factory._util.json_columns import load_json, rows_frame
from factory.config import BuildConfig
from factory.inputs.prompt_sources import Prompt, RejectedPrompt, load_source
from factory.run.folder import RunFolder


def load_build_prompts(config: BuildConfig) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """The build's usable prompts and the rejected ones (empty, too long), read from the prompt source."""
    return load_source(config.prompts)


def write_prompts_table(run: RunFolder, prompts: list[Prompt], rejected: list[RejectedPrompt]) -> None:
    """prompts.parquet: every prompt of the run, rejects with their reason and raw row."""
    rows = [p.to_row() | {"rejected_reason": None, "raw": None} for p in prompts]
    rows += [
        {"prompt_id": r.item_id, "turns": [], "source": "", "rejected_reason": r.reason, "raw": r.raw}
        for r in rejected
    ]
    atomic_write_parquet(run.table("prompts"), rows_frame(rows))


def recorded_prompts(run: RunFolder) -> tuple[list[Prompt], list[RejectedPrompt]] | None:
    """The prompts the run started with (None when it never got as far as recording them)."""
    table = run.table("prompts")
    if not table.is_file():
        return None
    prompts: list[Prompt] = []
    rejected: list[RejectedPrompt] = []
    for row in pl.read_parquet(table).iter_rows(named=True):
        if row.get("rejected_reason"):
            rejected.append(
                RejectedPrompt(str(row["prompt_id"]), row["rejected_reason"], row.get("raw") or "")
            )
            continue
        turns = load_json(row["turns"])
        prompts.append(Prompt(str(row["prompt_id"]), tuple(turns), row["source"]))
    return prompts, rejected


def run_prompts(run: RunFolder, config: BuildConfig) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """The run's own prompts: the recorded ones once there are some, else read from the source and recorded."""
    recorded = recorded_prompts(run)
    if recorded is not None:
        return recorded
    prompts, rejected = load_build_prompts(config)
    write_prompts_table(run, prompts, rejected)
    return prompts, rejected
