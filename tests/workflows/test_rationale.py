"""The rationale writer graph against the fake server over real HTTP (factory.workflows.rationale)."""

from __future__ import annotations

import json
from typing import Any

from factory.config import RationaleSettings
from factory.llm import Gateway, GatewaySettings, ModelSpec
from factory.testing import FakeLLMServer, Fault, Rule
from factory.workflows.rationale import write_rationales

WRITE = "Write a short rationale"
CHECK = "You check rationales"
NOTE = "Assistant A names all three fruits; Assistant B stops after one."


def pair(i: int = 1, chosen_id: str = "c1", rejected_id: str = "c2") -> dict[str, Any]:
    return {
        "pair_id": f"pair{i}",
        "prompt_id": "p1",
        "prompt": "Name three fruits.",
        "turns": ["Name three fruits."],
        "chosen": "Apple, pear and plum.",
        "rejected": "Apple.",
        "chosen_id": chosen_id,
        "rejected_id": rejected_id,
        "judgment_id": "j1",
        "source": "judged",
    }


JUDGMENTS = [
    {
        "judgment_id": "j1",
        "prompt_id": "p1",
        "candidate_a": "c1",
        "candidate_b": "c2",
        "verdict": "A",
        "raw": json.dumps(
            [
                f"### Evaluation Evidence: {NOTE}\n### Score Assistant A: 8/10\n"
                + "### Score Assistant B: 3/10"
            ]
        ),
    }
]


def gateway(server: FakeLLMServer, **settings: Any) -> Gateway:
    spec = ModelSpec(model="openai/fake", api_base=server.base_url, api_key_env=None)
    return Gateway(
        {"rationale_writer": spec, "judge": spec}, GatewaySettings(backoff_base_s=0.01, **settings)
    )


def prompts_with(server: FakeLLMServer, marker: str) -> list[str]:
    return [m["content"] for r in server.requests for m in r["messages"] if marker in m["content"]]


async def test_writes_a_rationale_grounded_in_the_judges_notes() -> None:
    with FakeLLMServer(
        rules=[Rule(WRITE, reply="It lists all three fruits the question asks for.")]
    ) as server:
        rows, failures = await write_rationales(
            gateway(server), [pair(1), pair(2, "c1", "c3")], JUDGMENTS, RationaleSettings(), verifier=None
        )
        writer_prompts = prompts_with(server, WRITE)
    assert failures == []
    assert [r["rationale"] for r in rows] == ["It lists all three fruits the question asks for."] * 2
    assert {r["rationale_status"] for r in rows} == {"unverified"}
    assert rows[0]["pair_id"] == "pair1" and rows[0]["chosen"] == "Apple, pear and plum."
    # The two pairs are written concurrently: their requests may reach the server in either order.
    direct = [p for p in writer_prompts if "Assistant B is the REJECTED answer" in p]
    other = [p for p in writer_prompts if "Assistant B is another answer" in p]
    # The judge's raw note reaches the writer, with its A/B names mapped to chosen and rejected.
    assert len(direct) == 1 and NOTE in direct[0]
    assert "Assistant A is the CHOSEN answer, Assistant B is the REJECTED answer" in direct[0]
    # pair2's rejected answer (c3) never met the judge: the note names it as another answer.
    assert len(other) == 1


async def test_verifier_rejects_then_the_rewrite_is_accepted() -> None:
    rules = [
        Rule(WRITE, reply=["Apple alone is shorter, so it is better.", "It names all three fruits."]),
        Rule(
            CHECK,
            reply=[
                '{"supports_chosen": false, "reason": "it argues for the rejected answer"}',
                '{"supports_chosen": true, "reason": "it argues for the chosen answer"}',
            ],
        ),
    ]
    with FakeLLMServer(rules=rules) as server:
        rows, failures = await write_rationales(
            gateway(server),
            [pair()],
            JUDGMENTS,
            RationaleSettings(verify=True, max_rewrites=1),
            verifier="judge",
        )
        writer_prompts = prompts_with(server, WRITE)
    assert failures == []
    assert rows[0]["rationale"] == "It names all three fruits."
    assert rows[0]["rationale_status"] == "verified" and rows[0]["rationale_attempts"] == 2
    # The rewrite request carries the verifier's reason and the refused rationale.
    assert "it argues for the rejected answer" in writer_prompts[1]
    assert "Apple alone is shorter" in writer_prompts[1]


async def test_rationale_rejected_twice_drops_the_pair_with_the_reason() -> None:
    rules = [
        Rule(WRITE, reply=["Shorter is better.", "The short one wins."]),
        Rule(CHECK, reply='{"supports_chosen": false, "reason": "it favours the rejected answer"}'),
    ]
    with FakeLLMServer(rules=rules) as server:
        rows, failures = await write_rationales(
            gateway(server),
            [pair()],
            JUDGMENTS,
            RationaleSettings(verify=True, max_rewrites=1),
            verifier="judge",
        )
    assert rows == []
    assert len(failures) == 1
    failure = failures[0]
    assert failure["item_id"] == "pair1" and failure["stage"] == "rationales"
    assert failure["reason"] == "rationale_rejected: it favours the rejected answer"
    attempts = json.loads(failure["raw"])
    assert [a["rationale"] for a in attempts] == ["Shorter is better.", "The short one wins."]


async def test_empty_rationale_is_asked_again_even_without_a_verifier() -> None:
    # An empty reply is a provider error: the gateway asks again before the writer ever sees it.
    with FakeLLMServer(rules=[Rule(WRITE, reply=["  ", "Complete answer."])]) as server:
        rows, failures = await write_rationales(
            gateway(server), [pair()], JUDGMENTS, RationaleSettings(max_rewrites=1), verifier=None
        )
        assert server.stats.calls == 2
    assert (
        failures == [] and rows[0]["rationale"] == "Complete answer." and rows[0]["rationale_attempts"] == 1
    )


async def test_a_failed_model_call_is_a_failure_row_not_a_crash() -> None:
    with FakeLLMServer(faults=Fault(rate_500=1.0)) as server:
        rows, failures = await write_rationales(
            gateway(server, max_retries=0), [pair()], JUDGMENTS, RationaleSettings(), verifier=None
        )
    assert rows == []
    assert failures[0]["stage"] == "rationales" and failures[0]["reason"].startswith("ProviderError")


async def test_disabled_rationales_pass_pairs_through() -> None:
    with FakeLLMServer() as server:
        rows, failures = await write_rationales(
            gateway(server), [pair()], JUDGMENTS, RationaleSettings(enabled=False), verifier=None
        )
        assert server.stats.calls == 0
    assert failures == [] and rows[0]["rationale"] is None and rows[0]["rationale_status"] == "disabled"
