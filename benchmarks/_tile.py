"""Tile a finished run folder to many more prompts, without model calls, to measure `finalize` at scale.

A real build of N prompts leaves one parquet file per shard and stage. Copy k of shard s becomes
shard k * S + s, and every prompt number in every string cell (ids such as `p000123`, the
`(question 123)` of the prompt text, the same inside JSON cells) is renumbered to k * N + i, so the
tiled folder has the shape of a real build of k * N distinct prompts: distinct ids, distinct prompt
texts, same rows per prompt. Only `finalize` (merge, gate, dataset, manifest) is then run on it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import polars as pl

_PROMPT_ID = re.compile(r"p(\d{6})")
_QUESTION = re.compile(r"\(question (\d+)\)")
_SHARD = re.compile(r"^shard-(\d{5})(\.[a-z_]+)?\.parquet$")


def _renumber(frame: pl.DataFrame, offset: int) -> pl.DataFrame:
    """Every prompt number in the frame's string columns shifted by `offset`."""
    if offset == 0 or frame.height == 0:
        return frame

    def shift(text: str | None) -> str | None:
        if text is None:
            return None
        text = _PROMPT_ID.sub(lambda m: f"p{int(m.group(1)) + offset:06d}", text)
        return _QUESTION.sub(lambda m: f"(question {int(m.group(1)) + offset})", text)

    columns = [
        pl.col(name).map_elements(shift, return_dtype=pl.Utf8)
        for name, dtype in frame.schema.items()
        if dtype == pl.Utf8
    ]
    return frame.with_columns(columns) if columns else frame


def tile_run(source: Path, target: Path, n_source_prompts: int, copies: int) -> int:
    """Write `target`, a run folder of `copies` x the source build's prompts; returns the prompt count."""
    if target.exists():
        shutil.rmtree(target)
    (target / "stages").mkdir(parents=True)
    shutil.copy2(source / "config.yaml", target / "config.yaml")
    stage_dirs = [d for d in (source / "stages").iterdir() if d.is_dir()]
    n_shards = 1 + max(
        int(m.group(1)) for d in stage_dirs for p in d.iterdir() if (m := _SHARD.match(p.name))
    )
    for stage in stage_dirs:
        out = target / "stages" / stage.name
        out.mkdir()
        for path in sorted(stage.iterdir()):
            match = _SHARD.match(path.name)
            if not match:
                continue
            frame = pl.read_parquet(path)
            for k in range(copies):
                shard = k * n_shards + int(match.group(1))
                _renumber(frame, k * n_source_prompts).write_parquet(
                    out / f"shard-{shard:05d}{match.group(2) or ''}.parquet"
                )
    prompts = pl.read_parquet(source / "prompts.parquet")
    pl.concat([_renumber(prompts, k * n_source_prompts) for k in range(copies)]).write_parquet(
        target / "prompts.parquet"
    )
    return n_source_prompts * copies


def finalize_only(run_dir: Path) -> dict[str, Any]:
    """Run the build's `finalize` on an existing run folder (shards done); no model is called."""
    from factory.config import load_config
    from factory.llm import Gateway
    from factory.pipeline import runner
    from factory.pipeline.context import BuildContext
    from factory.pipeline.finalize import finalize_run as finalize_module
    from factory.run.folder import RunFolder

    phases: dict[str, float] = {}
    plain_write = getattr(finalize_module, "write_dataset", None)
    if plain_write is not None:

        def traced_write(*args: Any, **kwargs: Any) -> Any:
            # RSS once every table is merged, and the peak the dataset build adds on top of it.
            phases["rss_tables_merged_mib"] = _rss_now_mib()
            return plain_write(*args, **kwargs)

        finalize_module.write_dataset = traced_write  # type: ignore[attr-defined]
    run = RunFolder.open(run_dir)
    config = load_config(run.config_path)
    gateway = Gateway(config.models, config.gateway, cache_path=run.cache_path, budget=config.budget)
    try:
        manifest = runner.finalize(BuildContext(config=config, run=run, gateway=gateway), [], None)
    finally:
        gateway.close()
    return {"counts": manifest.get("counts", {}), "status": manifest.get("status"), **phases}


def _rss_now_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0
