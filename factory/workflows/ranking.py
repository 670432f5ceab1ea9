"""N-way judging: Bradley-Terry strengths for all of a prompt's candidates at once.

* `listwise`: each call shows the judge every distinct candidate (2-8) and asks for a ranking,
  best first (`judges.protocols.render_listwise`). `ranking.calls` calls per judge model (each juror
  of a jury), each in another order: a seeded shuffle, then rotations of it, so that over the first
  N calls every candidate takes every position once and the judge's position bias averages out.
  Each ranking is broken into the pairwise wins it implies.
* `bradley_terry`: the round robin's comparisons (`selection.round_robin`, judged under the build's
  judge setting: order policy, jury, debate), a win 1 and a tie half to each side.

Either way the wins are fitted by `judges.metrics.bradley_terry.fit_bradley_terry` and every judgment row of
the prompt gets `strengths` (JSON, strongest first: `candidate_id`, `strength` on the log scale,
`comparisons`) and `best_id`; the pair rules read them (`factory.pipeline.stages.strength_pairs`).

A listwise row is one call: `kind`/`protocol` "listwise", `shown` (the candidate ids in the order
shown), `ranking` (the candidate ids best first; None when unscored, with `unscored_reason`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from factory._util.concurrency import map_bounded
from factory._util.json_columns import dumps, load_json
from factory.config import RankingSettings
from factory.inputs.conversation import earlier_answers
from factory.inputs.prompt_sources import Prompt
from factory.llm import Completion, Gateway, LLMError
from factory.records import Candidate, Judgment, Strength, stop_of
from factory.workflows.tournaments import SelectionResult, _distinct, question_of, round_robin
from judges.engine.ask import resolve_model
from judges.engine.outcome import Usage, error_reason
from judges.engine.settings import JudgeSetting
from judges.protocols import ParsedRanking, parse_ranking, render_listwise, render_listwise_reprompt


def judge_models(setting: JudgeSetting) -> list[str]:
    """The models that rank: the judge's, or each juror's."""
    if setting.kind == "jury":
        return [juror.models[0] for juror in setting.juror_settings()]
    return [setting.models[0]]


def listwise_judge_id(setting: JudgeSetting, model: str, calls: int) -> str:
    suffix = "/json" if setting.structured else ""
    return f"listwise[{model}]/k{calls}{suffix}"


def presentation_orders(n: int, calls: int, rng: random.Random) -> list[list[int]]:
    """`calls` orders of `n` candidates: a seeded shuffle, then its rotations; after n calls a new shuffle.

    >>> presentation_orders(3, 3, random.Random(0))
    [[0, 2, 1], [2, 1, 0], [1, 0, 2]]
    """
    orders: list[list[int]] = []
    base: list[int] = []
    for k in range(calls):
        if k % n == 0:
            base = list(range(n))
            rng.shuffle(base)
        shift = k % n
        orders.append(base[shift:] + base[:shift])
    return orders


def strengths_table(
    candidate_ids: Sequence[str], outcomes: Sequence[tuple[int, int, float]], prior: float
) -> list[Strength]:
    """Candidates strongest first with their log-strength and how many comparisons they were in.
    Equal strengths keep the candidates' order."""
    # numpy (through the fit) is imported only by builds that rank listwise or by Bradley-Terry:
    # the common pairwise build would pay ~0.2 s of start-up for it before its first model call.
    from judges.metrics.bradley_terry import fit_bradley_terry

    fitted = fit_bradley_terry(len(candidate_ids), outcomes, prior=prior)
    played = [0] * len(candidate_ids)
    for i, j, _ in outcomes:
        played[i] += 1
        played[j] += 1
    table: list[Strength] = [
        {"candidate_id": cid, "strength": round(float(fitted[k]), 6), "comparisons": played[k]}
        for k, cid in enumerate(candidate_ids)
    ]
    return sorted(table, key=lambda s: -s["strength"])


def _stamp(judgments: list[Judgment], table: list[Strength], select: str) -> None:
    text = dumps(table)
    for row in judgments:
        row["best_id"], row["strengths"], row["select"] = table[0]["candidate_id"], text, select


