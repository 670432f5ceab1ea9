"""Agreement metrics against values worked out by hand from their formulas."""

from __future__ import annotations

import math
import warnings

import pytest

from judges.metrics.agreement import (
    accuracy,
    agreement_summary,
    bootstrap_ci,
    confusion,
    fleiss_kappa,
    inter_judge_kappas,
    kappa_3class,
    kappa_no_ties,
    krippendorff_alpha_nominal,
    pairwise_kappas,
)

# 100 items: humans say A 50 times, B 30, tie 20. The scripted judge copies them, except that it
# answers B on the first 10 A items and A on the first 10 tie items.
HUMAN = ["A"] * 50 + ["B"] * 30 + ["tie"] * 20
JUDGE = ["B"] * 10 + ["A"] * 40 + ["B"] * 30 + ["A"] * 10 + ["tie"] * 10


def test_kappa_of_a_scripted_judge_matches_the_hand_computed_value() -> None:
    # Observed agreement: 40 A + 30 B + 10 tie matches out of 100.
    p_o = (40 + 30 + 10) / 100
    # Chance agreement from the marginals: human A .5 B .3 tie .2; judge A .5 B .4 tie .1.
    p_e = 0.5 * 0.5 + 0.3 * 0.4 + 0.2 * 0.1
    assert kappa_3class(HUMAN, JUDGE) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert accuracy(HUMAN, JUDGE) == pytest.approx(0.8)


def test_kappa_without_ties_uses_only_items_neither_side_called_a_tie() -> None:
    # Left: 50 human-A items (judge: 40 A, 10 B) and 30 human-B items (judge B): 80 items.
    p_o = (40 + 30) / 80
    p_e = (50 / 80) * (40 / 80) + (30 / 80) * (40 / 80)
    assert kappa_no_ties(HUMAN, JUDGE) == pytest.approx((p_o - p_e) / (1 - p_e))


def test_confusion_rows_are_human_columns_are_judge_in_order_a_b_tie() -> None:
    table = confusion(HUMAN, JUDGE)
    assert list(table) == ["A", "B", "tie"]
    assert [list(row.values()) for row in table.values()] == [[40, 10, 0], [0, 30, 0], [10, 0, 10]]


def test_summary_excludes_unscored_verdicts_and_counts_them() -> None:
    human = HUMAN + ["A", "B", "tie", "A", "B"]
    judge: list[str | None] = [*JUDGE, None, None, None, None, None]
    summary = agreement_summary(human, judge, n_boot=200)
    assert summary["n"] == 100
    assert summary["n_unscored"] == 5
    assert summary["kappa"] == pytest.approx(kappa_3class(HUMAN, JUDGE))
    assert summary["label_counts"]["judge"]["unscored"] == 5
    assert summary["label_counts"]["human"] == {"A": 52, "B": 32, "tie": 21}
    lo, hi = summary["ci95"]
    assert lo < summary["kappa"] < hi

    as_ties = agreement_summary(human, judge, unscored="tie", n_boot=50)
    assert as_ties["n"] == 105
    assert as_ties["n_unscored"] == 5
    assert as_ties["confusion"]["A"]["tie"] == 2  # the two unscored human-A items became ties


def test_a_judge_that_always_answers_a_has_kappa_zero_and_a_perfect_one_has_one() -> None:
    assert kappa_3class(HUMAN, ["A"] * 100) == pytest.approx(0.0)
    assert kappa_3class(HUMAN, HUMAN) == pytest.approx(1.0)
    assert bootstrap_ci(kappa_3class, HUMAN, HUMAN, n=100) == (1.0, 1.0)


def test_undefined_kappa_is_nan_without_warnings_and_none_in_the_summary() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(kappa_3class(["A"] * 5, ["A"] * 5))
        summary = agreement_summary(["A"] * 5, ["A"] * 5, n_boot=20)
    assert summary["kappa"] is None
    assert summary["accuracy"] == 1.0


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate() -> None:
    first = bootstrap_ci(kappa_3class, HUMAN, JUDGE, n=300, seed=7)
    assert first == bootstrap_ci(kappa_3class, HUMAN, JUDGE, n=300, seed=7)
    assert first[0] < kappa_3class(HUMAN, JUDGE) < first[1]
    assert first != bootstrap_ci(kappa_3class, HUMAN, JUDGE, n=300, seed=8)


