"""Single-agent generation, duplicate detection and per-workflow usage, against the fake server."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from factory.config import FeedbackLoopWorkflow, SingleAgentWorkflow, parse_config
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway, ModelSpec
from factory.pipeline import run_build
from factory.testing import FakeLLMServer, Fault, Rule
from factory.workflows.candidates import content_hash
from factory.workflows.generation import generate_candidates


def gateway_for(server: FakeLLMServer, *models: str) -> Gateway:
    return Gateway({m: ModelSpec(model=f"openai/{m}", api_base=server.base_url, seed=100) for m in models})


async def test_every_generator_answers_the_last_turn_after_one_shared_first_answer() -> None:
    with FakeLLMServer() as server:
        gateway = gateway_for(server, "gen-a", "gen-b")
        wf = SingleAgentWorkflow(generators=("gen-a", "gen-b"), samples=2)
        prompt = Prompt("mt1", ("Write a haiku about rain.", "Now translate it into French."), "mt_bench")
        rows = await generate_candidates(gateway, (wf,), prompt)
        requests = server.requests
        usage = gateway.usage.snapshot()

    assert len(rows) == 4 and len(requests) == 5  # the first turn once, then 2 generators x 2 samples
    assert [(r["role"], r["sample"]) for r in rows] == [
        ("gen-a", 0),
        ("gen-a", 1),
        ("gen-b", 2),
        ("gen-b", 3),
    ]
    assert len({r["candidate_id"] for r in rows}) == 4
    shared = rows[0]["answers"][0]
    for row in rows:
        assert row["answers"] == [shared, row["text"]]
        assert row["history"] == [
            {"role": "user", "content": prompt.turns[0]},
            {"role": "assistant", "content": shared},
            {"role": "user", "content": prompt.turns[1]},
            {"role": "assistant", "content": row["text"]},
        ]
    # The first turn is answered by the first generator; every second-turn request carries that answer.
    first = [r for r in requests if len(r["messages"]) == 1]
    assert [(r["model"], r["seed"]) for r in first] == [("gen-a", 100)]
    second = [r for r in requests if len(r["messages"]) == 3]
    assert len(second) == 4 and all(r["messages"][1]["content"] == shared for r in second)
    # Samples of one generator are distinct requests (the seed carries the sample index).
    assert sorted((r["model"], r["seed"]) for r in second) == [
        ("gen-a", 100),
        ("gen-a", 101),
        ("gen-b", 102),
        ("gen-b", 103),
    ]
    assert usage["by_tag"]["earlier_turns"]["calls"] == 1 and usage["by_tag"]["single"]["calls"] == 4
    assert len({row["content_hash"] for row in rows}) == 4
    assert all(row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 for row in rows)


async def test_candidates_record_whether_their_answer_was_cut_at_max_tokens() -> None:
    with FakeLLMServer(faults=Fault(rate_truncated=1.0)) as server:
        rows = await generate_candidates(
            gateway_for(server, "gen-a"),
            (SingleAgentWorkflow(generators=("gen-a",)),),
            Prompt("p1", ("Explain tides.",), "test"),
        )
    assert [r["finish_reason"] for r in rows] == ["length"]
    with FakeLLMServer() as server:
        rows = await generate_candidates(
            gateway_for(server, "gen-a"),
            (SingleAgentWorkflow(generators=("gen-a",)),),
            Prompt("p1", ("Explain tides.",), "test"),
        )
    assert [r["finish_reason"] for r in rows] == ["stop"]


async def test_duplicates_across_workflows_name_the_first_candidate() -> None:
    # Every generator call answers the same text, up to whitespace; reviews get the default reply.
    rules = [Rule(model="gen", reply=["Same  answer.", "Same answer.\n"])]
    with FakeLLMServer(rules=rules) as server:
        gateway = gateway_for(server, "gen", "rev")
        workflows = (
            SingleAgentWorkflow(generators=("gen",), samples=2),
            FeedbackLoopWorkflow(generator="gen", reviewers=("rev",), n_responses=2),
        )
        rows = await generate_candidates(gateway, workflows, Prompt("p", ("Say something.",), "t"))
        usage = gateway.usage.snapshot()

    assert [r["workflow"] for r in rows] == ["single", "single", "feedback_loop", "feedback_loop"]
    assert len({r["content_hash"] for r in rows}) == 1 and rows[0]["content_hash"] == content_hash(
        "Same answer."
    )
    first = rows[0]["candidate_id"]
    assert [r["duplicate_of"] for r in rows] == [None, first, first, first]
    # Calls are reported per workflow: 2 single-agent answers; loop = 2 answers + 1 review.
    by_tag = usage["by_tag"]
    assert by_tag["single"]["calls"] + by_tag["single"]["cache_hits"] == 2
    assert by_tag["feedback_loop"]["calls"] + by_tag["feedback_loop"]["cache_hits"] == 3


def test_build_reports_calls_per_workflow_in_the_manifest(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"Question number {i}?"}) + "\n" for i in range(5))
    )
    with FakeLLMServer() as server:
        spec = {"model": "openai/fake", "api_base": server.base_url}
        config = parse_config(
            {
                "run": {
                    "name": "gen-test",
                    "output_dir": str(tmp_path / "out"),
                    "shard_size": 2,
                    "concurrency": 4,
                },
                "models": {
                    "writer": {**spec, "model": "openai/writer"},
                    "reviser": {**spec, "model": "openai/reviser"},
                    "reviewer": {**spec, "model": "openai/reviewer"},
                    "judge": spec,
                    "rationale_writer": spec,
                },
                "prompts": {"path": str(prompts)},
                "generation": {
                    "workflows": [
                        {"kind": "single", "name": "baseline", "generators": ["writer"], "samples": 2},
                        {
                            "kind": "feedback_loop",
                            "name": "loop",
                            "generator": "reviser",
                            "reviewers": ["reviewer"],
                            "n_responses": 3,
                        },
                    ]
                },
                "rationales": {"enabled": False},
                "variants": {"enabled": False},
                "gate": {"enabled": False},
            }
        )
        result = run_build(config)
    by_tag = result.manifest["llm"]["by_tag"]
    assert by_tag["baseline"]["calls"] == 5 * 2
    assert by_tag["loop"]["calls"] == 5 * (3 + 2)  # 3 answers and 2 reviews per prompt
    candidates = pl.read_parquet(result.run_dir / "candidates.parquet")
    assert candidates.height == 5 * (2 + 3)
    loop = candidates.filter(pl.col("workflow") == "loop").sort(["prompt_id", "step"])
    assert loop["step"].to_list() == [0, 1, 2] * 5
    assert {"reviewer_scores", "feedback", "content_hash", "duplicate_of", "history"} <= set(
        candidates.columns
    )
