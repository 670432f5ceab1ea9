"""Preference pairs cut from one prompt's judgments.

Three rules (`PairSettings.rule`):

* `paper` (Fellowship of the LLMs): the judge's best response is accepted and every other distinct
  response is rejected against it, giving DPO pairs and, from the same rows, KTO rows.
* `best_vs_worst`: one pair per prompt, the best response against the weakest one.
* `all_pairs`: every two responses whose mean judge scores differ (needs a scored protocol).

The evidence of a pair is the judgment that compared its two responses. A knockout does not compare
the best response with every other one: a response knocked out by a third one is rejected by
transitivity, with the judgment that knocked it out as its evidence (`direct` = False).

A round robin (`judging.select: round_robin`) compares every two responses, so every pair has direct
evidence. Its rows carry the prompt's `standings` (win counts: a win 1, a tie 0.5; see
`factory.workflows.tournaments.standings`): the best response is the one with the most wins, the
weakest (`best_vs_worst`) the one with the fewest, and each pair records the standings, the two
responses' wins and the comparisons counted in its provenance. The margin stays the judge's score
difference of the direct comparison, so `min_margin` keeps one unit (judge points) whatever the
selection; the win difference is `provenance.win_margin`. A leader that lost or tied to a response
head to head is not paired with it (`contradicted`, `tie`), as in a knockout.

Each pair keeps its margin (the score difference in the judge's points, chosen minus rejected; None
for unscored protocols such as `direct`) as its preference strength, and the jurors' votes oriented
to the pair (`A` = chosen, `B` = rejected), the way `factory annotate` reads them. A pair whose chosen
answer speaks in the judge's own format (`### Answer:`, score lines, the template's delimiters) is
dropped unless `keep_injection_flagged`: on small judges such text wins most comparisons it is in.

Judges prefer longer answers, and DPO learns that preference from the pairs (a model trained on them
grows verbose). `max_longer_chosen_share` caps the share of pairs whose chosen answer is longer than
the rejected one. It holds within each prompt's pairs, so it holds for the dataset whatever the order
prompts finish in (a resumed build cuts the same pairs): the longer-chosen pairs beyond the cap, the
smallest margins first, are dropped as `length_balance`.

    >>> from factory.config import PairSettings, RankingSettings
    >>> cands = [{"candidate_id": "c1", "content_hash": "h1", "text": "4"},
    ...          {"candidate_id": "c2", "content_hash": "h2", "text": "5"}]
    >>> j = {"judgment_id": "j1", "candidate_a": "c1", "candidate_b": "c2", "verdict": "A",
    ...      "score_a": 8.0, "score_b": 3.0, "best_id": "c1", "judge_id": "judge"}
    >>> pairs, why = select_pairs("p1", ["2+2?"], cands, [j], PairSettings())
    >>> [(p["chosen"], p["rejected"], p["margin"]) for p in pairs]
    [('4', '5', 5.0)]
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from factory._util.json_columns import load_json
from factory.config import PairSettings, RankingSettings
from factory.inputs.conversation import earlier_answers
from factory.records import Candidate, Judgment, Pair
from judges.protocols import injection_markers

# A round robin's standing as its judgments carry it (`factory.workflows.tournaments.Standing`, from JSON).
StandingRow = dict[str, Any]


def pair_id(prompt_id: str, chosen_id: str, rejected_id: str) -> str:
    """Stable id of a pair: the same prompt and responses always give the same id."""
    return hashlib.sha256(f"{prompt_id}|{chosen_id}|{rejected_id}".encode()).hexdigest()[:16]


def is_inconsistent(judgment: Judgment) -> bool:
    """True when the verdict changed under an order swap.

    An explicit `inconsistent` column wins; otherwise `flipped` on a both-orders judgment means the
    two orders disagreed (with a random order, `flipped` only says which order was shown).
    """
    if judgment.get("inconsistent") is not None:
        return bool(judgment["inconsistent"])
    return judgment.get("order") == "both" and bool(judgment.get("flipped"))


def oriented_votes(judgment: Judgment, chosen_id: str) -> list[Any]:
    """The votes behind `judgment`'s verdict (per juror, or per order for `order: both`), turned to
    the pair's orientation: `A` = chosen, `B` = rejected.

    Reads `votes` as the judge writes it (a JSON list of verdicts; `{"verdict": ...}` objects keep
    their other keys); a row without votes counts its own verdict as the one vote. Unscored stays None.
    """
    raw = load_json(judgment.get("votes"))
    if not isinstance(raw, list) or not raw:
        raw = [judgment.get("verdict")]
    swap = judgment.get("candidate_b") == chosen_id

    def turn(verdict: Any) -> Any:
        return {"A": "B", "B": "A"}.get(verdict, verdict) if swap else verdict

    return [{**v, "verdict": turn(v.get("verdict"))} if isinstance(v, dict) else turn(v) for v in raw]


@dataclass
class _Evidence:
    """What one judgment says about chosen vs rejected."""

    judgment: Judgment | None
    relation: str | None  # "chosen" (chosen preferred), "tie", "rejected" (contradicts), None (unscored)
    margin: float | None
    direct: bool


def _scores(judgments: Sequence[Judgment], keep_inconsistent: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for j in judgments:
        if j.get("verdict") is None or (is_inconsistent(j) and not keep_inconsistent):
            continue
        for side in ("a", "b"):
            score = j["score_a"] if side == "a" else j["score_b"]
            if score is not None:
                out.setdefault(j["candidate_a" if side == "a" else "candidate_b"], []).append(float(score))
    return out


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def _evidence(judgments: Sequence[Judgment], chosen_id: str, rejected_id: str) -> _Evidence:
    """The direct comparison of the two when there is one, else the judgment that knocked `rejected` out."""
    direct = [j for j in judgments if {j["candidate_a"], j["candidate_b"]} == {chosen_id, rejected_id}]
    if direct:
        j = direct[-1]
        return _Evidence(j, _relation(j, chosen_id), _margin(j, chosen_id), True)
    knocked_out = [
        j
        for j in judgments
        if rejected_id in (j["candidate_a"], j["candidate_b"])
        and (
            j.get("verdict") == "tie" or j.get("verdict") == ("B" if j["candidate_a"] == rejected_id else "A")
        )
    ]
    if not knocked_out:
        return _Evidence(None, None, None, False)
    j = knocked_out[0]
    winner = j["candidate_b"] if j["candidate_a"] == rejected_id else j["candidate_a"]
    return _Evidence(j, _relation(j, winner), _margin(j, winner), False)


def _relation(j: Judgment, chosen_id: str) -> str | None:
    verdict = j.get("verdict")
    if verdict is None or verdict == "tie":
        return verdict
    return "chosen" if verdict == ("A" if j["candidate_a"] == chosen_id else "B") else "rejected"


def _margin(j: Judgment, chosen_id: str) -> float | None:
    score_a, score_b = j.get("score_a"), j.get("score_b")
    if score_a is None or score_b is None:
        return None
    a, b = float(score_a), float(score_b)
    return a - b if j["candidate_a"] == chosen_id else b - a


def _rank(
    candidates: Sequence[Candidate], judgments: Sequence[Judgment], means: dict[str, float | None]
) -> list[Candidate]:
    """Candidates from strongest to weakest: mean score when there are scores, else net wins."""
    net: Counter[str] = Counter()
    for j in judgments:
        if j.get("verdict") in ("A", "B"):
            winner = j["candidate_a"] if j["verdict"] == "A" else j["candidate_b"]
            loser = j["candidate_b"] if j["verdict"] == "A" else j["candidate_a"]
            net[winner] += 1
            net[loser] -= 1
    order = {c["candidate_id"]: i for i, c in enumerate(candidates)}
    return sorted(
        candidates,
        key=lambda c: (
            -(means.get(c["candidate_id"]) or 0.0),
            -net[c["candidate_id"]],
            order[c["candidate_id"]],
        ),
    )


def _standings(judgments: Sequence[Judgment]) -> list[StandingRow] | None:
    """A round robin's ranked standings (strongest first), as its judge stage wrote them; None for a knockout."""
    table = load_json(judgments[0].get("standings")) if judgments else None
    return table if isinstance(table, list) else None


