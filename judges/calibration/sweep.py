"""The sweep: a calibration config expanded into judge settings, each run over the human set and scored.

`expand_settings` turns a `CalibrationConfig` into judge settings: every model x protocol (x scale
for combined scoring) x order as a single judge, plus, on request, a plurality jury over every
subset of two or more of the models (the Fellowship paper's 57 combinations of six judges) and a
debate per model. `judge_settings` judges the set with each single judge once and reduces the
jurors' verdicts per jury subset without a further call (`jury_rows`); `evaluate` scores every
setting against the human labels (`judges.metrics.scoring.score_setting`) and ranks them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import polars as pl

from factory.llm import Gateway
from judges.calibration.config import CalibrationConfig
from judges.calibration.table import judge_table
from judges.engine.jury import reduce_jury
from judges.engine.outcome import Outcome, Usage
from judges.engine.pairwise import judgment_row
from judges.engine.settings import JudgeSetting
from judges.engine.votes import scored_plurality
from judges.humans.human_sets import HumanSet
from judges.metrics.scoring import order_verdicts, rank, score_setting

Progress = Callable[[str, int, int], None]  # (setting_id, done, total)


def expand_settings(config: CalibrationConfig) -> list[JudgeSetting]:
    """Every setting the config asks for, single judges first (juries are reduced from them).

    Scales multiply only combined scoring (the other protocols have a fixed scale of 10).
    """
    models = tuple(s.model for s in config.models)
    variants = list(
        dict.fromkeys((p, s if p == "combined" else 10) for p in config.protocols for s in config.scales)
    )
    singles: list[JudgeSetting] = []
    others: list[JudgeSetting] = []
    juries = [tuple(j) for j in config.juries]
    if config.jury_subsets:
        juries += [c for k in range(2, len(models) + 1) for c in itertools.combinations(models, k)]
    juries = list(dict.fromkeys(juries))

    def setting(**fields: Any) -> JudgeSetting:
        return JudgeSetting.model_validate({"structured": config.structured, "seed": config.seed, **fields})

    for order in config.orders:
        for protocol, scale in variants:
            common = {"protocol": protocol, "scale": scale, "order": order}
            singles += [setting(kind="judge", models=(m,), **common) for m in models]
            others += [setting(kind="jury", models=j, reducer="plurality", **common) for j in juries]
        if config.debate:
            # The debate's final scores are out of 10 whatever protocols the sweep lists.
            debate = {"rounds": config.debate_rounds}
            others += [
                setting(kind="debate", models=(m,), protocol="combined", scale=10, order=order, debate=debate)
                for m in models
            ]
    return singles + others


def _juror_setting(jury: JudgeSetting, model: str) -> JudgeSetting:
    # The engine's own juror settings, so a juror's id (and its rows) match the single judge's.
    return next(j for j in jury.juror_settings() if j.models == (model,))


async def judge_items(
    gateway: Gateway,
    setting: JudgeSetting,
    frame: pl.DataFrame,
    *,
    concurrency: int = 16,
    progress: Progress | None = None,
    tag: str | None = None,
) -> list[dict[str, Any]]:
    """Judgment rows of `setting` over the human-set `frame`, one per item, in the frame's order.
    Usage is recorded under `tag` (default: the setting id)."""
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress(setting.setting_id, done, frame.height)

    table = await judge_table(
        gateway,
        setting,
        frame.select("id", "prompt", "response_a", "response_b"),
        concurrency=concurrency,
        progress=tick,
        tag=tag,
    )
    return table.to_dicts()


def jury_rows(setting: JudgeSetting, juror_rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A plurality jury's rows from its jurors' own rows (same items, same order); no model call.

    Each item's juror rows become outcomes and go through the engine's own reducer
    (`judges.engine.jury.reduce_jury`), so a reduced jury is judged by exactly the rule a jury run
    by the engine follows. Cost and tokens add up over jurors; latency is the slowest juror's, as
    jurors run in parallel; the answers' injection flags are the jurors' (the same answers).
    """
    columns = [juror_rows[_juror_setting(setting, m).setting_id] for m in setting.models]
    rows = []
    for per_item in zip(*columns, strict=True):
        outcome = reduce_jury("plurality", [_row_outcome(r) for r in per_item], scale=setting.scale)
        latency = max(float(r.get("latency_s") or 0.0) for r in per_item)
        row = judgment_row(setting, per_item[0]["item_id"], outcome, latency, "", "")
        rows.append({**row, "injection_flags": per_item[0].get("injection_flags") or "[]"})
    return rows


