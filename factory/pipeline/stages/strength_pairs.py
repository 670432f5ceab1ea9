"""Pairs cut by Bradley-Terry strength gap (`judging.select: listwise` or `bradley_terry`).

The judge stage leaves every judgment row of such a prompt with `strengths` (strongest first, see
`factory.workflows.ranking`). The pair rule says which two candidates may form a pair: `paper` the
strongest against each other one, `best_vs_worst` the strongest against the weakest, `all_pairs`
any two. Of those, a pair needs a log-strength gap of at least `ranking.min_gap`, and the widest
gaps are kept, at most `ranking.max_pairs` per prompt.

Evidence: under `bradley_terry` every two candidates were compared head to head, so the pair keeps
that judgment (its votes, flip and score margin), and a head-to-head loss or tie vetoes the pair as
in a round robin. Under `listwise` the votes are the listwise calls' relative order of the two (`A`
when chosen was ranked above rejected), `flipped` says the calls disagreed (the order shown changed
the verdict), and the margin is the strength gap (`provenance.margin_unit`). Either way the
provenance carries the strengths table and both candidates' strengths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import cast

from factory._util.json_columns import load_json
from factory.config import PairSettings, RankingSettings
from factory.pipeline.stages.pairs import _Evidence, _evidence, _pair_row, is_inconsistent
from factory.records import Candidate, Judgment, Pair, Strength
from judges.protocols import injection_markers


def strengths_of(judgments: Sequence[Judgment]) -> list[Strength] | None:
    """The prompt's strengths table (strongest first), or None when it was not judged N-way."""
    for j in judgments:
        table = load_json(j.get("strengths"))
        if isinstance(table, list) and table:
            return cast(list[Strength], table)  # as `factory.workflows.ranking.strengths_table` wrote it
    return None


def _eligible(rule: str, ids: list[str]) -> list[tuple[str, str]]:
    if rule == "paper":
        return [(ids[0], other) for other in ids[1:]]
    if rule == "best_vs_worst":
        return [(ids[0], ids[-1])] if len(ids) > 1 else []
    return [(hi, lo) for k, hi in enumerate(ids) for lo in ids[k + 1 :]]


def _listwise_votes(judgments: Sequence[Judgment], chosen: str, rejected: str) -> list[str]:
    votes = []
    for j in judgments:
        ranked = load_json(j.get("ranking"))
        if isinstance(ranked, list) and chosen in ranked and rejected in ranked:
            votes.append("A" if ranked.index(chosen) < ranked.index(rejected) else "B")
    return votes


def strength_pairs(
    prompt_id: str,
    turns: Sequence[str],
    candidates: Sequence[Candidate],
    judgments: Sequence[Judgment],
    table: list[Strength],
    settings: PairSettings,
    ranking: RankingSettings,
) -> tuple[list[Pair], str | None]:
    """The pairs of one N-way-judged prompt, and when there are none, the reason why."""
    by_id = {c["candidate_id"]: c for c in candidates}
    strength = {s["candidate_id"]: float(s["strength"]) for s in table if s["candidate_id"] in by_id}
    ids = [s["candidate_id"] for s in table if s["candidate_id"] in by_id]
    listwise = any(j.get("kind") == "listwise" for j in judgments)
    dropped: Counter[str] = Counter()
    kept: list[tuple[float, Pair]] = []
    for hi, lo in _eligible(settings.rule, ids):
        chosen, rejected = by_id[hi], by_id[lo]
        gap = strength[hi] - strength[lo]
        if chosen["content_hash"] == rejected["content_hash"]:
            continue
        if gap < ranking.min_gap or gap <= 0:
            dropped["below_min_gap"] += 1
            continue
        if not settings.keep_injection_flagged and injection_markers(chosen["text"]):
            dropped["chosen_injection_flagged"] += 1
            continue
        if listwise:
            votes = _listwise_votes(judgments, hi, lo)
            row = _pair_row(
                prompt_id, turns, chosen, rejected, _Evidence(None, "chosen", gap, False), gap, settings.rule
            )
            row["votes"], row["flipped"], row["judge_id"] = (
                votes,
                len(set(votes)) > 1,
                judgments[0].get("judge_id"),
            )
            row["provenance"].update(protocol="listwise", margin_unit="bt_log_strength")
        else:
            ev = _evidence(judgments, hi, lo)
            if ev.relation is None:
                dropped["unscored"] += 1
                continue
            if ev.relation == "rejected":
                dropped["contradicted"] += 1
                continue
            if ev.judgment is not None and is_inconsistent(ev.judgment) and not settings.keep_inconsistent:
                dropped["inconsistent"] += 1
                continue
            if ev.relation == "tie" and not settings.keep_ties:
                dropped["tie"] += 1
                continue
            row = _pair_row(prompt_id, turns, chosen, rejected, ev, ev.margin, settings.rule)
        row["provenance"].update(
            select="listwise" if listwise else "bradley_terry",
            strengths=table,
            chosen_strength=strength[hi],
            rejected_strength=strength[lo],
            strength_gap=round(gap, 6),
            comparisons=sum(1 for j in judgments if j.get("verdict") is not None or j.get("ranking")),
        )
        kept.append((gap, row))
    kept.sort(key=lambda t: -t[0])
    if len(kept) > ranking.max_pairs:
        dropped["over_max_pairs"] += len(kept) - ranking.max_pairs
    pairs = [row for _, row in kept[: ranking.max_pairs]]
    if pairs:
        return pairs, None
    detail = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())) or "one distinct response"
    return [], f"no_preference: {detail}"
