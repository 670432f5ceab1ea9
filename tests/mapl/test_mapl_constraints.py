"""MAPL constraints: hand-written cases per kind, serialisation, measured generators, IFEval mapping."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.mapl import (
    KINDS,
    Constraint,
    ConstraintError,
    candidates,
    from_dict,
    from_ifeval,
    from_ifeval_row,
    satisfied_by,
    verify,
    violated_by,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
IFEVAL = DATA / "prompts" / "ifeval_input_data.jsonl"
ALPACA = DATA / "prompts" / "alpaca_eval_805_text_davinci_003_outputs.json"


def c(kind: str, **params: object) -> Constraint:
    return from_dict({"kind": kind, **params})


BULLETS = "Three tips:\n* Drink water.\n* Sleep well.\n- Walk daily."
SECTIONS = "Intro.\nSECTION 1\nFirst part.\nSECTION 2\nSecond part."

# (constraint, response that satisfies it, response that violates it), one or more per kind.
CASES: list[tuple[Constraint, str, str]] = [
    (
        c("length_constraints:number_words", relation="at least", num_words=5),
        "one two three four five",
        "one two three four",
    ),
    (
        c("length_constraints:number_words", relation="less than", num_words=5),
        "one two three four",
        "one two three four five",
    ),
    (
        c("length_constraints:number_words", relation="at most", num_words=3),
        "one two three",
        "one two three four",
    ),
    (
        c("length_constraints:number_sentences", relation="at least", num_sentences=3),
        "It rains. We stay in! Why not?",
        "It rains. We stay in.",
    ),
    (
        c("length_constraints:number_sentences", relation="less than", num_sentences=2),
        "Just one sentence here.",
        "First one. Second one.",
    ),
    (
        c("length_constraints:number_paragraphs", num_paragraphs=3),
        "Alpha.\n***\nBeta.\n***\nGamma.",
        "Alpha.\n***\nBeta.",
    ),
    (
        c("length_constraints:number_paragraphs", num_paragraphs=2),
        "Alpha.\n***\nBeta.",
        "Alpha.\n***\n***\nBeta.",
    ),
    (
        c("detectable_format:number_bullet_lists", num_bullets=3),
        BULLETS,
        "Tips:\n* Drink water.\n* Sleep well.",
    ),
    (c("detectable_format:number_bullet_lists", num_bullets=1), "* only one", "*not a bullet* and\n---"),
    (c("detectable_format:json_format"), '{"name": "tea", "hot": true}', "name: tea"),
    (c("detectable_format:json_format"), "```json\n[1, 2, 3]\n```", '```json\n{"a": 1,}\n```'),
    (c("detectable_format:json_format"), '```\n{"a": 1}\n```', "42"),
    (c("keywords:existence", keywords=["tea", "Green"]), "Green TEA is calm.", "Green teapots only."),
    (
        c("keywords:forbidden_words", forbidden_words=["sugar", "milk"]),
        "Plain tea, no sweetener.",
        "Add MILK.",
    ),
    (c("keywords:forbidden_words", forbidden_words=["cat"]), "A category error.", "The cat sat."),
    (
        c("keywords:frequency", keyword="tea", frequency=2, relation="at least"),
        "Tea first, then more tea.",
        "Tea once, then teapots.",
    ),
    (c("keywords:frequency", keyword="tea", frequency=2, relation="less than"), "Tea once.", "tea tea"),
    (
        c("keywords:letter_frequency", letter="z", let_frequency=3, let_relation="at least"),
        "Zig zag zoo",
        "zig zag",
    ),
    (c("keywords:letter_frequency", letter="e", let_frequency=2, let_relation="less than"), "a cat", "bee"),
    (c("punctuation:no_comma"), "No commas here.", "Yes, one comma."),
    (c("change_case:english_lowercase"), "all quiet on the front, 1918.", "All quiet."),
    (c("change_case:english_lowercase"), "lower case only", "123 !!"),
    (c("change_case:english_capital"), "ALL CAPS, 2024!", "ALL CAPS except this."),
    (
        c("change_case:capital_word_frequency", capital_frequency=2, capital_relation="at least"),
        "NASA and ESA fly.",
        "Only NASA flies.",
    ),
    (
        c("change_case:capital_word_frequency", capital_frequency=2, capital_relation="less than"),
        "Only NASA flies.",
        "NASA and ESA fly.",
    ),
    (
        c("startend:end_checker", end_phrase="Is there anything else I can help with?"),
        "Done.\nIs there anything else I can help with?  ",
        "Is there anything else I can help with? Bye.",
    ),
    (c("startend:end_checker", end_phrase="Peace!"), "Goodbye and peace!", "Peace! Goodbye."),
    (c("startend:quotation"), '  "Wrapped in quotes."\n', 'Not "wrapped".'),
    (c("startend:quotation"), '"a"', '"'),
    (c("detectable_format:title"), "<<Poem of Joy>>\nLines follow.", "<< >> and <<broken\ntitle>>"),
    (
        c("detectable_format:number_highlighted_sections", num_highlights=2),
        "*first* and **second** part",
        "*first* only and ** ** empty",
    ),
    (
        c("detectable_content:number_placeholders", num_placeholders=2),
        "Dear [name], see you at [address].",
        "Dear [name], bye [].",
    ),
    (
        c("detectable_content:postscript", postscript_marker="P.S."),
        "Body text.\n\nP.S. Call me.",
        "Body mentions P.S. inline.",
    ),
    (
        c("detectable_content:postscript", postscript_marker="P.P.S"),
        "Body.\nP.P.S Bring tea.",
        "Body.\nP.S. Tea.",
    ),
    (
        c("detectable_format:multiple_sections", section_spliter="SECTION", num_sections=2),
        SECTIONS,
        "SECTION 1\nOnly one part.",
    ),
    (
        c("detectable_format:multiple_sections", section_spliter="Day", num_sections=3),
        "Day 1 beach. Day 2 hike. Day 3 rest.",
        "Day one beach. Day 2 hike.",
    ),
    (c("detectable_format:constrained_response"), "I checked. My answer is no.", "My answer is nope."),
    (
        c("language:response_language", language="en"),
        "This is a plain English answer and it should pass the check with the usual words in it for you.",
        (
            "Dies ist eine deutsche Antwort und sie sollte den Test nicht bestehen weil keine englischen "
            "Funktionswörter darin vorkommen und der Text lang genug ist für die Heuristik hier."
        ),
    ),
    (c("language:response_language", language="en"), "Short and English.", "Это ответ на русском языке."),
]


@pytest.mark.parametrize(("constraint", "good", "bad"), CASES, ids=lambda x: getattr(x, "kind", None))
def test_checker_accepts_positive_and_rejects_negative(constraint: Constraint, good: str, bad: str) -> None:
    assert constraint.check(good) is True
    assert constraint.check(bad) is False


def test_hand_written_cases_cover_every_kind() -> None:
    assert len(KINDS) >= 18
    assert {case[0].kind for case in CASES} == set(KINDS)


@pytest.mark.parametrize("constraint", [case[0] for case in CASES], ids=lambda x: x.kind)
def test_describe_round_trips_and_verify_rechecks(constraint: Constraint) -> None:
    data = json.loads(json.dumps(constraint.describe()))  # must survive plain JSON, as rows do
    assert data["kind"] == constraint.kind
    assert from_dict(data) == constraint
    good = next(g for con, g, _ in CASES if con == constraint)
    assert verify(data, good) is True
    instruction = constraint.instruction()
    assert instruction.strip() and instruction == from_dict(data).instruction()


def test_constraints_are_frozen() -> None:
    constraint = c("length_constraints:number_words", relation="at least", num_words=5)
    with pytest.raises(ValidationError):
        constraint.num_words = 1  # type: ignore[misc]


def test_instruction_wording_names_the_parameters() -> None:
    assert c("length_constraints:number_words", relation="less than", num_words=50).instruction() == (
        "Answer with less than 50 words."
    )
    assert "***" in c("length_constraints:number_paragraphs", num_paragraphs=2).instruction()
    assert '"tea", "milk"' in c("keywords:forbidden_words", forbidden_words=["tea", "milk"]).instruction()
    assert "1 time." in c("keywords:frequency", keyword="tea", frequency=1, relation="at least").instruction()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "no:such_kind"}, "unknown constraint kind 'no:such_kind'"),
        ({"relation": "at least"}, "no 'kind'"),
        ({"kind": "length_constraints:number_words", "relation": "about", "num_words": 3}, "relation"),
        ({"kind": "length_constraints:number_words", "relation": "at least", "num_words": 0}, "num_words"),
        ({"kind": "punctuation:no_comma", "extra": 1}, "extra"),
    ],
)
def test_bad_constraint_dicts_raise_a_clear_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConstraintError, match=message):
        from_dict(data)


# --- generators -----------------------------------------------------------------------------------

HANDWRITTEN = [
    "",
    "ok",
    "Yes.",
    "no commas at all here",
    "ALL CAPS SHOUTING RESPONSE!",
    "Hello, world.",
    BULLETS,
    SECTIONS,
    '{"answer": 42, "unit": "km"}',
    '```json\n{"a": [1, 2]}\n```',
    '"A quoted reply, complete with commas."',
    "<<Title>>\nBody text with *one highlight* and *another*.",
    "Dear [name],\nWe meet at [place] on [date].\nP.S. Bring tea.",
    "Alpha.\n***\nBeta.\n***\nGamma.",
    "Is there anything else I can help with?",
    "Tea tea tea TEA tea.",
    "My answer is yes.",
    "Привет, как дела? Это ответ.",
    "Le thé est une boisson chaude très populaire en France.",
    "Numbers only: 1, 2, 3, 4, 5.",
    "one\n\ntwo\n\nthree",
    "- dash bullet\n- another dash\n- third",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "e.g. this has abbreviations, i.e. tricky ones.",
    "Line one\nLine two\nLine three",
    "Zzz... zebra zone!",
    "A" * 50,
    "NASA, ESA and JAXA cooperate.",
    "   surrounded by whitespace   ",
    "**bold** and *italic* and ***both***",
]


def varied_responses() -> list[str]:
    alpaca = [row["output"] for row in json.loads(ALPACA.read_text())[:30]]
    return HANDWRITTEN + alpaca


@pytest.mark.parametrize("k", [1, 3])
def test_generated_constraints_hold_on_their_side_of_the_response(k: int) -> None:
    for i, response in enumerate(varied_responses()):
        for seed in (i, i + 1000):
            satisfied = satisfied_by(response, random.Random(seed), k)
            violated = violated_by(response, random.Random(seed), k)
            assert all(x.check(response) for x in satisfied), response
            assert not any(x.check(response) for x in violated), response
            for picked in (satisfied, violated):
                assert 1 <= len(picked) <= k, response
                assert len({x.kind for x in picked}) == len(picked)
                groups = [x.group or x.kind for x in picked]
                assert len(set(groups)) == len(groups)


def test_generators_use_the_measurements_of_real_answers() -> None:
    # Over real answers, both sides should be filled for most responses and span many kinds.
    kinds_seen: set[str] = set()
    full = 0
    for i, response in enumerate(varied_responses()):
        satisfied = satisfied_by(response, random.Random(i), 3)
        violated = violated_by(response, random.Random(i), 3)
        full += len(satisfied) == 3 and len(violated) == 3
        kinds_seen |= {x.kind for x in satisfied + violated}
    assert full >= len(varied_responses()) - 3
    assert len(kinds_seen) >= 15


def test_word_count_generator_brackets_the_measured_count() -> None:
    response = "one two three four five six seven eight nine ten"
    found = [x for x in candidates(response, random.Random(3)) if x.kind == "length_constraints:number_words"]
    sides = {x.check(response) for x in found}
    assert sides == {True, False}  # thresholds are drawn on both sides of 10 words


def test_generators_are_deterministic_for_a_seed() -> None:
    response = varied_responses()[35]
    first = [x.describe() for x in satisfied_by(response, random.Random(5), 3)]
    assert first == [x.describe() for x in satisfied_by(response, random.Random(5), 3)]
    assert [x.describe() for x in violated_by(response, random.Random(5), 3)] == [
        x.describe() for x in violated_by(response, random.Random(5), 3)
    ]


# --- IFEval ---------------------------------------------------------------------------------------


def ifeval_rows() -> list[dict]:
    return [json.loads(line) for line in IFEVAL.read_text().splitlines() if line.strip()]


def test_ifeval_kwargs_build_our_constraints_with_the_same_parameters() -> None:
    mapped: set[str] = set()
    for row in ifeval_rows():
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            if instruction_id not in KINDS or instruction_id == "language:response_language":
                continue
            constraint = from_ifeval(instruction_id, kwargs)
            # Field names are IFEval's kwarg names, so describe() gives back the row's kwargs.
            assert constraint.describe() == {"kind": instruction_id, **kwargs}
            assert isinstance(constraint.check(row["prompt"]), bool)
            mapped.add(instruction_id)
    assert len(mapped) >= 10


def test_ifeval_rows_with_only_mapped_ids_build_whole_constraint_lists() -> None:
    built = 0
    for row in ifeval_rows():
        if all(i in KINDS and i != "language:response_language" for i in row["instruction_id_list"]):
            constraints = from_ifeval_row(row)
            assert [x.kind for x in constraints] == row["instruction_id_list"]
            built += 1
    assert built >= 100


def test_ifeval_checkers_run_on_real_answers() -> None:
    answers = varied_responses()
    rows = ifeval_rows()[:80]
    for row in rows:
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            if instruction_id in KINDS and instruction_id != "language:response_language":
                constraint = from_ifeval(instruction_id, kwargs)
                assert all(isinstance(constraint.check(a), bool) for a in answers)


@pytest.mark.parametrize(
    "instruction_id",
    ["combination:repeat_prompt", "combination:two_responses", "length_constraints:nth_paragraph_first_word"],
)
def test_unmapped_ifeval_ids_raise_naming_the_id(instruction_id: str) -> None:
    with pytest.raises(ConstraintError, match=f"IFEval instruction '{instruction_id}' has no checker"):
        from_ifeval(instruction_id, {})


def test_ifeval_language_other_than_english_is_refused() -> None:
    assert from_ifeval("language:response_language", {"language": "en"}).check("Plain English.")
    with pytest.raises(ConstraintError, match="language"):
        from_ifeval("language:response_language", {"language": "kn"})


def test_ifeval_none_kwargs_are_ignored() -> None:
    # The Hugging Face copy of IFEval pads every kwargs dict with None values.
    constraint = from_ifeval("punctuation:no_comma", {"num_words": None, "keywords": None})
    assert constraint.check("no commas") and not constraint.check("a, b")
