"""Best-of-N selection and workflow comparison by a judge setting (Fellowship paper, arXiv 2408.08688).

* `knockout`: the paper's best-of-N: r1 vs r2, the winner vs r3, and so on. A challenger replaces
  the champion only on a strict win; a tie or an unscored comparison keeps the champion.
* `round_robin`: every two distinct candidates are compared once (n(n-1)/2 comparisons), and the
  candidates are ranked by their win counts (`standings`: a win is 1, a tie 0.5 to each side, an
  unscored comparison nothing).
* `win_rate` / `compare_workflows`: the paper's comparison of a workflow against another (or a
  single-agent baseline) = strict wins / n, ties are not wins; ties, losses and unscored comparisons
  are reported beside it, with the answer order the judge setting used.

Every comparison goes through `judges.engine.pairwise.judge_pair`, so juries, debates and order swapping
come with the judge setting; verdicts are in the item's orientation (A = the first output given).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Literal

from factory._util.concurrency import map_bounded, stream_bounded
from factory._util.json_columns import dumps
from factory.inputs.conversation import earlier_answers, prompt_messages
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway
from factory.records import Candidate, Judgment
from judges.engine.pairwise import judge_pair
from judges.engine.settings import JudgeSetting

_POSITION = {
    "fixed": "fixed order: the first output is always shown as Assistant A (the paper's setup)",
    "random": "seeded random order per item; verdicts mapped back to the first output = A",
    "both": "both orders; a verdict that flips under the swap counts as a tie",
}


def question_of(prompt: Prompt, earlier: Sequence[str] = ()) -> str | list[dict[str, str]]:
    """What a judge sees as the question: the text of a single-turn prompt; for a multi-turn one, the
    conversation up to the last user turn with the shared `earlier` answers (MT-Bench's multi-turn
    layout, the judge told to focus on the final answer), or only the user turns without them."""
    if len(prompt.turns) == 1:
        return prompt.text
    if not earlier:  # callers holding only final outputs (compare_workflows)
        return [{"role": "user", "content": t} for t in prompt.turns]
    return prompt_messages(prompt.turns, earlier)


@dataclass(frozen=True)
class SelectionResult:
    """The winning candidate (None when given none) and the judgment rows, in the order of the
    comparisons (a knockout's as judged; a round robin's as (r1, r2), (r1, r3), ..., (r2, r3), ...)."""

    best: Candidate | None
    judgments: list[Judgment]


def _distinct(candidates: Sequence[Candidate]) -> list[Candidate]:
    """`candidates` less those whose text repeats an earlier one (judging a text against itself tells nothing)."""
    seen: set[str] = set()
    distinct = []
    for cand in candidates:
        key = cand.get("content_hash") or cand["text"]
        if key not in seen:
            seen.add(key)
            distinct.append(cand)
    return distinct


async def _compare(
    gateway: Gateway, setting: JudgeSetting, prompt: Prompt, a: Candidate, b: Candidate, tag: str | None
) -> Judgment:
    """One judgment row of `a` (shown as the item's A) against `b`."""
    item_id = f"{prompt.prompt_id}@{a['candidate_id']}~{b['candidate_id']}"
    # Every candidate of a prompt answers its last turn after the same earlier answers.
    question = question_of(prompt, earlier_answers(a))
    row = await judge_pair(gateway, setting, item_id, question, a["text"], b["text"], tag=tag)
    row["prompt_id"], row["candidate_a"], row["candidate_b"] = (
        prompt.prompt_id,
        a["candidate_id"],
        b["candidate_id"],
    )
    return row


async def knockout(
    gateway: Gateway,
    setting: JudgeSetting,
    prompt: Prompt,
    candidates: Sequence[Candidate],
    *,
    tag: str | None = None,
) -> SelectionResult:
    """Pick the best of `candidates` (rows with `candidate_id`, `text`, `content_hash`) by knockout.

    Repeated texts are skipped (`_distinct`). Each judgment row gets `prompt_id`,
    `candidate_a` (the champion), `candidate_b` (the challenger) and, once the knockout is over, `best_id`.
    """
    distinct = _distinct(candidates)
    if not distinct:
        return SelectionResult(None, [])
    judgments: list[Judgment] = []
    champion = distinct[0]
    for challenger in distinct[1:]:
        row = await _compare(gateway, setting, prompt, champion, challenger, tag)
        judgments.append(row)
        if row["verdict"] == "B":
            champion = challenger
    for row in judgments:
        row["best_id"] = champion["candidate_id"]
    return SelectionResult(champion, judgments)


@dataclass(frozen=True)
class Standing:
    """One candidate's record in a round robin."""

    candidate_id: str
    wins: float  # 1 per strict win, 0.5 per tie
    played: int  # scored comparisons it was in (unscored ones count for nothing)
    score_margin: float  # its judge scores minus its opponents', summed (0 for unscored protocols)


def win_counts(candidate_ids: Sequence[str], judgments: Iterable[Mapping[str, Any]]) -> dict[str, Standing]:
    """Each candidate's wins over `judgments` (rows with `candidate_a`, `candidate_b`, `verdict` in A's
    orientation, optional `score_a`/`score_b`). A win counts 1, a tie 0.5 to each side; an unscored
    comparison (verdict None) counts for nothing, not even as played.

    >>> rows = [{"candidate_a": "x", "candidate_b": "y", "verdict": "A"},
    ...         {"candidate_a": "x", "candidate_b": "z", "verdict": "tie"},
    ...         {"candidate_a": "y", "candidate_b": "z", "verdict": None}]
    >>> {c: (s.wins, s.played) for c, s in win_counts(["x", "y", "z"], rows).items()}
    {'x': (1.5, 2), 'y': (0.0, 1), 'z': (0.5, 1)}
    """
    wins = dict.fromkeys(candidate_ids, 0.0)
    played = dict.fromkeys(candidate_ids, 0)
    margin = dict.fromkeys(candidate_ids, 0.0)
    for j in judgments:
        a, b, verdict = j["candidate_a"], j["candidate_b"], j.get("verdict")
        if verdict is None:
            continue
        played[a] += 1
        played[b] += 1
        if verdict == "tie":
            wins[a] += 0.5
            wins[b] += 0.5
        else:
            wins[a if verdict == "A" else b] += 1.0
        if j.get("score_a") is not None and j.get("score_b") is not None:
            gap = float(j["score_a"]) - float(j["score_b"])
            margin[a] += gap
            margin[b] -= gap
    return {c: Standing(c, wins[c], played[c], margin[c]) for c in candidate_ids}


def standings(
    candidate_ids: Sequence[str], judgments: Iterable[Mapping[str, Any]], rng: random.Random
) -> list[Standing]:
    """The candidates from most to fewest wins.

    Equal win counts are broken by the summed judge score margin (scored protocols), then by a draw
    from `rng`, so a build's seed fixes the order. The draw, not the candidates' order, settles the
    rest because that order follows the configured workflows: it would favour the first generator.
    """
    draw = {c: rng.random() for c in sorted(candidate_ids)}  # drawn in a fixed order: same seed, same draw
    table = win_counts(candidate_ids, judgments).values()
    return sorted(table, key=lambda s: (-s.wins, -s.score_margin, draw[s.candidate_id]))


async def round_robin(
    gateway: Gateway,
    setting: JudgeSetting,
    prompt: Prompt,
    candidates: Sequence[Candidate],
    *,
    rng: random.Random,
    tag: str | None = None,
) -> SelectionResult:
    """Compare every two distinct `candidates` once and pick the one with the most wins (`standings`).

    Each comparison is judged under `setting` as a knockout's would be (its order policy, jury or
    debate), the earlier candidate as the item's A. All of a prompt's comparisons are started at
    once: the gateway's concurrency limits decide how many run. Every judgment row gets `prompt_id`,
    `candidate_a`, `candidate_b`, `best_id` (the leader) and `standings` (JSON: the ranked list of
    `Standing`s, which the pair rules read).
    """
    distinct = _distinct(candidates)
    if len(distinct) < 2:
        return SelectionResult(distinct[0] if distinct else None, [])
    matches = list(combinations(distinct, 2))

    async def one(match: tuple[Candidate, Candidate]) -> Judgment:
        return await _compare(gateway, setting, prompt, match[0], match[1], tag)

    # No bound of our own: the gateway's concurrency limits (overall and per model) already hold
    # back calls beyond what the endpoint may take, and results keep the comparisons' order.
    judgments = await map_bounded(matches, one, len(matches))
    ranked = standings([c["candidate_id"] for c in distinct], judgments, rng)
    table = dumps([asdict(s) for s in ranked])
    for row in judgments:
        row["best_id"], row["standings"] = ranked[0].candidate_id, table
    by_id = {c["candidate_id"]: c for c in distinct}
    return SelectionResult(by_id[ranked[0].candidate_id], judgments)


def win_rate(verdicts: Iterable[str | None]) -> dict[str, Any]:
    """Win rate of side A from verdicts in A's orientation (`A` win, `B` loss, `tie`, None unscored).

    `n` counts scored comparisons (wins + ties + losses); unscored ones are reported, never guessed.
    `win_rate` = wins / n (ties are not wins); None when nothing was scored.

    >>> win_rate(["A"] * 359 + ["B"] * 100 + ["tie"] * 41)["win_rate"]
    0.718
    """
    counts = {"A": 0, "B": 0, "tie": 0, None: 0}
    for verdict in verdicts:
        if verdict not in counts:
            raise ValueError(f"unknown verdict {verdict!r}: expected 'A', 'B', 'tie' or None")
        counts[verdict] += 1
    n = counts["A"] + counts["B"] + counts["tie"]
    return {
        "wins": counts["A"],
        "ties": counts["tie"],
        "losses": counts["B"],
        "unscored": counts[None],
        "n": n,
        "win_rate": counts["A"] / n if n else None,
        "tie_rate": counts["tie"] / n if n else None,
        "loss_rate": counts["B"] / n if n else None,
    }


async def compare_workflows(
    gateway: Gateway,
    setting: JudgeSetting,
    prompts: Iterable[Prompt],
    outputs_a: Mapping[str, str],
    outputs_b: Mapping[str, str],
    *,
    tag: str | None = None,
    concurrency: int = 16,
    names: tuple[str, str] = ("a", "b"),
) -> dict[str, Any]:
    """Judge A's output against B's for every prompt both answered; the win rate of A over B.

    `outputs_*` map prompt id -> output text (see `workflow_outputs`). Prompts are streamed with at
    most `concurrency` comparisons in flight. Returns `win_rate`'s fields plus `missing` (prompts
    lacking an output on either side), `order`/`position` (how answers were placed), `flipped`
    (comparisons shown in B-A order), `judge` (the setting id) and `judgments` (the rows).
    """
    missing = 0

    def answered() -> Iterable[Prompt]:
        nonlocal missing
        for prompt in prompts:
            if prompt.prompt_id in outputs_a and prompt.prompt_id in outputs_b:
                yield prompt
            else:
                missing += 1

    async def one(prompt: Prompt) -> Judgment:
        item_id = f"{prompt.prompt_id}@{names[0]}~{names[1]}"
        row = await judge_pair(
            gateway,
            setting,
            item_id,
            question_of(prompt),
            outputs_a[prompt.prompt_id],
            outputs_b[prompt.prompt_id],
            tag=tag,
        )
        row["prompt_id"], row["workflow_a"], row["workflow_b"] = prompt.prompt_id, names[0], names[1]
        return row

    judgments = [row async for _, row in stream_bounded(answered(), one, concurrency)]
    judgments.sort(key=lambda r: r["item_id"])
    return {
        **win_rate(j["verdict"] for j in judgments),
        "missing": missing,
        "order": setting.order,
        "position": _POSITION.get(setting.order, setting.order),
        "flipped": sum(1 for j in judgments if j.get("flipped")),
        "judge": setting.setting_id,
        "workflows": list(names),
        "judgments": judgments,
    }


def workflow_outputs(
    candidates: Iterable[Mapping[str, Any]], workflow: str, pick: Literal["final", "first"] = "final"
) -> dict[str, str]:
    """One output per prompt of a workflow: its first sample's final response (last step) or first answer.

    `pick="first"` on a feedback loop gives its unrevised answer: the single-agent baseline of the
    same generator, at no extra cost.
    """
    chosen: dict[str, Mapping[str, Any]] = {}
    for row in candidates:
        if row["workflow"] != workflow:
            continue
        current = chosen.get(row["prompt_id"])
        rank = (row.get("sample", 0), row.get("step", 0) if pick == "first" else -row.get("step", 0))
        if current is None or rank < (
            current.get("sample", 0),
            current.get("step", 0) if pick == "first" else -current.get("step", 0),
        ):
            chosen[row["prompt_id"]] = row
    return {pid: str(row["text"]) for pid, row in chosen.items()}
