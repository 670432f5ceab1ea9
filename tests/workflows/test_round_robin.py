"""Round-robin selection (`judging.select: round_robin`): every two candidates judged once, pairs cut
from the win counts; judged by the fake server over real HTTP, and the win-count reducer on
hand-made judgments."""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reliability import build_config, fake_model

from factory._util.json_columns import load_json
from factory.config import PairSettings, parse_config
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway, ModelSpec
from factory.pipeline import run_build
from factory.pipeline.estimate import estimate_build
from factory.pipeline.preflight import load_build_prompts
from factory.pipeline.stages.pairs import select_pairs
from factory.testing import FakeLLMServer, Rule
from factory.workflows.candidates import content_hash
from factory.workflows.tournaments import knockout, round_robin, standings, win_counts
from judges.engine.settings import JudgeSetting

QUALITY = re.compile(r"\[quality (\d+)\]")


def by_quality(body: dict[str, Any]) -> str:
    """A judge that scores each answer by the `[quality N]` tag it carries, in the order shown (A first)."""
    text = "\n".join(str(m.get("content", "")) for m in body["messages"])
    a, b = (int(q) for q in QUALITY.findall(text)[-2:])
    return f"### Evaluation Evidence: compared.\n### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"


def judge_rule(model: str | None = None) -> Rule:
    return Rule("### Score Assistant A", role="any", model=model, reply=by_quality)


def cand(cid: str, quality: int) -> dict[str, Any]:
    text = f"answer {cid} [quality {quality}]"
    return {"candidate_id": cid, "text": text, "content_hash": content_hash(text)}


def row(
    a: str, b: str, verdict: str | None, sa: float | None = None, sb: float | None = None
) -> dict[str, Any]:
    return {"candidate_a": a, "candidate_b": b, "verdict": verdict, "score_a": sa, "score_b": sb}


PROMPT = Prompt("p", ("Which answer is best?",), "t")


# The win-count reducer and the ranking, on hand-made judgments.


def test_win_counts_score_a_win_1_a_tie_half_and_an_unscored_comparison_nothing() -> None:
    rows = [
        row("c1", "c2", "A", 8, 3),
        row("c1", "c3", "tie", 5, 5),
        row("c2", "c3", "B", 2, 6),
        row("c1", "c4", None),
        row("c2", "c4", "B"),
        row("c3", "c4", "tie"),
    ]
    table = win_counts(["c1", "c2", "c3", "c4"], rows)
    assert {c: s.wins for c, s in table.items()} == {"c1": 1.5, "c2": 0.0, "c3": 2.0, "c4": 1.5}
    # Unscored comparisons are not played: c1 and c4 each count two of their three.
    assert {c: s.played for c, s in table.items()} == {"c1": 2, "c2": 3, "c3": 3, "c4": 2}
    # Score margins only from scored protocols' rows: c4's comparisons carry no scores.
    assert {c: s.score_margin for c, s in table.items()} == {"c1": 5.0, "c2": -9.0, "c3": 4.0, "c4": 0.0}


def test_equal_wins_are_broken_by_score_margin_then_by_the_seeded_draw() -> None:
    # A cycle: c1 > c2 > c3 > c1, one win each; c2 won by the most points.
    cycle = [row("c1", "c2", "A", 6, 5), row("c2", "c3", "A", 9, 1), row("c1", "c3", "B", 4, 7)]
    ranked = standings(["c1", "c2", "c3"], cycle, random.Random(0))
    assert [s.candidate_id for s in ranked] == ["c2", "c1", "c3"]  # margins +7, -2, -5
    # Nothing but ties, no scores: the seeded draw decides, the same for the same seed whatever the
    # order the candidates are listed in, and not always the first candidate.
    ties = [row("c1", "c2", "tie"), row("c2", "c3", "tie"), row("c1", "c3", "tie")]
    orders = {
        seed: [s.candidate_id for s in standings(["c1", "c2", "c3"], ties, random.Random(seed))]
        for seed in range(12)
    }
    assert all(
        [s.candidate_id for s in standings(["c3", "c1", "c2"], ties, random.Random(seed))] == order
        for seed, order in orders.items()
    )
    assert len({order[0] for order in orders.values()}) > 1


# The round robin against the fake server.


