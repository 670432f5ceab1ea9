"""The generator-reviewer feedback loop against the fake server over real HTTP on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from factory.config import FeedbackLoopWorkflow
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway, ModelSpec
from factory.testing import FakeLLMServer, Rule
from factory.workflows.feedback_loop import parse_review, run_feedback_loop
from factory.workflows.generation import generate_candidates

QUESTION = "Explain why the sky is blue."


def review(score: str, feedback: str) -> str:
    return f"### Evaluation: It is thin.\n### Overall Score: {score}\n### Feedback: {feedback}"


def gateway_for(server: FakeLLMServer, *models: str) -> Gateway:
    return Gateway(
        {m: ModelSpec(model=f"openai/{m}", api_base=server.base_url, temperature=0.0) for m in models}
    )


def is_review(request: dict[str, Any]) -> bool:
    return "### Overall Score" in request["messages"][-1]["content"]


def contents(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request["messages"]]


async def test_loop_stops_early_when_the_score_reaches_the_threshold_and_histories_grow() -> None:
    rules = [
        Rule(
            "### Overall Score",
            model="reviewer",
            reply=[review("4/10", "Mention Rayleigh scattering."), review("9/10", "Good now.")],
        ),
        Rule(model="generator", reply=["Because of air.", "Rayleigh scattering of sunlight by air."]),
    ]
    with FakeLLMServer(rules=rules) as server:
        gateway = gateway_for(server, "generator", "reviewer")
        wf = FeedbackLoopWorkflow(n_responses=3, stop_score=8)
        rows = await run_feedback_loop(gateway, wf, Prompt("p1", (QUESTION,), "test"))
        requests = server.requests

    # answer, review (4), revision, review (9) -> stop: the third response is never asked for.
    assert [r["model"] for r in requests] == ["generator", "reviewer", "generator", "reviewer"]
    assert [row["step"] for row in rows] == [0, 1]
    assert [row["text"] for row in rows] == ["Because of air.", "Rayleigh scattering of sunlight by air."]
    assert [row["reviewer_scores"] for row in rows] == [[4.0], [9.0]]
    assert rows[0]["feedback"] == "Mention Rayleigh scattering."
    # The generator's revision request carries its prompt, its first answer and the feedback.
    revision = contents(requests[2])
    assert revision[:2] == [("user", QUESTION), ("assistant", "Because of air.")]
    assert revision[2][0] == "user" and "Mention Rayleigh scattering." in revision[2][1]
    assert "Update your response based on the feedback" in revision[2][1]
    # The reviewer's second request carries its first review of the first version.
    second_review = contents(requests[3])
    assert [role for role, _ in second_review] == ["user", "assistant", "user"]
    assert "Because of air." in second_review[0][1] and QUESTION in second_review[0][1]
    assert second_review[1][1] == review("4/10", "Mention Rayleigh scattering.")
    assert "Rayleigh scattering of sunlight by air." in second_review[2][1]
    assert rows[1]["history"] == requests[2]["messages"] + [
        {"role": "assistant", "content": "Rayleigh scattering of sunlight by air."}
    ]


async def test_without_a_threshold_n_responses_take_n_answers_and_n_minus_1_reviews() -> None:
    with FakeLLMServer(rules=[Rule("### Overall Score", reply=review("10/10", "Nothing to add."))]) as server:
        gateway = gateway_for(server, "generator", "reviewer")
        rows = await run_feedback_loop(
            gateway, FeedbackLoopWorkflow(n_responses=3), Prompt("p", (QUESTION,), "t")
        )
        models = [r["model"] for r in server.requests]
        assert models == ["generator", "reviewer", "generator", "reviewer", "generator"]
        assert [row["reviewer_scores"] for row in rows] == [[10.0], [10.0], []]  # last one is not reviewed
        # Each generator call sees every earlier answer and feedback: 1, 3, then 5 messages.
        assert [len(r["messages"]) for r in server.requests if r["model"] == "generator"] == [1, 3, 5]

        server.reset()
        wf = FeedbackLoopWorkflow(name="scored", n_responses=3, review_last=True)
        # Another question: the gateway's request cache would answer a repeat of the first run.
        rows = await run_feedback_loop(gateway, wf, Prompt("q", ("Why is grass green?",), "t"))
        assert [r["model"] for r in server.requests].count("reviewer") == 3
        assert rows[-1]["reviewer_scores"] == [10.0]


async def test_two_reviewers_review_concurrently_and_their_feedback_is_combined() -> None:
    rules = [
        Rule(
            "### Overall Score",
            model="rev-a",
            reply=[review("6/10", "Add an example."), review("8/10", "Fine.")],
        ),
        Rule(
            "### Overall Score",
            model="rev-b",
            reply=[review("8/10", "Be shorter."), review("9/10", "Great.")],
        ),
    ]
    with FakeLLMServer(rules=rules, latency_s=0.05) as server:
        gateway = gateway_for(server, "generator", "rev-a", "rev-b")
        wf = FeedbackLoopWorkflow(reviewers=("rev-a", "rev-b"), n_responses=3, stop_score=8.5)
        rows = await run_feedback_loop(gateway, wf, Prompt("p", (QUESTION,), "t"))
        requests, peak = server.requests, server.stats.peak_in_flight

    # Round 1: mean(6, 8) = 7 < 8.5 -> revise; round 2: mean(8, 9) = 8.5 -> stop.
    assert sorted(r["model"] for r in requests) == ["generator"] * 2 + ["rev-a"] * 2 + ["rev-b"] * 2
    assert peak == 2  # both reviewers were asked at once
    assert [row["review_score"] for row in rows] == [7.0, 8.5]
    assert rows[0]["reviewer_scores"] == [6.0, 8.0]
    assert "Add an example." in rows[0]["feedback"] and "Be shorter." in rows[0]["feedback"]
    revision = [r for r in requests if r["model"] == "generator"][1]["messages"][-1]["content"]
    assert "Add an example." in revision and "Be shorter." in revision
    # Each reviewer's history holds its own earlier review only.
    second_a = [r for r in requests if r["model"] == "rev-a"][1]["messages"]
    assert second_a[1]["content"] == review("6/10", "Add an example.")
    assert all("Be shorter." not in m["content"] for m in second_a)


async def test_an_unparseable_review_scores_none_and_its_text_is_the_feedback() -> None:
    rules = [Rule("### Overall Score", reply="Looks fine, but cite a source.")]
    with FakeLLMServer(rules=rules) as server:
        gateway = gateway_for(server, "generator", "reviewer")
        wf = FeedbackLoopWorkflow(n_responses=2, stop_score=1)
        rows = await run_feedback_loop(gateway, wf, Prompt("p", (QUESTION,), "t"))
        generator_requests = [r for r in server.requests if r["model"] == "generator"]
    assert len(rows) == 2  # a None score never triggers the early stop
    assert rows[0]["reviewer_scores"] == [None] and rows[0]["review_score"] is None
    assert "cite a source" in generator_requests[1]["messages"][-1]["content"]


async def test_same_model_reviewer_and_multi_turn_prompt() -> None:
    with FakeLLMServer() as server:  # protocol-aware default replies
        gateway = gateway_for(server, "generator")
        wf = FeedbackLoopWorkflow(reviewers=("generator",), n_responses=2)
        prompt = Prompt("mt", ("Name a prime number.", "Now name an even one."), "t")
        rows = await generate_candidates(gateway, (wf,), prompt)
        requests = server.requests
    # Turn 1 answered once (the shared history), then the loop on turn 2: answer, review, revision.
    assert len(requests) == 4 and sum(is_review(r) for r in requests) == 1
    reviewer_prompt = next(r for r in requests if is_review(r))["messages"][0]["content"]
    assert "Name a prime number." in reviewer_prompt and "Now name an even one." in reviewer_prompt
    assert len(rows) == 2 and all(len(row["answers"]) == 2 for row in rows)
    assert rows[0]["answers"][0] == rows[1]["answers"][0]  # the earlier turn is not revised
    assert rows[0]["reviewer_scores"][0] is not None  # the default reviewer reply parses


def test_parse_review_reads_the_three_sections() -> None:
    parsed = parse_review(
        "### Evaluation: Vague.\n### Overall Score: 6.5/10\n### Feedback: Add numbers.\nAnd units."
    )
    assert (parsed.score, parsed.evaluation, parsed.feedback) == (6.5, "Vague.", "Add numbers.\nAnd units.")
    assert (
        parse_review("### Overall Score: 12/10\n### Feedback: x").score is None
    )  # out of range: never guessed