def _round_robin_provenance(
    standings: list[StandingRow], judgments: Sequence[Judgment], chosen_id: str, rejected_id: str
) -> dict[str, Any]:
    wins = {s["candidate_id"]: s["wins"] for s in standings}
    scored = sum(1 for j in judgments if j.get("verdict") is not None)
    return {
        "select": "round_robin",
        "chosen_wins": wins[chosen_id],
        "rejected_wins": wins[rejected_id],
        "win_margin": wins[chosen_id] - wins[rejected_id],
        "standings": standings,
        "comparisons": scored,
        "unscored_comparisons": len(judgments) - scored,
    }


def _weakest(
    candidates: Sequence[Candidate],
    judgments: Sequence[Judgment],
    means: dict[str, float | None],
    standings: list[StandingRow] | None,
) -> Candidate:
    """The weakest of `candidates`: the fewest round-robin wins, else the last by `_rank`."""
    if standings is None:
        return _rank(candidates, judgments, means)[-1]
    place = {s["candidate_id"]: i for i, s in enumerate(standings)}
    return max(candidates, key=lambda c: place[c["candidate_id"]])


def select_pairs(
    prompt_id: str,
    turns: Sequence[str],
    candidates: Sequence[Candidate],
    judgments: Sequence[Judgment],
    settings: PairSettings,
    ranking: RankingSettings | None = None,
) -> tuple[list[Pair], str | None]:
    """The pairs of one prompt under `settings`, and when there are none, the reason why.

    `candidates` are the prompt's distinct candidates; `judgments` its judgment rows (with
    `candidate_a`, `candidate_b` and `best_id`, as the build's judge stage writes them). Judgments
    with Bradley-Terry `strengths` (N-way judging) are cut by strength gap under `ranking`
    (`factory.pipeline.stages.strength_pairs`).
    """
    from factory.pipeline.stages.strength_pairs import (  # it builds on this module's rows
        strength_pairs,
        strengths_of,
    )

    table = strengths_of(judgments)
    if table is not None:
        return strength_pairs(
            prompt_id, turns, candidates, judgments, table, settings, ranking or RankingSettings()
        )
    by_id = {c["candidate_id"]: c for c in candidates}
    scored = [j for j in judgments if j.get("verdict") is not None]
    if not scored:
        return [], "unscored: no judgment produced a verdict"
    means = {cid: _mean(v) for cid, v in _scores(judgments, settings.keep_inconsistent).items()}
    best_id = judgments[0].get("best_id") or _rank(candidates, judgments, means)[0]["candidate_id"]
    if best_id not in by_id:
        return [], f"unknown best_id {best_id!r}"
    dropped: Counter[str] = Counter()
    pairs: list[Pair] = []
    standings = _standings(judgments)

    def consider(chosen: Candidate, rejected: Candidate, ev: _Evidence, margin: float | None) -> None:
        if chosen["content_hash"] == rejected["content_hash"]:
            return
        if ev.relation is None:
            dropped["unscored"] += 1
        elif ev.relation == "rejected":
            dropped["contradicted"] += 1  # the judge preferred the "rejected" one in its own comparison
        elif ev.judgment is not None and is_inconsistent(ev.judgment) and not settings.keep_inconsistent:
            dropped["inconsistent"] += 1
        elif ev.relation == "tie" and not settings.keep_ties:
            dropped["tie"] += 1
        elif margin is not None and margin < settings.min_margin:
            dropped["below_min_margin"] += 1
        elif not settings.keep_injection_flagged and injection_markers(chosen["text"]):
            dropped["chosen_injection_flagged"] += 1  # its win may come from talking to the judge
        else:
            pair = _pair_row(prompt_id, turns, chosen, rejected, ev, margin, settings.rule)
            if standings is not None:
                pair["provenance"].update(
                    _round_robin_provenance(
                        standings, judgments, chosen["candidate_id"], rejected["candidate_id"]
                    )
                )
            pairs.append(pair)

    best = by_id[best_id]
    if settings.rule in ("paper", "best_vs_worst"):
        others = [c for c in candidates if c["candidate_id"] != best_id]
        if settings.rule == "best_vs_worst" and others:
            others = [_weakest(others, judgments, means, standings)]
        for other in others:
            ev = _evidence(judgments, best_id, other["candidate_id"])
            consider(best, other, ev, ev.margin)
    else:
        if not means:
            return [], "no_scores: rule all_pairs needs a scored protocol (combined or independent)"
        ranked = [c for c in _rank(candidates, judgments, means) if means.get(c["candidate_id"]) is not None]
        for i, hi in enumerate(ranked):
            for lo in ranked[i + 1 :]:
                gap = means[hi["candidate_id"]] - means[lo["candidate_id"]]  # type: ignore[operator]
                if gap <= 0:
                    dropped["equal_scores"] += 1
                    continue
                ev = _evidence(judgments, hi["candidate_id"], lo["candidate_id"])
                # Scores decide; a direct comparison of the two may still veto (contradiction, tie).
                ev = (
                    _Evidence(ev.judgment, ev.relation, gap, True)
                    if ev.direct
                    else _Evidence(None, "chosen", gap, False)
                )
                consider(hi, lo, ev, gap)
    if settings.max_longer_chosen_share is not None:
        pairs, n_dropped = balance_lengths(pairs, settings.max_longer_chosen_share)
        if n_dropped:
            dropped["length_balance"] += n_dropped
    if pairs:
        return pairs, None
    detail = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())) or "one distinct response"
    return [], f"no_preference: {detail}"


