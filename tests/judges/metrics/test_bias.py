"""Bias measures on scripted judges whose bias is known by construction."""

from __future__ import annotations

import pytest

from judges.metrics.bias import length_bias, position_bias, self_preference


def test_a_judge_that_always_picks_the_first_answer_is_fully_position_biased() -> None:
    # Mapped back to the item's orientation: "first shown" is A in the AB run and B in the BA run.
    result = position_bias(ab=["A"] * 8, ba=["B"] * 8)
    assert result["inconsistent_rate"] == 1.0
    assert result["flip_rate"] == 1.0
    assert result["first_position_rate"] == 1.0
    assert result["n"] == 8 and result["n_decisive"] == 16


def test_a_consistent_judge_shows_no_position_preference() -> None:
    verdicts = ["A", "B", "B", "A", "B", "tie"]
    result = position_bias(ab=verdicts, ba=verdicts)
    assert result["inconsistent_rate"] == 0.0
    assert result["first_position_rate"] == 0.5
    assert result["n_decisive"] == 10  # the tie is no pick in either order


def test_position_bias_counts_partial_inconsistency_and_skips_unscored() -> None:
    ab = ["A", "A", "tie", "B", None]
    ba = ["A", "B", "A", "B", "A"]
    result = position_bias(ab=ab, ba=ba)
    # Scored both ways: items 0-3; (A,B) and (tie,A) differ, only (A,B) is an outright flip.
    assert (result["n"], result["n_unscored"]) == (4, 1)
    assert result["inconsistent_rate"] == pytest.approx(2 / 4)
    assert result["flip_rate"] == pytest.approx(1 / 4)
    # Decisive picks: AB run A, A, B (first, first, second); BA run A, B, A, B, A (B counts as first).
    assert result["first_position_rate"] == pytest.approx((2 + 2) / 8)


def test_length_bias_of_a_judge_that_always_prefers_the_longer_answer() -> None:
    a = ["x" * 100, "x" * 10, "x" * 50, "x" * 200, "x" * 60]
    b = ["x" * 10, "x" * 100, "x" * 60, "x" * 10, "x" * 10]
    verdicts = ["A", "B", "A", "tie", None]
    result = length_bias(a, b, verdicts)
    # Item 2 differs by only 10 characters and is left out; item 3 is a tie, item 4 unscored.
    assert result == {"longer_preferred_rate": 1.0, "n": 2, "n_ties": 1, "n_unscored": 1, "min_diff": 30}
    assert length_bias(a, b, ["B", "A", "A", "B", "B"])["longer_preferred_rate"] == 0.0


def test_self_preference_compares_own_and_other_win_rates_on_mixed_items_only() -> None:
    model_a = ["gpt", "llama", "gpt", "llama", "gpt", "llama"]
    model_b = ["llama", "gpt", "gemma", "gemma", "gpt", "gpt"]
    verdicts = ["A", "B", "B", "A", "A", "tie"]
    human = ["B", "B", "B", "A", "A", "A"]
    result = self_preference(model_a, model_b, verdicts, judge_model="gpt", human=human)
    # Mixed items: 0 (gpt is A), 1 (gpt is B), 2 (gpt is A), 5 (gpt is B);
    # item 3 has no gpt answer, item 4 is gpt vs gpt.
    # Judge: own wins on 0 and 1, other wins on 2, tie on 5. Humans: own wins only on item 1.
    assert result["n"] == 4
    assert result["own_win_rate"] == pytest.approx(2 / 4)
    assert result["other_win_rate"] == pytest.approx(1 / 4)
    assert result["human_own_win_rate"] == pytest.approx(1 / 4)


def test_inputs_that_do_not_pair_up_are_refused() -> None:
    with pytest.raises(ValueError, match="pair up"):
        position_bias(["A"], ["A", "B"])
    with pytest.raises(ValueError, match="pair up"):
        length_bias(["a"], ["b"], ["A", "B"])
