"""MAPL variants: intra-sample and inter-sample rows, checker labelling, pairing and re-verification."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from factory.mapl import (
    ConstraintError,
    augment_prompt,
    from_dict,
    inter_sample_pair,
    intra_sample_rows,
    label_by_checkers,
    pairs_from_checked,
    reverify,
)

ALPACA = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "prompts"
    / ("alpaca_eval_805_text_davinci_003_outputs.json")
)

PROMPT = "Give advice on sleeping well."
RESPONSE = (
    "Here is my advice:\n* Keep a fixed bedtime.\n* Avoid screens late at night.\n"
    "* Keep the bedroom cool, dark and quiet.\nSleep matters."
)
NO_COMMA = {"kind": "punctuation:no_comma"}
WORDS_5 = {"kind": "length_constraints:number_words", "relation": "at least", "num_words": 5}


def alpaca_rows(n: int) -> list[dict]:
    return json.loads(ALPACA.read_text())[:n]


def test_augment_prompt_appends_one_instruction_per_line() -> None:
    text = augment_prompt("Write a poem.  ", [NO_COMMA, from_dict(WORDS_5)])
    assert text == (
        "Write a poem.\n\nIn your entire response, refrain from the use of any commas.\n"
        "Answer with at least 5 words."
    )
    assert augment_prompt("Write a poem.", []) == "Write a poem."


def test_intra_row_prefers_the_prompt_whose_constraints_the_response_meets() -> None:
    [row] = intra_sample_rows("p1", PROMPT, RESPONSE, random.Random(0), k=2)
    assert row["kind"] == "mapl_intra" and row["prompt_id"] == "p1" and row["response"] == RESPONSE
    assert len(row["chosen_constraints"]) == len(row["rejected_constraints"]) == 2
    for side, expected in (("chosen", True), ("rejected", False)):
        prompt = row[f"{side}_prompt"]
        assert prompt.startswith(PROMPT + "\n\n")
        for data in row[f"{side}_constraints"]:
            constraint = from_dict(data)
            assert constraint.instruction() in prompt
            assert constraint.check(RESPONSE) is expected
        assert row["checks"][side] == [expected] * 2
    assert reverify(row)


def test_intra_rows_are_deterministic_for_a_seed() -> None:
    first = intra_sample_rows("p1", PROMPT, RESPONSE, random.Random(11), k=3)
    assert first == intra_sample_rows("p1", PROMPT, RESPONSE, random.Random(11), k=3)
    assert first != intra_sample_rows("p1", PROMPT, RESPONSE, random.Random(12), k=3)


def test_intra_rows_over_real_answers_all_reverify() -> None:
    for i, item in enumerate(alpaca_rows(25)):
        rows = intra_sample_rows(str(i), item["instruction"], item["output"], random.Random(i), k=3)
        assert len(rows) == 1
        assert reverify(json.loads(json.dumps(rows[0])))  # rows survive plain JSON


def test_reverify_catches_tampered_intra_rows() -> None:
    [row] = intra_sample_rows("p1", PROMPT, RESPONSE, random.Random(1), k=2)
    swapped = dict(
        row,
        chosen_prompt=row["rejected_prompt"],
        rejected_prompt=row["chosen_prompt"],
        chosen_constraints=row["rejected_constraints"],
        rejected_constraints=row["chosen_constraints"],
        checks={"chosen": row["checks"]["rejected"], "rejected": row["checks"]["chosen"]},
    )
    assert not reverify(swapped)
    wrong_checks = copy.deepcopy(row)
    wrong_checks["checks"]["rejected"][0] = True
    assert not reverify(wrong_checks)
    missing_instruction = dict(row, chosen_prompt=PROMPT)
    assert not reverify(missing_instruction)
    other_response = dict(row, response="")
    assert not reverify(other_response)


def test_inter_pair_separates_chosen_from_rejected() -> None:
    chosen = "Sleep at fixed times and keep the room dark."
    rejected = "SLEEP, SLEEP, SLEEP! Whatever, just sleep more, okay?"
    row = inter_sample_pair("p2", PROMPT, chosen, rejected, random.Random(3), k=2)
    assert row is not None
    assert row["kind"] == "mapl_inter" and row["chosen"] == chosen and row["rejected"] == rejected
    assert row["prompt"].startswith(PROMPT + "\n\n")
    constraints = [from_dict(d) for d in row["constraints"]]
    assert 1 <= len(constraints) <= 2
    assert all(x.check(chosen) for x in constraints)
    assert not all(x.check(rejected) for x in constraints)
    assert row["checks"] == {
        "chosen": [x.check(chosen) for x in constraints],
        "rejected": [x.check(rejected) for x in constraints],
    }
    assert all(x.instruction() in row["prompt"] for x in constraints)
    assert reverify(row)
    flipped = {"chosen": row["checks"]["rejected"], "rejected": row["checks"]["chosen"]}
    assert not reverify(dict(row, chosen=rejected, rejected=chosen, checks=flipped))


def test_inter_pair_is_none_when_nothing_separates_the_responses() -> None:
    assert inter_sample_pair("p3", PROMPT, RESPONSE, RESPONSE, random.Random(0)) is None


def test_inter_pairs_over_real_answers_hold_their_labels() -> None:
    items = alpaca_rows(40)
    built = 0
    for i in range(0, 40, 2):
        chosen, rejected = items[i]["output"], items[i + 1]["output"]
        row = inter_sample_pair(str(i), items[i]["instruction"], chosen, rejected, random.Random(i), k=3)
        if row is None:
            continue
        built += 1
        assert all(row["checks"]["chosen"]) and not all(row["checks"]["rejected"])
        assert reverify(row)
    assert built >= 15  # distinct answers almost always differ in some measurable way


def test_label_by_checkers_counts_satisfied_constraints() -> None:
    responses = ["one two three four five six", "one, two", "one two, three four five"]
    assert label_by_checkers([NO_COMMA, WORDS_5], responses) == [
        ("one two three four five six", 2, True),
        ("one, two", 0, False),
        ("one two, three four five", 1, False),
    ]


def test_pairs_from_checked_pairs_passing_with_worst_failing_first() -> None:
    prompt = augment_prompt(PROMPT, [NO_COMMA, WORDS_5])
    responses = [
        "Sleep early and wake early daily.",
        "Sleep, rest and relax every night.",
        "one, two",
        "Keep the room dark and cool.",
        "Sleep early and wake early daily.",
    ]
    rows = pairs_from_checked("p4", prompt, [NO_COMMA, WORDS_5], responses)
    # Two passing answers (the duplicate dropped); "one, two" violates both, so it is used first.
    assert [(r["chosen"], r["rejected"]) for r in rows] == [
        ("Sleep early and wake early daily.", "one, two"),
        ("Keep the room dark and cool.", "Sleep, rest and relax every night."),
    ]
    assert all(r["kind"] == "mapl_inter" and r["method"] == "checked" and r["prompt"] == prompt for r in rows)
    assert all(reverify(r) for r in rows)
    assert len(pairs_from_checked("p4", prompt, [NO_COMMA, WORDS_5], responses, max_pairs=1)) == 1
    assert pairs_from_checked("p4", prompt, [NO_COMMA], ["a, b", "c, d"]) == []


def test_pairs_from_checked_needs_constraints() -> None:
    with pytest.raises(ConstraintError, match="at least one constraint"):
        pairs_from_checked("p5", PROMPT, [], ["a", "b"])


def test_reverify_reads_json_encoded_columns() -> None:
    row = inter_sample_pair("p6", PROMPT, "Keep calm.", "Keep, calm, and, carry, on.", random.Random(2))
    assert row is not None
    encoded = dict(row, constraints=json.dumps(row["constraints"]), checks=json.dumps(row["checks"]))
    assert reverify(encoded)


def test_reverify_refuses_rows_it_cannot_read() -> None:
    with pytest.raises(ConstraintError, match="not a MAPL row"):
        reverify({"kind": "judged", "checks": {}})
    with pytest.raises(ConstraintError, match="no field 'constraints'"):
        reverify(
            {
                "kind": "mapl_inter",
                "checks": {"chosen": [], "rejected": []},
                "prompt": "",
                "chosen": "",
                "rejected": "",
            }
        )
