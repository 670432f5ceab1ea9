"""Issue #17 items 1, 2, 5: representative samples, gate v2 (interval, baselines, recall, human z), length control.

Every figure is checked against what a hand-built set and a scripted judge make it by construction:
kappas from the textbook formula (not scikit-learn), sample shares from the set's label counts.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory._util.errors import UserError
from factory.config import GateSettings, PairSettings
from factory.pipeline.finalize.gate import evaluate_checks, gate_verdict, summary_lines
from factory.pipeline.stages.pairs import select_pairs
from factory.release.publish import check_gate
from judges.calibration.agreement import build_agreement
from judges.calibration.decision import kappa_decision
from judges.humans.human_sets import HumanSet, load_human_set
from judges.metrics.baselines import baseline_entries, list_lines
from judges.metrics.length_control import length_control
from judges.metrics.scoring import score_judgments
from judges.report import render_report

LABELS = ("A", "B", "tie")


def kappa_by_hand(x: list[str], y: list[str]) -> float:
    n = len(x)
    p_o = sum(a == b for a, b in zip(x, y, strict=True)) / n
    cx, cy = Counter(x), Counter(y)
    p_e = sum(cx[k] * cy[k] for k in LABELS) / n**2
    return (p_o - p_e) / (1 - p_e)


# ---------------------------------------------------------------- samples


def skewed_set(path: Path) -> Path:
    """90 items over 9 prompts; the file starts with 30 A items of one prompt (what 'first N' would take)."""
    rows = []
    for i in range(90):
        label = "A" if i < 45 else "B" if i < 78 else "tie"  # 45 / 33 / 12
        prompt = f"prompt {i // 10}" if i < 30 else f"prompt {3 + i % 6}"
        rows.append(
            {"id": f"s{i}", "prompt": prompt, "response_a": f"a{i}", "response_b": f"b{i}", "label": label}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("n", [7, 20, 33, 50])
def test_a_limit_draws_a_stratified_seeded_sample_within_one_item_of_the_label_shares(
    tmp_path: Path, n: int
) -> None:
    path = skewed_set(tmp_path / "skewed.jsonl")
    whole = load_human_set(path)
    shares = {k: v / len(whole) for k, v in Counter(whole.frame["label"]).items()}
    sample = load_human_set(path, limit=n, seed=3)
    counts = Counter(sample.frame["label"])
    assert len(sample) == n
    for label, share in shares.items():
        assert abs(counts[label] - n * share) < 1, (label, counts[label], n * share)
    # Spread over prompts: no prompt holds more than its even share plus one.
    per_prompt = Counter(sample.frame["prompt"])
    assert max(per_prompt.values()) <= math.ceil(n / 9) + 1
    record = sample.sample
    assert record is not None and record["seed"] == 3 and record["n"] == n and record["n_set"] == 90
    assert record["item_ids"] == sample.frame["id"].to_list()
    assert record["label_counts"]["sample"] == {k: counts[k] for k in LABELS}
    assert record["label_shares"]["set"] == pytest.approx({k: shares.get(k, 0.0) for k in LABELS})
    # Seeded: the same seed draws the same items, another seed (almost surely) others.
    assert load_human_set(path, limit=n, seed=3).frame["id"].to_list() == record["item_ids"]
    assert load_human_set(path, limit=n, seed=4).sample["item_ids_sha256"] != record["item_ids_sha256"]


def test_pandalm_200_sample_has_ties_disagreements_and_many_prompts(shared_data: Path) -> None:
    whole = load_human_set("pandalm", data_dir=shared_data)
    sample = load_human_set("pandalm", data_dir=shared_data, limit=200)
    set_counts = Counter(whole.frame["label"])
    counts = Counter(sample.frame["label"])
    for label in LABELS:
        assert abs(counts[label] - 200 * set_counts[label] / len(whole)) < 1
    # 200 items over the set's 170 prompts: none gets more than two.
    assert max(Counter(sample.frame["prompt"]).values()) <= 2
    # Unlike the file's first 50 items, the sample holds items the annotators disagree on.
    assert any(len(set(labels)) > 1 for labels in sample.frame["labels"].to_list())
    ceiling = build_agreement(sample, [], run_id="r", source="test")["human_ceiling"]
    assert ceiling["max_pairwise_kappa"] < 1.0


# ---------------------------------------------------------------- baselines

# Eight items: label, response A, response B. Lengths and list lines are chosen so that
#   longer: A A B A B B A tie  (5 of 8 agree; judge counts A4 B3 tie1 vs human A3 B3 tie2)
#   first:  A everywhere       (3 of 8)
#   list:   A tie tie B A B tie tie (5 of 8; A2 B2 tie4)
BASELINE_ITEMS = [
    ("A", "- one\n- two and more", "short"),
    ("A", "a longer answer", "short"),
    ("A", "short", "a longer answer"),
    ("B", "a much longer answer", "1. x\n2. y"),
    ("B", "* item\n* item two", "a considerably longer answer"),
    ("B", "tiny", "+ a list\n+ that is longer"),
    ("tie", "a longer one", "short"),
    ("tie", "same", "size"),
]
LONGER = ["A", "A", "B", "A", "B", "B", "A", "tie"]
LISTS = ["A", "tie", "tie", "B", "A", "B", "tie", "tie"]


def hand_set(items: list[tuple[str, str, str]], labels: list[list[str]] | None = None) -> HumanSet:
    frame = pl.DataFrame(
        {
            "id": [f"i{i}" for i in range(len(items))],
            "prompt": [f"prompt {i}" for i in range(len(items))],
            "response_a": [a for _, a, _ in items],
            "response_b": [b for _, _, b in items],
            "label": [label for label, _, _ in items],
            "labels": labels or [[] for _ in items],
            "source": ["hand"] * len(items),
            "meta": ["{}"] * len(items),
        }
    )
    annotators = [f"annotator{i + 1}" for i in range(len(labels[0]))] if labels else []
    return HumanSet("hand", frame, annotators)


def test_baselines_give_their_exact_figures_on_a_hand_built_set() -> None:
    human = hand_set(BASELINE_ITEMS)
    labels = [label for label, _, _ in BASELINE_ITEMS]
    assert [list_lines(a) for _, a, _ in BASELINE_ITEMS] == [2, 0, 0, 0, 2, 0, 0, 0]
    figures = {b["name"]: b for b in baseline_entries(human, n_boot=0)}
    assert figures["longer"]["kappa"] == pytest.approx(kappa_by_hand(labels, LONGER))
    assert figures["longer"]["kappa"] == pytest.approx(17 / 41)  # (5/8 - 23/64) / (1 - 23/64)
    assert figures["longer"]["accuracy"] == pytest.approx(5 / 8)
    assert figures["first"]["kappa"] == pytest.approx(0.0) and figures["first"]["accuracy"] == pytest.approx(
        3 / 8
    )
    assert figures["list"]["kappa"] == pytest.approx(kappa_by_hand(labels, LISTS))
    assert figures["list"]["kappa"] == pytest.approx(5 / 11)  # (5/8 - 20/64) / (1 - 20/64)
    assert figures["list"]["label_counts"]["judge"] == {"A": 2, "B": 2, "tie": 4, "unscored": 0}


# ---------------------------------------------------------------- scoring: recall, human z


def judgments(verdicts: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"item_id": [f"i{i}" for i in range(len(verdicts))], "verdict": verdicts})


def test_class_recall_and_human_likeness_z_from_three_annotators() -> None:
    # Three annotators; the judge copies annotator1 on every item but never says tie.
    annotators = [
        ["A", "A", "A"],
        ["A", "A", "B"],
        ["B", "B", "B"],
        ["B", "tie", "B"],
        ["tie", "tie", "tie"],
        ["tie", "A", "tie"],
        ["A", "A", "A"],
        ["B", "B", "A"],
        ["tie", "tie", "B"],
        ["A", "B", "A"],
    ]
    items = [
        (Counter(row).most_common(1)[0][0], f"answer a{i}", f"answer b{i}")
        for i, row in enumerate(annotators)
    ]
    human = hand_set(items, annotators)
    verdicts = [row[0] if row[0] != "tie" else "A" for row in annotators]
    entry = score_judgments(judgments(verdicts), human, n_boot=0)[0]
    majority = [label for label, _, _ in items]
    recall = entry["class_recall"]
    for label in LABELS:
        hits = sum(m == label and v == label for m, v in zip(majority, verdicts, strict=True))
        assert recall[label] == pytest.approx(hits / majority.count(label))
    assert recall["tie"] == 0.0  # the judge never says tie: visible however kappa looks
    columns = [[row[k] for row in annotators] for k in range(3)]
    to_judge = [kappa_by_hand(verdicts, column) for column in columns]
    pairs = [kappa_by_hand(columns[a], columns[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    z = (statistics.fmean(to_judge) - statistics.fmean(pairs)) / statistics.stdev(pairs)
    likeness = entry["human_likeness"]
    assert likeness["z"] == pytest.approx(z)
    assert likeness["band"] == ("super-consistent" if z >= 1 else "human-like" if z > -1 else "below human")


# ---------------------------------------------------------------- gate v2


def test_kappa_interval_passes_fails_or_is_undecided_with_the_n_that_decides() -> None:
    assert kappa_decision(0.6, [0.45, 0.75], 50, 0.4)["verdict"] == "pass"
    assert kappa_decision(0.2, [0.05, 0.35], 50, 0.4)["verdict"] == "fail"
    undecided = kappa_decision(0.5, [0.3, 0.7], 50, 0.4)
    # Half-width 0.2 towards the threshold, gap 0.1: the interval narrows enough at 50 * (0.2 / 0.1)^2.
    assert undecided["verdict"] == "undecided" and undecided["need_n"] == 200
    below = kappa_decision(0.3, [0.1, 0.45], 20, 0.4)  # upper half-width 0.15, gap 0.1
    assert below["verdict"] == "undecided" and below["need_n"] == math.ceil(20 * (0.15 / 0.1) ** 2)
    # The v1 reading (point estimate) is still there on request, and is never undecided.
    assert kappa_decision(0.5, [0.3, 0.7], 50, 0.4, bound="point")["verdict"] == "pass"


def test_gate_checks_pass_fail_and_undecided() -> None:
    settings = GateSettings(human_set="x", min_kappa=0.4, min_class_recall=0.2, min_human_z=-1.0)
    good = {
        "kappa": 0.7,
        "kappa_ci95": [0.55, 0.85],
        "n": 200,
        "baseline_kappas": {"longer": 0.3, "first": 0.0},
        "class_recall": {"A": 0.8, "B": 0.7, "tie": 0.3},
        "human_z": -0.5,
    }
    checks = evaluate_checks(settings, good)
    assert [c["name"] for c in checks] == ["min_kappa", "beat_baselines", "min_class_recall", "min_human_z"]
    assert all(c["status"] == "pass" for c in checks) and gate_verdict(checks, None) == "pass"
    baseline = {c["name"]: c for c in checks}["beat_baselines"]
    assert baseline["value"] == pytest.approx(0.4) and "longer" in baseline["note"]

    straddling = {**good, "kappa": 0.5, "kappa_ci95": [0.3, 0.7], "n": 50}
    checks = evaluate_checks(settings, straddling)
    kappa = checks[0]
    assert kappa["status"] == "undecided" and kappa["passed"] is False and kappa["need_n"] == 200
    assert "need n >= 200" in kappa["note"] and gate_verdict(checks, None) == "undecided"
    lines = summary_lines(
        {
            "enabled": True,
            "passed": False,
            "verdict": "undecided",
            "checks": checks,
            "judge_setting": "j",
            "human_set": "x",
        }
    )
    assert lines[0].startswith("quality gate UNDECIDED") and any("??" in line for line in lines)

    # A judge that never says tie fails the recall check; one no better than "longer" fails the baselines.
    no_tie = evaluate_checks(settings, {**good, "class_recall": {"A": 0.9, "B": 0.9, "tie": 0.0}})
    assert {c["name"]: c["status"] for c in no_tie}["min_class_recall"] == "fail"
    follower = evaluate_checks(settings, {**good, "baseline_kappas": {"longer": 0.7}})
    assert {c["name"]: c["status"] for c in follower}["beat_baselines"] == "fail"  # equal is not beating
    # A fail outweighs an undecided.
    mixed = evaluate_checks(settings, {**straddling, "human_z": -3.0})
    assert gate_verdict(mixed, None) == "fail"
    assert not GateSettings(human_set="x", beat_baselines=False).beat_baselines


def test_an_undecided_gate_approves_no_publishing() -> None:
    manifest = {
        "gate": {
            "passed": False,
            "verdict": "undecided",
            "checks": [{"name": "min_kappa", "passed": False, "status": "undecided"}],
        }
    }
    with pytest.raises(UserError, match="could not decide"):
        check_gate(manifest, force=False)


# ---------------------------------------------------------------- length control


def lengths_set(a_longer: int, b_longer: int, label: str = "A") -> HumanSet:
    items = [(label, "x" * 30, "x" * 20)] * a_longer + [(label, "x" * 20, "x" * 30)] * b_longer
    return hand_set(items)


def test_length_control_of_a_length_blind_judge_equals_its_raw_rates() -> None:
    human = lengths_set(4, 4)
    verdicts = ["A", "A", "A", "B"] * 2  # three A of four, whichever answer is longer
    lc = length_control(
        human.frame["response_a"].to_list(),
        human.frame["response_b"].to_list(),
        verdicts,
        human.frame["label"].to_list(),
    )
    judge = lc["win_rate_a"]["judge"]
    assert judge["raw"] == pytest.approx(0.75) and judge["length_controlled"] == pytest.approx(0.75)
    assert judge["length_coef"] == pytest.approx(0.0, abs=1e-9)


def test_length_control_sees_through_a_judge_that_always_picks_the_longer_answer() -> None:
    # Humans always prefer the shorter answer; A is the longer in 6 of 8 items.
    items = [("B", "x" * 30, "x" * 20)] * 6 + [("A", "x" * 20, "x" * 30)] * 2
    human = hand_set(items)
    longer = ["A"] * 6 + ["B"] * 2
    lc = length_control(
        human.frame["response_a"].to_list(),
        human.frame["response_b"].to_list(),
        longer,
        human.frame["label"].to_list(),
    )
    judge, people = lc["win_rate_a"]["judge"], lc["win_rate_a"]["human"]
    assert judge["raw"] == pytest.approx(0.75) and judge["length_controlled"] < judge["raw"]
    assert judge["length_coef"] > 0 > people["length_coef"]
    agreement = lc["agreement"]
    assert agreement["raw"] == 0.0 and agreement["accuracy_humans_chose_shorter"] == 0.0
    assert agreement["n_humans_chose_shorter"] == 8 and agreement["accuracy_humans_chose_longer"] is None
    # A balanced set: the symmetric fit puts the controlled A win rate at one half exactly.
    balanced = lengths_set(4, 4)
    sym = length_control(
        balanced.frame["response_a"].to_list(),
        balanced.frame["response_b"].to_list(),
        ["A"] * 4 + ["B"] * 4,
        balanced.frame["label"].to_list(),
    )
    assert sym["win_rate_a"]["judge"]["length_controlled"] == pytest.approx(0.5)


def test_agreement_json_and_report_carry_sample_baselines_verdicts_and_length_control(tmp_path: Path) -> None:
    path = skewed_set(tmp_path / "skewed.jsonl")
    human = load_human_set(path, limit=20, seed=1)
    entries = score_judgments(
        pl.DataFrame({"item_id": human.frame["id"], "verdict": human.frame["label"]}), human, n_boot=50
    )
    agreement = build_agreement(human, entries, run_id="r1", source="test", min_kappa=0.4, n_boot=50)
    assert agreement["sample"]["item_ids"] == human.frame["id"].to_list()
    assert {b["name"] for b in agreement["baselines"]} == {"longer", "first", "list"}
    setting = agreement["settings"][0]
    assert setting["decision"]["verdict"] == "pass" and setting["vs_baselines"]["beaten"] is True
    assert setting["length_control"]["agreement"]["raw"] == 1.0
    gate = {
        "enabled": True,
        "passed": False,
        "verdict": "undecided",
        "checks": [
            {
                "name": "min_kappa",
                "value": 0.5,
                "threshold": 0.4,
                "passed": False,
                "status": "undecided",
                "interval": [0.3, 0.7],
                "note": "undecided: need n >= 200",
            }
        ],
    }
    paths = render_report(agreement, tmp_path, gate=gate)
    html = paths["html"].read_text()
    for text in (
        "Quality gate UNDECIDED",
        "Trivial baselines",
        "Length control",
        "The sample",
        "need n &gt;= 200",
        "human z",
    ):
        assert text in html, text
    markdown = paths["markdown"].read_text()
    assert "## Quality gate: UNDECIDED" in markdown and "## Trivial baselines on the same items" in markdown


# ---------------------------------------------------------------- length-balanced pairs


def _cands(lengths: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "candidate_id": f"c{i}",
            "content_hash": f"h{i}",
            "text": "w" * n,
            "model": "m",
            "workflow": "single",
        }
        for i, n in enumerate(lengths, start=1)
    ]


def _judgment(a: int, b: int, sa: float, sb: float) -> dict[str, Any]:
    return {
        "judgment_id": f"j{a}{b}",
        "candidate_a": f"c{a}",
        "candidate_b": f"c{b}",
        "verdict": "A",
        "score_a": sa,
        "score_b": sb,
        "best_id": "c1",
        "judge_id": "judge",
        "protocol": "combined",
        "scale": 10,
        "order": "AB",
        "flipped": False,
        "votes": json.dumps(["A"]),
        "raw": "[]",
    }


def test_length_balance_caps_the_share_of_longer_chosen_pairs() -> None:
    # c1 (the best, 50 chars) beats c2 (10), c3 (20) and c4 (80): two of three pairs choose the longer answer.
    candidates = _cands([50, 10, 20, 80])
    js = [_judgment(1, 2, 9, 2), _judgment(1, 3, 9, 6), _judgment(1, 4, 9, 5)]
    free, _ = select_pairs("p", ["q"], candidates, js, PairSettings())
    assert len(free) == 3
    half, why = select_pairs("p", ["q"], candidates, js, PairSettings(max_longer_chosen_share=0.5))
    # One pair does not choose the longer answer, so one longer-chosen pair may stay: the larger margin.
    assert why is None and [(p["rejected_id"], p["margin"]) for p in half] == [("c2", 7.0), ("c4", 4.0)]
    none, why = select_pairs(
        "p", ["q"], _cands([50, 10]), [_judgment(1, 2, 9, 2)], PairSettings(max_longer_chosen_share=0.0)
    )
    assert none == [] and why == "no_preference: 1 length_balance"