async def _rank_once(
    gateway: Gateway,
    setting: JudgeSetting,
    model: str,
    prompt: Prompt,
    shown: list[Candidate],
    call: int,
    calls: int,
    tag: str | None,
) -> Judgment:
    """One listwise call (re-prompted once when the reply cannot be read) as a judgment row."""
    started = time.perf_counter()
    target = resolve_model(gateway, model, setting.api_base)
    question = question_of(prompt, earlier_answers(shown[0]))
    messages = render_listwise(question, [c["text"] for c in shown], structured=setting.structured)
    raws: list[str] = []
    completions: list[Completion] = []
    parsed = ParsedRanking(unscored_reason="empty")
    stop = None
    for attempt in range(2):
        try:
            completion = await gateway.complete(target.model, messages, tag=tag, role=target.label)
        except LLMError as exc:
            parsed, stop = ParsedRanking(unscored_reason=error_reason(exc)), stop_of(exc)
            break
        completions.append(completion)
        raws.append(completion.text)
        parsed = parse_ranking(completion.text, len(shown))
        if parsed.scored or attempt == 1:
            break
        messages = [
            *messages,
            {"role": "assistant", "content": completion.text},
            render_listwise_reprompt(len(shown), structured=setting.structured),
        ]
    usage = Usage.of(completions)
    judge_id = listwise_judge_id(setting, target.name, calls)
    ids = [c["candidate_id"] for c in shown]
    row: Judgment = {
        "judgment_id": f"{prompt.prompt_id}@listwise{call}|{judge_id}",
        "item_id": f"{prompt.prompt_id}@listwise{call}",
        "prompt_id": prompt.prompt_id,
        "judge_id": judge_id,
        "kind": "listwise",
        "models": [target.name],
        "protocol": "listwise",
        "scale": None,
        "order": "listwise",
        "flipped": None,
        "verdict": None,
        "score_a": None,
        "score_b": None,
        "unscored_reason": parsed.unscored_reason,
        "raw": dumps(raws),
        "latency_s": round(time.perf_counter() - started, 4),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost_usd": usage.cost_usd,
        "votes": "[]",
        "injection_flags": "[]",
        "shown": dumps(ids),
        "ranking": dumps([ids[k] for k in parsed.order]) if parsed.order else None,
    }
    if stop is not None:
        row["stop"] = stop
    return row


async def listwise(
    gateway: Gateway,
    setting: JudgeSetting,
    ranking: RankingSettings,
    prompt: Prompt,
    candidates: Sequence[Candidate],
    *,
    rng: random.Random,
    tag: str | None = None,
) -> SelectionResult:
    """Rank the prompt's distinct candidates `ranking.calls` times per judge model and fit their strengths.

    The rows come back in call order (model by model); with no ranking read at all, `best` is None
    and no row has `strengths`.
    """
    distinct = _distinct(candidates)
    if len(distinct) < 2:
        return SelectionResult(distinct[0] if distinct else None, [])
    orders = presentation_orders(len(distinct), ranking.calls, rng)
    jobs = [(model, k, order) for model in judge_models(setting) for k, order in enumerate(orders)]

    async def one(job: tuple[str, int, list[int]]) -> Judgment:
        model, k, order = job
        return await _rank_once(
            gateway, setting, model, prompt, [distinct[i] for i in order], k, ranking.calls, tag
        )

    judgments = await map_bounded(jobs, one, len(jobs))
    index = {c["candidate_id"]: i for i, c in enumerate(distinct)}
    rankings = [[index[cid] for cid in load_json(row["ranking"])] for row in judgments if row.get("ranking")]
    if not rankings:
        return SelectionResult(None, judgments)
    from judges.metrics.bradley_terry import ranking_outcomes  # numpy: see strengths_table

    table = strengths_table([c["candidate_id"] for c in distinct], ranking_outcomes(rankings), ranking.prior)
    _stamp(judgments, table, "listwise")
    return SelectionResult(distinct[index[table[0]["candidate_id"]]], judgments)


async def bradley_terry(
    gateway: Gateway,
    setting: JudgeSetting,
    ranking: RankingSettings,
    prompt: Prompt,
    candidates: Sequence[Candidate],
    *,
    rng: random.Random,
    tag: str | None = None,
) -> SelectionResult:
    """The round robin's comparisons, fitted: every row also gets `strengths`, and `best_id` is the strongest."""
    result = await round_robin(gateway, setting, prompt, candidates, rng=rng, tag=tag)
    if not result.judgments:
        return result
    distinct = _distinct(candidates)
    index = {c["candidate_id"]: i for i, c in enumerate(distinct)}
    score = {"A": 1.0, "B": 0.0, "tie": 0.5}
    outcomes = [
        (index[j["candidate_a"]], index[j["candidate_b"]], score[verdict])
        for j in result.judgments
        if (verdict := j.get("verdict")) is not None and verdict in score
    ]
    if not outcomes:
        return result
    table = strengths_table([c["candidate_id"] for c in distinct], outcomes, ranking.prior)
    _stamp(result.judgments, table, "bradley_terry")
    return SelectionResult(distinct[index[table[0]["candidate_id"]]], result.judgments)
