"""The build's MAPL stage (arXiv 2505.12845): verified prompt variants of each shard's judged pairs.

* inter-sample: the pair's prompt gets constraints that the chosen answer satisfies and the rejected
  answer violates (at least one): a new pair (`source` = `mapl_inter`) whose label the checkers gave;
* intra-sample: each distinct answer of a pair is kept fixed and gets two prompts, one whose added
  constraints it satisfies and one whose constraints it violates (`source` = `mapl_intra`);
* fresh (`variants.fresh`, off by default): one multi-instruction prompt per prompt is answered
  `fresh_samples` times by `variants.fresh_role`, and the answers are paired by the checkers alone.

No LLM decides a label here. Every row records its constraints and checker results (`checks`) and is
re-verified with `factory.mapl.reverify` before it leaves the stage. Random choices are seeded by the
run seed and the pair or prompt id, so a rerun or resume builds the same rows.
Constraints go on the last user turn (the one the compared answers reply to); the earlier turns and
their shared answers (`earlier_answers`) are carried over unchanged, so multi-turn rows keep their history.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, cast

from factory._util.concurrency import map_bounded
from factory._util.json_columns import load_json
from factory.inputs.prompt_sources import Prompt
from factory.llm import LLMError
from factory.mapl import (
    augment_prompt,
    from_dict,
    inter_sample_pair,
    intra_sample_rows,
    pairs_from_checked,
    reverify,
    satisfied_by,
)
from factory.records import Failure, MaplIntraRow, Pair, stop_of

if TYPE_CHECKING:
    from factory.pipeline.context import BuildContext

# A row of `factory.mapl` (its checks and constraints), before the stage makes it a pair or a MAPL row.
MaplRow = dict[str, Any]


def _row_id(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def checker_rationale(row: MaplRow) -> str:
    """The rationale of a MAPL pair, written from its checker results (no LLM: the checkers are the evidence)."""
    constraints = [from_dict(c) for c in load_json(row["constraints"])]
    failed = [
        c.instruction()
        for c, ok in zip(constraints, load_json(row["checks"])["rejected"], strict=True)
        if not ok
    ]
    return (
        "The prompt adds verifiable instructions. The chosen answer follows all "
        f"{len(constraints)} of them; the rejected answer breaks {len(failed)}: " + " ".join(failed)
    )


def _inter(ctx: BuildContext, pair: Pair, earlier: list[str], last: str) -> Pair | None:
    rng = ctx.rng("mapl_inter", pair["pair_id"])
    row = inter_sample_pair(
        pair["prompt_id"], last, pair["chosen"], pair["rejected"], rng, k=ctx.config.variants.constraints
    )
    if row is None:
        return None  # no measured constraint separates the two answers
    turns = [*earlier, row["prompt"]]
    return cast(
        Pair,
        {
            **row,
            "pair_id": _row_id("mapl_inter", pair["pair_id"], row["prompt"]),
            "prompt": "\n\n".join(turns),
            "turns": turns,
            "earlier_answers": pair.get("earlier_answers") or [],
            "chosen_id": pair["chosen_id"],
            "rejected_id": pair["rejected_id"],
            "chosen_model": pair.get("chosen_model"),
            "rejected_model": pair.get("rejected_model"),
            "margin": None,
            "votes": [],
            "judge_id": pair.get("judge_id"),
            "source": "mapl_inter",
            "rationale": checker_rationale(row),
            "rationale_status": "checker",
            "provenance": {"from_pair": pair["pair_id"], "method": row["method"]},
        },
    )


def _intra(
    ctx: BuildContext,
    pair: Pair,
    earlier: list[str],
    last: str,
    response_id: str,
    response: str,
    model: str | None,
) -> list[MaplIntraRow]:
    prompt_id = pair["prompt_id"]
    rng = ctx.rng("mapl_intra", prompt_id, response_id)
    out: list[MaplIntraRow] = []
    for row in intra_sample_rows(prompt_id, last, response, rng, k=ctx.config.variants.constraints):
        out.append(
            cast(
                MaplIntraRow,
                {
                    **row,
                    "row_id": _row_id("mapl_intra", prompt_id, response_id, row["chosen_prompt"]),
                    "source": "mapl_intra",
                    "response_id": response_id,
                    "model": model,
                    "chosen_turns": [*earlier, row["chosen_prompt"]],
                    "rejected_turns": [*earlier, row["rejected_prompt"]],
                    "earlier_answers": pair.get("earlier_answers") or [],
                },
            )
        )
    return out


async def _fresh(ctx: BuildContext, prompt: Prompt, best: str) -> tuple[list[Pair], list[Failure]]:
    """Fresh answers to one multi-instruction prompt, paired by the checkers (single-turn prompts only)."""
    settings = ctx.config.variants
    picked = satisfied_by(best, ctx.rng("mapl_fresh", prompt.prompt_id), settings.constraints)
    if not picked or len(prompt.turns) > 1:
        return [], []
    text = augment_prompt(prompt.text, picked)
    answers: list[str] = []
    models: dict[str, str] = {}
    try:
        for sample in range(settings.fresh_samples):
            reply = await ctx.gateway.complete(
                settings.fresh_role, [{"role": "user", "content": text}], sample=sample, tag="mapl_fresh"
            )
            answers.append(reply.text)
            models[reply.text] = reply.model
    except LLMError as exc:
        failure: Failure = {
            "item_id": prompt.prompt_id,
            "stage": "variants",
            "reason": f"{exc.reason}: {exc}",
            "raw": (exc.raw or "")[:4000],
        }
        if (stop := stop_of(exc)) is not None:
            failure["stop"] = stop
        return [], [failure]
    rows: list[Pair] = []
    for row in pairs_from_checked(prompt.prompt_id, text, picked, answers):
        ids = [
            f"{prompt.prompt_id}:mapl_fresh:s{answers.index(row[side])}" for side in ("chosen", "rejected")
        ]
        rows.append(
            cast(
                Pair,
                {
                    **row,
                    "pair_id": _row_id("mapl_fresh", *ids, text),
                    "turns": [text],
                    "earlier_answers": [],
                    "chosen_id": ids[0],
                    "rejected_id": ids[1],
                    "chosen_model": models[row["chosen"]],
                    "rejected_model": models[row["rejected"]],
                    "margin": None,
                    "votes": [],
                    "judge_id": None,
                    "source": "mapl_inter",
                    "rationale": checker_rationale(row),
                    "rationale_status": "checker",
                    "provenance": {"from_pair": None, "method": row["method"]},
                },
            )
        )
    return rows, []


async def mapl_variants(
    ctx: BuildContext, prompts: list[Prompt], pairs: list[Pair]
) -> tuple[list[Pair | MaplIntraRow], list[Failure]]:
    """MAPL rows for a shard's judged pairs: (rows of both kinds, failures).

    A row whose recorded checks do not re-verify never leaves the stage (it becomes a failure)."""
    settings = ctx.config.variants
    if not settings.enabled:
        return [], []
    rows: list[Pair | MaplIntraRow] = []
    seen_responses: set[str] = set()
    judged = [p for p in pairs if p.get("source", "judged") == "judged"]
    for pair in judged:
        turns = list(load_json(pair["turns"]))
        earlier, last = turns[:-1], turns[-1]
        if settings.inter and (row := _inter(ctx, pair, earlier, last)) is not None:
            rows.append(row)
        if settings.intra:
            sides = (
                (pair["chosen_id"], pair["chosen"], pair.get("chosen_model")),
                (pair["rejected_id"], pair["rejected"], pair.get("rejected_model")),
            )
            for response_id, response, model in sides:
                if response_id not in seen_responses:
                    seen_responses.add(response_id)
                    rows += _intra(ctx, pair, earlier, last, response_id, response, model)
    failures: list[Failure] = []
    if settings.fresh:
        best: dict[str, str] = {}
        for pair in judged:
            best.setdefault(pair["prompt_id"], pair["chosen"])
        todo = [p for p in prompts if p.prompt_id in best]
        for fresh_rows, fresh_failures in await map_bounded(
            todo, lambda p: _fresh(ctx, p, best[p.prompt_id]), ctx.config.run.concurrency
        ):
            rows += fresh_rows
            failures += fresh_failures
    kept: list[Pair | MaplIntraRow] = []
    for made in rows:
        if reverify(made):
            kept.append(made)
        else:  # cannot happen unless a checker is not deterministic; kept visible rather than silent
            item = made.get("pair_id") or made.get("row_id")
            failures.append(
                {
                    "item_id": str(item),
                    "stage": "variants",
                    "reason": "mapl_label_does_not_reverify",
                    "raw": json.dumps(made, default=str)[:4000],
                }
            )
    return kept, failures