@pytest.mark.parametrize(
    ("n", "order", "calls"), [(3, "fixed", 3), (4, "fixed", 6), (4, "both", 12), (4, "random", 6)]
)
async def test_round_robin_judges_every_two_candidates_once_under_the_order_policy(
    n: int, order: str, calls: int
) -> None:
    setting = JudgeSetting(models=("judge",), protocol="combined", scale=10, order=order)
    candidates = [cand("c1", 4), cand("c2", 9), cand("c3", 6), cand("c4", 1)][:n]
    with FakeLLMServer(rules=[judge_rule()]) as server:
        gateway = Gateway({"judge": ModelSpec(model="openai/judge", api_base=server.base_url)})
        result = await round_robin(gateway, setting, PROMPT, candidates, rng=random.Random(0), tag="select")
        assert server.stats.calls == calls
    pairs = [(j["candidate_a"], j["candidate_b"]) for j in result.judgments]
    assert pairs == [
        (a["candidate_id"], b["candidate_id"]) for i, a in enumerate(candidates) for b in candidates[i + 1 :]
    ]
    assert result.best is not None and result.best["candidate_id"] == "c2"
    table = json.loads(result.judgments[0]["standings"])
    assert [s["candidate_id"] for s in table] == ["c2", "c3", "c1", "c4"][:n]
    assert [s["wins"] for s in table] == [float(n - 1 - i) for i in range(n)]
    assert {j["best_id"] for j in result.judgments} == {"c2"}


async def test_knockout_still_makes_n_minus_one_comparisons() -> None:
    setting = JudgeSetting(models=("judge",), protocol="combined", scale=10, order="fixed")
    with FakeLLMServer(rules=[judge_rule()]) as server:
        gateway = Gateway({"judge": ModelSpec(model="openai/judge", api_base=server.base_url)})
        result = await knockout(
            gateway, setting, PROMPT, [cand("c1", 4), cand("c2", 9), cand("c3", 6), cand("c4", 1)]
        )
        assert server.stats.calls == 3
    assert result.best is not None and result.best["candidate_id"] == "c2"
    assert "standings" not in result.judgments[0]


async def test_round_robin_records_unscored_comparisons_and_counts_them_for_nothing() -> None:
    # The judge cannot be parsed whenever c3 is shown: its two comparisons are unscored.
    def judge(body: dict[str, Any]) -> str:
        text = "\n".join(str(m.get("content", "")) for m in body["messages"])
        return "no idea" if "answer c3" in text else by_quality(body)

    setting = JudgeSetting(models=("judge",), protocol="combined", scale=10, order="fixed")
    with FakeLLMServer(rules=[Rule("### Score Assistant A", role="any", reply=judge)]) as server:
        gateway = Gateway({"judge": ModelSpec(model="openai/judge", api_base=server.base_url)})
        result = await round_robin(
            gateway, setting, PROMPT, [cand("c1", 4), cand("c2", 2), cand("c3", 9)], rng=random.Random(0)
        )
    assert [j["verdict"] for j in result.judgments] == ["A", None, None]
    table = {s["candidate_id"]: s for s in json.loads(result.judgments[0]["standings"])}
    assert (table["c3"]["wins"], table["c3"]["played"]) == (0.0, 0)
    assert result.best is not None and result.best["candidate_id"] == "c1"
    pairs, _ = select_pairs(
        "p", PROMPT.turns, [cand("c1", 4), cand("c2", 2), cand("c3", 9)], result.judgments, PairSettings()
    )
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("c1", "c2")]  # c1 vs c3 unscored: no pair
    assert pairs[0]["provenance"]["comparisons"] == 1 and pairs[0]["provenance"]["unscored_comparisons"] == 2


# The pair rules on round-robin judgments.


