"""Position handling: fixed, seeded random and both orders, verdicts mapped back to the item."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from factory.llm import Gateway, GatewaySettings, ModelSpec
from factory.testing import FakeLLMServer, Rule
from judges.engine.order import combine_orders, seeded_flip, to_item, views
from judges.engine.outcome import Outcome
from judges.engine.pairwise import judge_pair
from judges.engine.settings import JudgeSetting

MARK = "GOLDEN"
_BLOCK = re.compile(
    r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.DOTALL
)


def shown_blocks(body: dict[str, Any]) -> dict[str, str]:
    """The answers as shown to the judge: {"A": text, "B": text}."""
    user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    return dict(_BLOCK.findall(user))


def prefers_marker(body: dict[str, Any]) -> str:
    """A judge that always prefers the answer containing MARK, wherever it is shown."""
    winner = "A" if MARK in shown_blocks(body)["A"] else "B"
    if "### Answer:" in body["messages"][0]["content"]:
        return f"### Evaluation Evidence:\nThe marked one.\n### Answer: {winner}"
    a, b = (9, 4) if winner == "A" else (4, 9)
    return f"### Evaluation Evidence:\nThe marked one.\n### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"


FIRST_SHOWN = "### Evaluation Evidence:\nThe first.\n### Score Assistant A: 8/10\n### Score Assistant B: 5/10"


def gateway(server: FakeLLMServer) -> Gateway:
    return Gateway(
        {"judge": ModelSpec(model="openai/judge", api_base=server.base_url)}, GatewaySettings(max_retries=0)
    )


def item(i: int) -> tuple[str, str, str, str]:
    """Item i: the marked (better) answer is answer_a for even i, answer_b for odd i."""
    plain, marked = f"Answer {i}, plain.", f"Answer {i}, {MARK}."
    return f"item-{i}", f"Question {i}?", *((marked, plain) if i % 2 == 0 else (plain, marked))


def test_seeded_flip_is_stable_seed_dependent_and_balanced() -> None:
    ids = [f"item-{i}" for i in range(400)]
    first = [seeded_flip(7, i) for i in ids]
    assert first == [seeded_flip(7, i) for i in ids]
    assert first != [seeded_flip(8, i) for i in ids]
    assert 150 < sum(first) < 250
    assert views("fixed", 7, "x") == (False,)
    assert views("both", 7, "x") == (False, True)
    assert views("random", 7, "item-3") == (seeded_flip(7, "item-3"),)


def test_to_item_and_combine_orders() -> None:
    shown = Outcome(verdict="A", score_a=8.0, score_b=5.0, models=("m",))
    back = to_item(shown, flipped=True)
    assert (back.verdict, back.score_a, back.score_b, back.order, back.flipped) == ("B", 5.0, 8.0, "BA", True)
    ab = to_item(Outcome(verdict="A", score_a=8.0, score_b=5.0), False)
    ba = to_item(Outcome(verdict="B", score_a=6.0, score_b=7.0), True)  # shown swapped: item A wins too
    agreed = combine_orders("both", [ab, ba])
    assert (agreed.verdict, agreed.flipped, agreed.votes) == ("A", False, ("A", "A"))
    assert (agreed.score_a, agreed.score_b) == (7.5, 5.5)
    one_unscored = combine_orders("both", [ab, Outcome(reason="no_score_marker")])
    assert (one_unscored.verdict, one_unscored.reason) == (None, "no_score_marker")
    stopped = combine_orders(
        "both", [Outcome(reason="no_score_marker"), Outcome(reason="BudgetExceededError: x", stop="budget")]
    )
    assert stopped.reason == "BudgetExceededError: x" and stopped.stop == "budget"


@pytest.mark.parametrize("protocol", ["combined", "direct"])
async def test_both_orders_make_two_calls_and_agreeing_verdicts_stand(protocol: str) -> None:
    with FakeLLMServer(rules=[Rule(reply=prefers_marker)]) as server:
        rows = [
            await judge_pair(gateway(server), JudgeSetting(order="both", protocol=protocol), i, q, a, b)
            for i, q, a, b in map(item, range(4))
        ]
        assert server.stats.calls == 8
        requests = server.requests
    for n, row in enumerate(rows):
        winner = "A" if n % 2 == 0 else "B"
        assert (row["order"], row["flipped"], row["verdict"]) == ("both", False, winner)
        assert json.loads(row["votes"]) == [winner, winner]
    # The second call of each item shows the answers swapped.
    first, second = shown_blocks(requests[0]), shown_blocks(requests[1])
    assert (first["A"], first["B"]) == (second["B"], second["A"])


async def test_both_orders_turn_a_position_biased_judge_into_recorded_ties() -> None:
    with FakeLLMServer(rules=[Rule(reply=FIRST_SHOWN)]) as server:
        rows = [
            await judge_pair(gateway(server), JudgeSetting(order="both"), i, q, a, b)
            for i, q, a, b in map(item, range(3))
        ]
        assert server.stats.calls == 6
    for row in rows:
        assert (row["verdict"], row["flipped"]) == ("tie", True)
        assert json.loads(row["votes"]) == ["A", "B"]  # each order's verdict, in the item's orientation
        assert len(json.loads(row["raw"])) == 2


async def test_random_order_is_seeded_recorded_and_mapped_back_to_the_item() -> None:
    setting = JudgeSetting(order="random", seed=3)
    items = [item(i) for i in range(16)]
    with FakeLLMServer(rules=[Rule(reply=prefers_marker)]) as server:
        rows = [await judge_pair(gateway(server), setting, *it) for it in items]
        requests = server.requests
    assert len(requests) == 16
    flips = [seeded_flip(3, it[0]) for it in items]
    assert 0 < sum(flips) < 16  # both orientations occur with this seed
    for n, (row, flipped, request) in enumerate(zip(rows, flips, requests, strict=True)):
        assert (row["flipped"], row["order"]) == (flipped, "BA" if flipped else "AB")
        # Shown as the model saw it: a flipped item puts answer_a in the B slot.
        assert shown_blocks(request)["B" if flipped else "A"] == items[n][2]
        # Whatever was shown, the verdict names the marked answer in the item's own orientation.
        assert row["verdict"] == ("A" if n % 2 == 0 else "B")
        marked_score, plain_score = (
            (row["score_a"], row["score_b"]) if n % 2 == 0 else (row["score_b"], row["score_a"])
        )
        assert (marked_score, plain_score) == (9.0, 4.0)
    with FakeLLMServer(rules=[Rule(reply=prefers_marker)]) as server:
        again = [await judge_pair(gateway(server), setting, *it) for it in items]
    assert [r["order"] for r in again] == [r["order"] for r in rows]


async def test_random_order_maps_a_position_biased_judge_back() -> None:
    setting = JudgeSetting(order="random", seed=11)
    with FakeLLMServer(rules=[Rule(reply=FIRST_SHOWN)]) as server:
        rows = [await judge_pair(gateway(server), setting, *item(i)) for i in range(12)]
    for row in rows:
        # The judge always prefers the first answer shown, so a flipped item's verdict is B.
        assert row["verdict"] == ("B" if row["flipped"] else "A")
        assert (row["score_a"], row["score_b"]) == ((5.0, 8.0) if row["flipped"] else (8.0, 5.0))


async def test_fixed_order_shows_answer_a_first() -> None:
    with FakeLLMServer(rules=[Rule(reply=FIRST_SHOWN)]) as server:
        row = await judge_pair(gateway(server), JudgeSetting(), *item(1))
        shown = shown_blocks(server.requests[0])
    assert shown["A"] == item(1)[2]
    assert (row["order"], row["flipped"], row["verdict"]) == ("AB", False, "A")