def balance_lengths(pairs: list[Pair], max_share: float) -> tuple[list[Pair], int]:
    """`pairs` with at most `max_share` of them choosing the longer answer, and how many were dropped.

    With k pairs whose chosen answer is not longer, up to floor(max_share * k / (1 - max_share))
    longer-chosen pairs stay (the share of what is kept stays at or under `max_share`), those with the
    largest margins first (unscored margins last); the kept pairs keep their order.
    """
    longer = [p for p in pairs if len(p["chosen"]) > len(p["rejected"])]
    if max_share >= 1 or not longer:
        return pairs, 0
    others = len(pairs) - len(longer)
    # A small epsilon: 0.5 * 3 / 0.5 must be 3, not 2.9999999999999996.
    allowed = int(max_share * others / (1 - max_share) + 1e-9)
    ranked = sorted(longer, key=lambda p: -(p["margin"] if p["margin"] is not None else float("-inf")))
    drop = {id(p) for p in ranked[allowed:]}
    return [p for p in pairs if id(p) not in drop], len(drop)


def _pair_row(
    prompt_id: str,
    turns: Sequence[str],
    chosen: Candidate,
    rejected: Candidate,
    ev: _Evidence,
    margin: float | None,
    rule: str,
) -> Pair:
    j = ev.judgment
    return {
        "pair_id": pair_id(prompt_id, chosen["candidate_id"], rejected["candidate_id"]),
        "prompt_id": prompt_id,
        "prompt": "\n\n".join(turns),
        "turns": list(turns),
        # Shared by chosen and rejected (both answer the last turn after them): the DPO prompt's assistant turns.
        "earlier_answers": earlier_answers(chosen),
        "chosen": chosen["text"],
        "rejected": rejected["text"],
        "chosen_id": chosen["candidate_id"],
        "rejected_id": rejected["candidate_id"],
        "chosen_model": chosen.get("model"),
        "rejected_model": rejected.get("model"),
        "margin": margin,
        "votes": oriented_votes(j, chosen["candidate_id"]) if j else [],
        "tie": ev.relation == "tie",
        "flipped": is_inconsistent(j) if j else False,
        "judgment_id": j.get("judgment_id") if j else None,
        "judge_id": j.get("judge_id") if j else None,
        "source": "judged",
        "rationale": None,
        "provenance": {
            "rule": rule,
            "direct": ev.direct,
            "protocol": j.get("protocol") if j else None,
            "scale": j.get("scale") if j else None,
            "chosen_workflow": chosen.get("workflow"),
            "rejected_workflow": rejected.get("workflow"),
        },
    }
