"""The build's stages. Each takes prompts and the earlier stages' rows for them and returns
(rows, failures). The runner calls them one prompt at a time (factory/pipeline/shard.py), so a
prompt moves on to the next stage as soon as it is through this one, and persists a shard's rows
as shard files once all its prompts are through.

Every prompt that drops out of a stage leaves a failure row (stage, reason, raw) behind, so each
prompt ends in the dataset or in the failures table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from factory._util.concurrency import map_bounded
from factory.inputs.prompt_sources import Prompt
from factory.llm import LLMError
from factory.pipeline.context import BuildContext
from factory.pipeline.stages.mapl_variants import mapl_variants
from factory.pipeline.stages.pairs import select_pairs
from factory.records import Candidate, Failure, Judgment, MaplIntraRow, Pair, Stop, stop_of
from factory.workflows.generation import generate_candidates
from factory.workflows.ranking import bradley_terry, listwise
from factory.workflows.rationale import write_rationales
from factory.workflows.tournaments import knockout, round_robin

R = TypeVar("R", bound=Mapping[str, Any])


def failure(item_id: str, stage: str, reason: str, raw: str = "", *, stop: Stop | None = None) -> Failure:
    """A failure row; `stop` only when the build must stop (the key is left out otherwise: the
    failures table's columns stay those of `factory.run.folder.FAILURE_SCHEMA`)."""
    row: Failure = {"item_id": item_id, "stage": stage, "reason": reason, "raw": raw[:4000]}
    if stop is not None:
        row["stop"] = stop
    return row


async def generate_stage(ctx: BuildContext, prompts: list[Prompt]) -> tuple[list[Candidate], list[Failure]]:
    async def one(prompt: Prompt) -> tuple[list[Candidate], list[Failure]]:
        try:
            rows = await generate_candidates(ctx.gateway, ctx.config.generation.workflows, prompt)
        except LLMError as exc:
            return [], [
                failure(
                    prompt.prompt_id, "generate", f"{exc.reason}: {exc}", exc.raw or "", stop=stop_of(exc)
                )
            ]
        if len({r["content_hash"] for r in rows}) < 2:
            return rows, [failure(prompt.prompt_id, "generate", "fewer_than_two_distinct_candidates")]
        return rows, []

    return _merge(await map_bounded(prompts, one, ctx.config.run.concurrency))


async def judge_stage(
    ctx: BuildContext, prompts: list[Prompt], candidates: list[Candidate]
) -> tuple[list[Judgment], list[Failure]]:
    """Each prompt's distinct candidates judged as `judging.select` says: a knockout (r1 vs r2, the
    winner vs r3, ...), a round robin (every two once, ties in wins settled by the run's seed), or
    N-way (listwise rankings, or the round robin's comparisons, fitted by Bradley-Terry)."""
    by_prompt = _group(candidates, "prompt_id")
    setting = ctx.config.judging.setting

    async def one(prompt: Prompt) -> tuple[list[Judgment], list[Failure]]:
        cands = _distinct(by_prompt.get(prompt.prompt_id, []))
        if len(cands) < 2:
            return [], []  # already recorded as a generation failure
        select, ranking = ctx.config.judging.select, ctx.config.judging.ranking
        if select == "round_robin":
            rng = ctx.rng("round_robin", prompt.prompt_id)
            judgments = (await round_robin(ctx.gateway, setting, prompt, cands, rng=rng)).judgments
        elif select == "bradley_terry":
            rng = ctx.rng("round_robin", prompt.prompt_id)
            judgments = (await bradley_terry(ctx.gateway, setting, ranking, prompt, cands, rng=rng)).judgments
        elif select == "listwise":
            rng = ctx.rng("listwise", prompt.prompt_id)
            judgments = (await listwise(ctx.gateway, setting, ranking, prompt, cands, rng=rng)).judgments
        else:
            judgments = (await knockout(ctx.gateway, setting, prompt, cands)).judgments
        if not any(_scored(j) for j in judgments):
            last = judgments[-1]
            return judgments, [
                failure(
                    prompt.prompt_id,
                    "judge",
                    f"unscored: {last['unscored_reason']}",
                    last["raw"],
                    stop=last.get("stop"),
                )
            ]
        return judgments, []

    return _merge(await map_bounded(prompts, one, ctx.config.run.concurrency))


def pairs_stage(
    ctx: BuildContext, prompts: list[Prompt], candidates: list[Candidate], judgments: list[Judgment]
) -> tuple[list[Pair], list[Failure]]:
    """Cut each prompt's pairs from its judgments (`pairs.rule`); a prompt without one leaves a failure."""
    cands_by_prompt = _group(candidates, "prompt_id")
    judg_by_prompt = _group(judgments, "prompt_id")
    rows: list[Pair] = []
    fails: list[Failure] = []
    for prompt in prompts:
        judged = judg_by_prompt.get(prompt.prompt_id, [])
        if not judged or not any(_scored(j) for j in judged):
            continue  # recorded upstream
        pairs, why = select_pairs(
            prompt.prompt_id,
            prompt.turns,
            _distinct(cands_by_prompt[prompt.prompt_id]),
            judged,
            ctx.config.pairs,
            ctx.config.judging.ranking,
        )
        if why is not None:
            fails.append(failure(prompt.prompt_id, "pairs", why))
        rows += pairs
    return rows, fails


async def rationales_stage(
    ctx: BuildContext, prompts: list[Prompt], pairs: list[Pair], judgments: list[Judgment]
) -> tuple[list[Pair], list[Failure]]:
    """A rationale on every judged pair (see factory/workflows/rationale.py); a pair without one is a failure."""
    settings = ctx.config.rationales
    verifier = settings.verifier_role or ctx.config.judging.setting.models[0]
    return await write_rationales(
        ctx.gateway, pairs, judgments, settings, verifier=verifier, concurrency=ctx.config.run.concurrency
    )


async def variants_stage(
    ctx: BuildContext, prompts: list[Prompt], pairs: list[Pair]
) -> tuple[list[Pair | MaplIntraRow], list[Failure]]:
    """MAPL rows with code-verified labels (see factory/pipeline/stages/mapl_variants.py)."""
    return await mapl_variants(ctx, prompts, pairs)


def _scored(judgment: Judgment) -> bool:
    """A pairwise verdict, or a listwise ranking."""
    return judgment.get("verdict") is not None or bool(judgment.get("ranking"))


def _distinct(candidates: Sequence[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c["content_hash"] not in seen:
            seen.add(c["content_hash"])
            out.append(c)
    return out


def _group(rows: Sequence[R], key: str) -> dict[str, list[R]]:
    out: dict[str, list[R]] = {}
    for row in rows:
        out.setdefault(row[key], []).append(row)
    return out


def _merge(results: list[tuple[list[R], list[Failure]]]) -> tuple[list[R], list[Failure]]:
    rows: list[R] = []
    fails: list[Failure] = []
    for r, f in results:
        rows += r
        fails += f
    return rows, fails