def _round_robin_rows(rows: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    """Hand-made rows as the judge stage writes them for a round robin: `best_id` and `standings`."""
    ranked = standings(ids, rows, random.Random(0))
    table = json.dumps([asdict(s) for s in ranked])
    return [
        {
            **r,
            "judgment_id": f"j{r['candidate_a']}{r['candidate_b']}",
            "best_id": ranked[0].candidate_id,
            "standings": table,
            "votes": json.dumps([r["verdict"]]),
        }
        for r in rows
    ]


def _cands(n: int) -> list[dict[str, Any]]:
    return [
        {"candidate_id": f"c{i}", "content_hash": f"h{i}", "text": f"answer {i}"} for i in range(1, n + 1)
    ]


def test_best_vs_worst_pairs_most_wins_with_fewest_wins_and_records_the_standings() -> None:
    # c3 wins all three; c1 loses all three, although its mean score (7) beats c2's and c4's.
    rows = [
        row("c1", "c2", "B", 7, 8),
        row("c1", "c3", "B", 7, 9),
        row("c1", "c4", "B", 7, 8),
        row("c2", "c3", "B", 2, 9),
        row("c2", "c4", "A", 3, 1),
        row("c3", "c4", "A", 9, 1),
    ]
    js = _round_robin_rows(rows, ["c1", "c2", "c3", "c4"])
    pairs, why = select_pairs("p", ["q"], _cands(4), js, PairSettings(rule="best_vs_worst"))
    assert why is None
    assert [(p["chosen_id"], p["rejected_id"], p["margin"]) for p in pairs] == [("c3", "c1", 2.0)]
    prov = pairs[0]["provenance"]
    assert (prov["select"], prov["chosen_wins"], prov["rejected_wins"], prov["win_margin"]) == (
        "round_robin",
        3.0,
        0.0,
        3.0,
    )
    assert prov["direct"] is True and prov["comparisons"] == 6 and prov["unscored_comparisons"] == 0
    assert [s["candidate_id"] for s in prov["standings"]] == ["c3", "c2", "c4", "c1"]


def test_paper_rule_rejects_every_other_against_the_leader_unless_it_lost_head_to_head() -> None:
    # c1 and c3 have two wins each; c1 leads on score margin (+8 against 0) but lost to c4 head to head.
    rows = [
        row("c1", "c2", "A", 8, 2),
        row("c1", "c3", "A", 7, 3),
        row("c1", "c4", "B", 4, 6),
        row("c2", "c3", "B", 3, 5),
        row("c2", "c4", "tie", 5, 5),
        row("c3", "c4", "A", 6, 4),
    ]
    js = _round_robin_rows(rows, ["c1", "c2", "c3", "c4"])
    pairs, _ = select_pairs("p", ["q"], _cands(4), js, PairSettings())
    assert [(p["chosen_id"], p["rejected_id"], p["margin"]) for p in pairs] == [
        ("c1", "c2", 6.0),
        ("c1", "c3", 4.0),
    ]
    assert all(p["provenance"]["direct"] for p in pairs)


# A whole build: the judge stage follows `judging.select`, and `--estimate` counts its calls.


def _build(tmp: Path, base_url: str, select: str, order: str) -> dict[str, Any]:
    config = build_config(
        base_url,
        tmp,
        prompts=3,
        shard_size=2,
        concurrency=2,
        generation={"workflows": [{"kind": "single", "samples": 4}]},
        judging={"select": select, "setting": {"order": order}},
        variants={"enabled": False},
    )
    # The generator's answers carry their quality by sample (the request seed): 4, 9, 6 and 1. The
    # judge has a model name of its own so that its rule does not answer the rationale writer, whose
    # prompt quotes the judge's score lines.
    config["models"]["generator"] = {**fake_model(base_url), "model": "openai/gen"}
    config["models"]["judge"] = {**fake_model(base_url), "model": "openai/judgemodel"}
    return config


def _generator_rule() -> Rule:
    return Rule(model="gen", reply=lambda body: f"An answer [quality {(4, 9, 6, 1)[body['seed']]}].")


@pytest.mark.parametrize(
    ("select", "order", "per_prompt"),
    [("round_robin", "fixed", 6), ("round_robin", "both", 12), ("knockout", "fixed", 3)],
)
def test_the_build_judges_as_selected_and_the_estimate_counts_its_calls(
    tmp_path: Path, select: str, order: str, per_prompt: int
) -> None:
    with FakeLLMServer(rules=[judge_rule("judgemodel"), _generator_rule()]) as server:
        spec = parse_config(_build(tmp_path, server.base_url, select, order))
        prompts, rejected = load_build_prompts(spec)
        estimate = estimate_build(spec, prompts, len(rejected))
        result = run_build(spec)
        judge_requests = sum(1 for r in server.requests if r.get("model") == "judgemodel")
    assert judge_requests == 3 * per_prompt
    assert sum(line.calls for line in estimate.lines if line.stage == "judge") == judge_requests
    pairs = pl.read_parquet(result.run_dir / "pairs.parquet").to_dicts()
    provenance = [load_json(p["provenance"]) for p in pairs]
    # Paper rule: the quality-9 answer beats each of the other three in every prompt.
    assert len(pairs) == 9 and all("[quality 9]" in p["chosen"] for p in pairs)
    card = (result.run_dir / "dataset" / "README.md").read_text()
    if select == "round_robin":
        assert {p["chosen_wins"] for p in provenance} == {3.0}
        assert sorted(p["rejected_wins"] for p in provenance) == sorted([0.0, 1.0, 2.0] * 3)
        assert "round-robin selection" in card and "n(n-1)/2 comparisons" in card
    else:
        assert "select" not in provenance[0]
        assert "knockout selection" in card