def _row_outcome(row: dict[str, Any]) -> Outcome:
    """A juror's judgment row read back as the engine's outcome (the fields a jury reduces)."""
    return Outcome(
        verdict=row.get("verdict"),
        score_a=row.get("score_a"),
        score_b=row.get("score_b"),
        reason=row.get("unscored_reason"),
        raws=tuple(json.loads(row.get("raw") or "[]")),
        usage=Usage(
            int(row.get("prompt_tokens") or 0),
            int(row.get("completion_tokens") or 0),
            float(row.get("cost_usd") or 0.0),
        ),
        models=tuple(row.get("models") or ()),
        scale=row.get("scale"),
        order=row.get("order") or "AB",
        flipped=bool(row.get("flipped")),
    )


def _jury_order_verdicts(
    jury: JudgeSetting, rows: dict[str, list[dict[str, Any]]]
) -> tuple[list[str | None], list[str | None]] | None:
    """A plurality jury's verdicts per order: the plurality of its jurors' verdicts in each order."""
    per_juror = [order_verdicts(rows[_juror_setting(jury, m).setting_id]) for m in jury.models]
    if any(p is None for p in per_juror):
        return None
    ab: list[str | None] = [scored_plurality(c) for c in zip(*(p[0] for p in per_juror), strict=True)]  # type: ignore[index]
    ba: list[str | None] = [scored_plurality(c) for c in zip(*(p[1] for p in per_juror), strict=True)]  # type: ignore[index]
    return ab, ba


async def judge_settings(
    gateway: Gateway,
    settings: list[JudgeSetting],
    frame: pl.DataFrame,
    *,
    concurrency: int = 16,
    progress: Progress | None = None,
    tag_prefix: str = "",
) -> dict[str, list[dict[str, Any]]]:
    """Rows per setting id (jurors' own settings included). Single judges and debates call models, all
    settings at once so several models work in parallel; a plurality jury is reduced from its jurors'
    rows, so a sweep over every subset of six jurors costs six judges' calls, not 63 settings'."""
    needed = {s.setting_id: s for s in judged_settings(settings)}
    rows: dict[str, list[dict[str, Any]]] = {}
    # Fixed order first: an order=both or random run then finds its A-first calls in the cache
    # instead of racing the fixed run to make the same call twice.
    for wave in (
        [i for i, s in needed.items() if s.order == "fixed"],
        [i for i, s in needed.items() if s.order != "fixed"],
    ):
        results = await asyncio.gather(
            *(
                judge_items(
                    gateway,
                    needed[i],
                    frame,
                    concurrency=concurrency,
                    progress=progress,
                    tag=f"{tag_prefix}{i}" if tag_prefix else None,
                )
                for i in wave
            )
        )
        rows.update(zip(wave, results, strict=True))
    for jury in filter(_reducible, settings):
        rows[jury.setting_id] = jury_rows(jury, rows)
    return rows


def judged_settings(settings: list[JudgeSetting]) -> list[JudgeSetting]:
    """The settings `judge_settings` judges item by item (each reports progress): the settings
    themselves, a plurality jury replaced by its jurors, each once."""
    needed = {s.setting_id: s for s in settings if not _reducible(s)}
    for jury in filter(_reducible, settings):
        for model in jury.models:
            juror = _juror_setting(jury, model)
            needed.setdefault(juror.setting_id, juror)
    return list(needed.values())


def _reducible(setting: JudgeSetting) -> bool:
    # Weighted and mean-score juries, and juries of mixed jurors, are judged as a whole by the engine.
    return setting.kind == "jury" and setting.reducer == "plurality" and setting.jurors is None


async def evaluate(
    gateway: Gateway,
    settings: list[JudgeSetting],
    human: HumanSet,
    *,
    concurrency: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
    tag_prefix: str = "",
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Judge `human` with every setting and score each: (ranked agreement entries, rows per setting).

    `tag_prefix` files the calls' usage apart (the quality gate's under `gate/<setting id>`)."""
    rows = await judge_settings(
        gateway, settings, human.frame, concurrency=concurrency, progress=progress, tag_prefix=tag_prefix
    )
    usage = gateway.usage.snapshot().get("by_tag", {})
    entries = []
    for setting in settings:
        per_order = None
        if setting.order == "both":
            per_order = (
                _jury_order_verdicts(setting, rows)
                if _reducible(setting)
                else order_verdicts(rows[setting.setting_id])
                if setting.kind != "jury"
                else None
            )
        entries.append(
            score_setting(
                _describe(setting),
                rows[setting.setting_id],
                human,
                per_order=per_order,
                usage=usage.get(f"{tag_prefix}{setting.setting_id}"),
                n_boot=n_boot,
                seed=seed,
            )
        )
    return rank(entries), {s.setting_id: rows[s.setting_id] for s in settings}


def _describe(setting: JudgeSetting) -> dict[str, Any]:
    return {
        "setting_id": setting.setting_id,
        "kind": setting.kind,
        "models": list(setting.models),
        "protocol": setting.protocol,
        "scale": setting.scale,
        "order": setting.order,
        "structured": setting.structured,
        "reducer": setting.reducer if setting.kind == "jury" else None,
    }