def test_mismatched_lengths_and_unknown_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="pair up"):
        kappa_3class(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="unknown labels"):
        kappa_3class(["A", "B"], ["A", "C"])


# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
FLEISS_COUNTS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def _expand(counts: list[list[int]]) -> list[list[str]]:
    return [[str(c + 1) for c, k in enumerate(row) for _ in range(k)] for row in counts]


def test_fleiss_kappa_matches_the_textbook_example() -> None:
    assert round(fleiss_kappa(_expand(FLEISS_COUNTS), categories=["1", "2", "3", "4", "5"]), 3) == 0.210


def test_fleiss_kappa_agrees_with_statsmodels_when_installed() -> None:
    irr = pytest.importorskip("statsmodels.stats.inter_rater")
    import numpy as np

    reference = irr.fleiss_kappa(np.array(FLEISS_COUNTS), method="fleiss")
    assert fleiss_kappa(_expand(FLEISS_COUNTS), categories=["1", "2", "3", "4", "5"]) == pytest.approx(
        reference
    )


def test_fleiss_kappa_needs_the_same_number_of_ratings_per_item() -> None:
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([["A", "B"], ["A"]])


def test_krippendorff_alpha_matches_krippendorffs_own_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example with
    # 4 observers, 12 units and missing values (rows = units here); alpha = 0.743.
    n = None
    units = [
        [1, 1, n, 1],
        [2, 2, 3, 2],
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [2, 2, 2, 2],
        [1, 2, 3, 4],
        [4, 4, 4, 4],
        [1, 1, 2, 1],
        [2, 2, 2, 2],
        [n, 5, 5, 5],
        [n, n, 1, 1],
        [n, 3, n, n],
    ]
    assert round(krippendorff_alpha_nominal(units), 3) == 0.743


def test_krippendorff_alpha_on_a_case_worked_by_hand() -> None:
    # Units (x, x), (x, y), (y, y): coincidences o_xx = 2, o_xy = o_yx = 1, o_yy = 2; n_x = n_y = 3, n = 6.
    # alpha = 1 - (n - 1) * (o_xy + o_yx) / (n_x n_y + n_y n_x) = 1 - 5 * 2 / 18 = 4 / 9.
    assert krippendorff_alpha_nominal([["x", "x"], ["x", "y"], ["y", "y"]]) == pytest.approx(4 / 9)
    # A unit with one rating is not pairable and changes nothing.
    assert krippendorff_alpha_nominal([["x", "x"], ["x", "y"], ["y", "y"], ["x", None]]) == pytest.approx(
        4 / 9
    )


def test_pairwise_kappas_skip_items_an_annotator_did_not_label() -> None:
    matrix = [["A", "A", "B"], ["B", "B", None], ["tie", "tie", "A"], ["A", None, "A"]]
    kappas = pairwise_kappas(matrix)
    assert set(kappas) == {
        ("annotator1", "annotator2"),
        ("annotator1", "annotator3"),
        ("annotator2", "annotator3"),
    }
    assert kappas[("annotator1", "annotator2")] == pytest.approx(1.0)
    # annotator1 vs 3 on items 0, 2, 3: (A,B), (tie,A), (A,A): p_o = 1/3;
    # marginals: rater1 A 2/3, tie 1/3; rater3 A 2/3, B 1/3 -> p_e = 4/9.
    assert kappas[("annotator1", "annotator3")] == pytest.approx((1 / 3 - 4 / 9) / (1 - 4 / 9))


def test_inter_judge_kappas_need_no_humans() -> None:
    kappas = inter_judge_kappas({"gpt": JUDGE, "llama": JUDGE, "gemma": HUMAN})
    assert kappas[("gpt", "llama")] == pytest.approx(1.0)
    assert kappas[("gpt", "gemma")] == pytest.approx(kappa_3class(HUMAN, JUDGE))
    with pytest.raises(ValueError, match="different numbers"):
        inter_judge_kappas({"gpt": ["A"], "llama": ["A", "B"]})
