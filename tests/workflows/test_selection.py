"""Best-of-N knockout and workflow win rates, judged by the fake server over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway, ModelSpec
from factory.testing import FakeLLMServer, Rule
from factory.workflows.candidates import content_hash
from factory.workflows.tournaments import compare_workflows, knockout, win_rate, workflow_outputs
from judges.engine.settings import JudgeSetting

SETTING = JudgeSetting(models=("judge",), protocol="combined", scale=10, order="fixed")


def scores(a: int, b: int) -> str:
    return f"### Evaluation Evidence: compared.\n### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"


def cand(cid: str, text: str) -> dict[str, Any]:
    return {"candidate_id": cid, "text": text, "content_hash": content_hash(text)}


def test_win_rate_is_strict_wins_over_n_and_ties_are_not_wins() -> None:
    result = win_rate(["A"] * 359 + ["tie"] * 41 + ["B"] * 100)
    assert result["wins"] == 359 and result["ties"] == 41 and result["losses"] == 100 and result["n"] == 500
    assert result["win_rate"] == pytest.approx(0.718)
    # Counting ties as half wins would give 0.759: ties must not count.
    assert result["tie_rate"] == pytest.approx(0.082)
    with_unscored = win_rate(["A", "A", "tie", "B", None])
    assert (with_unscored["n"], with_unscored["unscored"], with_unscored["win_rate"]) == (4, 1, 0.5)
    assert win_rate([])["win_rate"] is None
    with pytest.raises(ValueError, match="unknown verdict"):
        win_rate(["a"])


async def test_knockout_is_r1_vs_r2_then_winner_vs_r3() -> None:
    # r2 beats r1; then r2 and r3 tie, so r2 stays champion.
    with FakeLLMServer(
        rules=[Rule("### Score Assistant A", role="any", reply=[scores(3, 8), scores(7, 7)])]
    ) as server:
        gateway = Gateway({"judge": ModelSpec(model="openai/judge", api_base=server.base_url)})
        candidates = [cand("r1", "first draft"), cand("r2", "second draft"), cand("r3", "third draft")]
        result = await knockout(gateway, SETTING, Prompt("p", ("Question?",), "t"), candidates, tag="select")
        requests = server.requests
        usage = gateway.usage.snapshot()
    assert result.best is not None and result.best["candidate_id"] == "r2"
    assert [(j["candidate_a"], j["candidate_b"], j["verdict"]) for j in result.judgments] == [
        ("r1", "r2", "B"),
        ("r2", "r3", "tie"),
    ]
    assert {j["best_id"] for j in result.judgments} == {"r2"}
    # The second comparison shows the winner as Assistant A and r3 as Assistant B.
    second = "\n".join(m["content"] for m in requests[1]["messages"])
    assert second.index("second draft") < second.index("third draft") and "first draft" not in second
    assert usage["by_tag"]["select"]["calls"] == 2


async def test_knockout_skips_repeated_texts_and_handles_one_candidate() -> None:
    with FakeLLMServer(rules=[Rule("### Score Assistant A", role="any", reply=scores(9, 2))]) as server:
        gateway = Gateway({"judge": ModelSpec(model="openai/judge", api_base=server.base_url)})
        prompt = Prompt("p", ("Question?",), "t")
        result = await knockout(
            gateway,
            SETTING,
            prompt,
            [cand("r1", "same text"), cand("r2", "other"), cand("r3", "same  text ")],
        )
        assert len(result.judgments) == 1 and result.best is not None and result.best["candidate_id"] == "r1"
        alone = await knockout(gateway, SETTING, prompt, [cand("r1", "only")])
        assert alone.judgments == [] and alone.best is not None and alone.best["candidate_id"] == "r1"
        assert server.stats.calls == 1


async def test_compare_workflows_reports_wins_ties_losses_missing_and_order() -> None:
    def judge(body: dict[str, Any]) -> str:
        text = body["messages"][-1]["content"]
        return scores(9, 2) if "WIN" in text else scores(5, 5) if "TIE" in text else scores(2, 9)

    prompts = [Prompt(f"p{i}", (f"Question {i}?",), "t") for i in range(7)]
    outputs_a = {
        "p0": "WIN 0",
        "p1": "WIN 1",
        "p2": "WIN 2",
        "p3": "TIE 3",
        "p4": "LOSE 4",
        "p5": "WIN 5",
        "p6": "WIN 6",
    }
    outputs_b = {f"p{i}": f"baseline {i}" for i in range(6)}  # p6 has no baseline output
    with FakeLLMServer(rules=[Rule("### Score Assistant A", role="any", reply=judge)]) as server:
        gateway = Gateway({"judge": ModelSpec(model="openai/judge", api_base=server.base_url)})
        result = await compare_workflows(
            gateway, SETTING, iter(prompts), outputs_a, outputs_b, names=("loop", "single"), concurrency=3
        )
        assert server.stats.calls == 6
    assert (result["wins"], result["ties"], result["losses"], result["n"]) == (4, 1, 1, 6)
    assert result["win_rate"] == pytest.approx(4 / 6)
    assert result["missing"] == 1 and result["order"] == "fixed" and result["flipped"] == 0
    assert result["judge"] == SETTING.setting_id and len(result["judgments"]) == 6


def test_workflow_outputs_picks_the_final_or_the_first_response() -> None:
    rows = [{"workflow": "loop", "prompt_id": "p", "sample": 0, "step": s, "text": f"v{s}"} for s in range(3)]
    rows += [
        {"workflow": "single", "prompt_id": "p", "sample": k, "step": 0, "text": f"s{k}"} for k in (1, 0)
    ]
    assert workflow_outputs(rows, "loop") == {"p": "v2"}
    assert workflow_outputs(rows, "loop", pick="first") == {"p": "v0"}
    assert workflow_outputs(rows, "single") == {"p": "s0"}
