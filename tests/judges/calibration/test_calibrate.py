"""`factory calibrate`: scripted judges of known behaviour give the analytic kappa, end to end over HTTP.

The fake server plays judges whose verdicts are known in advance: a rule reads the item number and
which answer is shown first from the judge prompt, and answers with combined scores accordingly.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory.cli import main
from factory.testing import FakeLLMServer, Rule
from judges.calibration.calibrate import calibrate
from judges.calibration.config import CalibrationConfig
from judges.calibration.sweep import expand_settings
from judges.humans.human_sets import load_human_set
from judges.metrics.scoring import read_judgments, score_judgments

N_ITEMS = 30
LABELS = ("A", "B", "tie")
WRONG = {"A": "B", "B": "tie", "tie": "A"}
MISJUDGED = {i for i in range(N_ITEMS) if i % 4 == 1}  # where the copycat judge departs from the humans


def human_label(i: int) -> str:
    # Uneven label shares, so chance agreement is not a round number.
    return "A" if i % 5 in (0, 1) else "B" if i % 5 in (2, 3) else "tie"


def copycat_verdict(i: int) -> str:
    return WRONG[human_label(i)] if i in MISJUDGED else human_label(i)


def write_set(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(N_ITEMS):
            fh.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "prompt": f"[item-{i}] Question number {i}?",
                        "response_a": f"alpha answer of item {i}",
                        "response_b": f"beta answer of item {i}, a little longer than the first one",
                        "label": human_label(i),
                    }
                )
                + "\n"
            )
    return path


def _shown(body: dict[str, Any]) -> tuple[int, bool]:
    """The item number and whether the item's answer A (alpha) is shown first."""
    text = body["messages"][-1]["content"]
    item = int(re.search(r"\[item-(\d+)\]", text).group(1))  # type: ignore[union-attr]
    return item, text.index("alpha answer") < text.index("beta answer")


def _scores(verdict_shown: str) -> str:
    a, b = {"A": (8, 3), "B": (3, 8), "tie": (5, 5)}[verdict_shown]
    return f"### Evaluation Evidence:\nscripted\n### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"


def copycat(body: dict[str, Any]) -> str:
    """Gives the scripted verdict (item orientation) whatever order the answers are shown in."""
    item, alpha_first = _shown(body)
    verdict = copycat_verdict(item)
    if not alpha_first:
        verdict = {"A": "B", "B": "A", "tie": "tie"}[verdict]
    return _scores(verdict)


def first_wins(body: dict[str, Any]) -> str:
    """Always prefers the answer shown first: pure position bias."""
    return _scores("A")


def kappa_by_hand(human: list[str], judge: list[str], labels: tuple[str, ...] = LABELS) -> float:
    n = len(human)
    p_o = sum(h == j for h, j in zip(human, judge)) / n
    hc, jc = Counter(human), Counter(judge)
    p_e = sum(hc[k] / n * jc[k] / n for k in labels)
    return (p_o - p_e) / (1 - p_e)


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, int]:
    tmp = tmp_path_factory.mktemp("calibrate")
    human_set = write_set(tmp / "human.jsonl")
    rules = [Rule(model="copycat", reply=copycat), Rule(model="firstwins", reply=first_wins)]
    with FakeLLMServer(rules=rules) as server:
        config = CalibrationConfig(
            human_set=str(human_set),
            models=["openai/copycat", "openai/firstwins"],
            api_base=server.base_url,
            orders=["fixed", "both"],
            output_dir=str(tmp / "out"),
            bootstrap=100,
        )
        result = calibrate(config)
        calls = server.stats.calls
    return result.agreement, result.run_dir, calls


def entry(agreement: dict[str, Any], setting_id: str) -> dict[str, Any]:
    return next(e for e in agreement["settings"] if e["setting_id"] == setting_id)


def test_scripted_judge_kappa_matches_the_analytic_value(
    scripted_run: tuple[dict[str, Any], Path, int],
) -> None:
    agreement, _, _ = scripted_run
    human = [human_label(i) for i in range(N_ITEMS)]
    judge = [copycat_verdict(i) for i in range(N_ITEMS)]
    expected = kappa_by_hand(human, judge)
    no_ties = [(h, j) for h, j in zip(human, judge) if h != "tie" and j != "tie"]
    for order in ("fixed", "both"):  # the copycat is order-consistent, so both orders agree with fixed
        e = entry(agreement, f"judge[openai/copycat]/combined10/{order}")
        assert e["kappa"] == pytest.approx(expected, abs=1e-12)
        assert e["kappa_no_ties"] == pytest.approx(
            kappa_by_hand([h for h, _ in no_ties], [j for _, j in no_ties], ("A", "B")), abs=1e-12
        )
        assert e["accuracy"] == pytest.approx(1 - len(MISJUDGED) / N_ITEMS)
        assert (e["n"], e["n_unscored"]) == (N_ITEMS, 0)
        assert e["ci95"][0] <= e["kappa"] <= e["ci95"][1]
        assert e["confusion"]["A"]["B"] == sum(1 for i in MISJUDGED if human_label(i) == "A")
    assert 0.3 < expected < 0.8  # the fixture is neither trivial nor hopeless


def test_position_biased_judge_shows_flips_and_chance_kappa(
    scripted_run: tuple[dict[str, Any], Path, int],
) -> None:
    agreement, _, _ = scripted_run
    both = entry(agreement, "judge[openai/firstwins]/combined10/both")
    position = both["bias"]["position"]
    # Every item flips: A-first says A, B-first says B; the inconsistent pair becomes a tie.
    assert (
        position["flip_rate"] == 1.0 and position["first_position_rate"] == 1.0 and position["n"] == N_ITEMS
    )
    assert both["label_counts"]["judge"]["tie"] == N_ITEMS
    assert both["kappa"] == pytest.approx(0.0, abs=1e-12)  # a constant judge is at chance
    fixed = entry(agreement, "judge[openai/firstwins]/combined10/fixed")
    assert fixed["bias"]["position"] is None  # one order shows nothing about position
    # In fixed order the first answer is always the item's A: kappa of an all-A judge is 0 as well.
    assert fixed["label_counts"]["judge"]["A"] == N_ITEMS and fixed["kappa"] == pytest.approx(0.0, abs=1e-12)
    # The longer answer is always B here: the copycat prefers it exactly when it says B.
    length = entry(agreement, "judge[openai/copycat]/combined10/fixed")["bias"]["length"]
    decisive = [copycat_verdict(i) for i in range(N_ITEMS) if copycat_verdict(i) != "tie"]
    assert length["longer_preferred_rate"] == pytest.approx(decisive.count("B") / len(decisive))


def test_run_folder_ranking_and_calls(scripted_run: tuple[dict[str, Any], Path, int]) -> None:
    agreement, run_dir, calls = scripted_run
    assert [e["rank"] for e in agreement["settings"]] == list(range(1, 5))
    assert agreement["settings"][0]["setting_id"].startswith("judge[openai/copycat]")
    assert agreement["best"] == agreement["settings"][0]["setting_id"]
    assert json.loads((run_dir / "agreement.json").read_text()) == agreement
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    judgments = pl.read_parquet(run_dir / "judgments.parquet")
    assert judgments.height == 4 * N_ITEMS
    # Fixed order ran first, so order=both found its A-first calls in the cache: one new call per item.
    assert calls == 2 * N_ITEMS + 2 * N_ITEMS
    assert agreement["human_ceiling"] is None  # one label per item: no human-human figure
    # The judgments file alone gives the same figures, position bias included, without a model call.
    human = load_human_set(next(run_dir.parent.parent.glob("human.jsonl")))
    rescored = {
        e["setting_id"]: e for e in score_judgments(read_judgments(run_dir / "judgments.parquet"), human)
    }
    for e in agreement["settings"]:
        assert rescored[e["setting_id"]]["kappa"] == e["kappa"]
        assert rescored[e["setting_id"]]["bias"]["position"] == e["bias"]["position"]


def test_expansion_covers_the_papers_57_juries() -> None:
    models = [f"openai/m{i}" for i in range(6)]
    config = CalibrationConfig(
        human_set="pandalm",
        models=models,
        jury_subsets=True,
        protocols=["combined", "direct"],
        scales=[5, 10],
        orders=["fixed", "both"],
        debate=True,
    )
    settings = expand_settings(config)
    ids = [s.setting_id for s in settings]
    assert len(ids) == len(set(ids))
    per_variant = {("combined", 5), ("combined", 10), ("direct", 10)}  # scales only multiply combined
    assert {(s.protocol, s.scale) for s in settings if s.kind == "judge"} == per_variant
    juries = [s for s in settings if s.kind == "jury" and s.order == "fixed" and s.protocol == "direct"]
    assert len(juries) == 57 and {len(j.models) for j in juries} == {2, 3, 4, 5, 6}
    assert sum(s.kind == "debate" for s in settings) == 6 * 2
    assert len(settings) == 2 * (3 * (6 + 57) + 6)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_flag_form_with_jury_subsets_and_rescoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    human_set = write_set(tmp_path / "human.jsonl")
    rules = [Rule(model="copycat", reply=copycat), Rule(model="firstwins", reply=first_wins)]
    with FakeLLMServer(rules=rules) as server:
        args = [
            "calibrate",
            "--human-set",
            str(human_set),
            "--judge-model",
            "openai/copycat,openai/firstwins",
            "--api-base",
            server.base_url,
            "--protocol",
            "combined",
            "--scale",
            "10",
            "--order",
            "fixed",
            "--jury-subsets",
            "--output",
            "json",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--bootstrap",
            "50",
        ]
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        first_calls = server.stats.calls
        code, again, err = run_cli(args, capsys)  # the request cache in --out makes a rerun free
        assert code == 0, err
        assert server.stats.calls == first_calls == 2 * N_ITEMS  # the jury made no call of its own
    agreement = json.loads(out)
    settings = {e["setting_id"]: e for e in agreement["settings"]}
    assert set(settings) == {
        "judge[openai/copycat]/combined10/fixed",
        "judge[openai/firstwins]/combined10/fixed",
        "jury[openai/copycat+openai/firstwins]/combined10/fixed/plurality",
    }
    jury = settings["jury[openai/copycat+openai/firstwins]/combined10/fixed/plurality"]
    for e in settings.values():
        assert {
            "models",
            "kind",
            "protocol",
            "scale",
            "order",
            "kappa",
            "kappa_no_ties",
            "accuracy",
            "n",
            "n_unscored",
            "ci95",
            "confusion",
            "bias",
            "cost",
        } <= set(e)
    assert jury["kind"] == "jury" and jury["models"] == ["openai/copycat", "openai/firstwins"]
    # Two jurors: agreement stands, any split is a tie.
    expected = ["A" if copycat_verdict(i) == "A" else "tie" for i in range(N_ITEMS)]
    assert jury["kappa"] == pytest.approx(kappa_by_hand([human_label(i) for i in range(N_ITEMS)], expected))
    assert jury["jurors"]["jurors"] == ["openai/copycat", "openai/firstwins"]
    assert jury["jurors"]["krippendorff_alpha"] is not None and len(jury["jurors"]["inter_juror_kappas"]) == 1
    assert [e["kappa"] for e in json.loads(again)["settings"]] == [e["kappa"] for e in agreement["settings"]]

    # Score the judgments just made again, from the file alone: no server, no model call.
    judgments = next((tmp_path / "out").glob("calibrate-*/judgments.parquet"))
    code, out, err = run_cli(
        [
            "calibrate",
            "--human-set",
            str(human_set),
            "--judgments",
            str(judgments),
            "--output",
            "json",
            "--out",
            str(tmp_path / "rescore"),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    rescored = {e["setting_id"]: e["kappa"] for e in json.loads(out)["settings"]}
    assert rescored == {k: v["kappa"] for k, v in settings.items()}
    assert not (tmp_path / "rescore" / "cache.sqlite").exists()


def test_text_output_is_a_ranked_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    judgments = tmp_path / "j.jsonl"
    judgments.write_text(
        "".join(
            json.dumps({"item_id": f"q{i}", "verdict": copycat_verdict(i), "judge_id": "mine"}) + "\n"
            for i in range(N_ITEMS)
        )
    )
    code, out, err = run_cli(
        [
            "calibrate",
            "--human-set",
            str(write_set(tmp_path / "h.jsonl")),
            "--judgments",
            str(judgments),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    human = [human_label(i) for i in range(N_ITEMS)]
    assert f"{kappa_by_hand(human, [copycat_verdict(i) for i in range(N_ITEMS)]):.3f}" in out
    assert "mine" in out and "report: " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["calibrate", "--judge-model", "openai/x"], "--human-set"),
        (
            ["calibrate", "--human-set", "pandalm", "--judge-model", "openai/x", "--order", "sideways"],
            "orders",
        ),
        (["calibrate", "--human-set", "no-such-set.jsonl", "--judge-model", "openai/x"], "no-such-set"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run_cli([*args, "--out", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


def test_judgments_that_match_no_item_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    judgments = tmp_path / "j.jsonl"
    judgments.write_text(json.dumps({"item_id": "elsewhere-1", "verdict": "A"}) + "\n")
    code, _, err = run_cli(
        [
            "calibrate",
            "--human-set",
            str(write_set(tmp_path / "h.jsonl")),
            "--judgments",
            str(judgments),
            "--out",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert code == 2 and "no judgment item_id matches" in err


def test_config_file_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_set(tmp_path / "human.jsonl")
    with FakeLLMServer(rules=[Rule(model="copycat", reply=copycat)]) as server:
        (tmp_path / "cal.yaml").write_text(
            f"human_set: human.jsonl\nhuman_set_limit: 10\nmodels: [openai/copycat]\napi_base: {server.base_url}\n"
            "protocols: [combined]\norders: [fixed]\nbootstrap: 20\n"
        )
        code, out, err = run_cli(
            [
                "calibrate",
                str(tmp_path / "cal.yaml"),
                "--out",
                str(tmp_path / "out"),
                "--output",
                "json",
                "--quiet",
            ],
            capsys,
        )
    assert code == 0, err
    agreement = json.loads(out)
    assert agreement["human_set"]["n_items"] == 10
    # The limit draws a stratified sample (recorded), not the first ten items.
    items = [int(item_id[1:]) for item_id in agreement["sample"]["item_ids"]]
    assert len(items) == 10 and agreement["sample"]["seed"] == 0
    assert agreement["settings"][0]["kappa"] == pytest.approx(
        kappa_by_hand([human_label(i) for i in items], [copycat_verdict(i) for i in items])
    )


def test_pandalm_human_ceiling_is_recomputed(shared_data: Path) -> None:
    from judges.humans.human_sets import load_human_set
    from judges.metrics.scoring import human_ceiling

    ceiling = human_ceiling(load_human_set("pandalm", data_dir=shared_data))
    assert ceiling is not None
    kappas = {(p["a"], p["b"]): round(p["kappa"], 3) for p in ceiling["pairwise"]}
    assert kappas == {
        ("annotator1", "annotator2"): 0.852,
        ("annotator1", "annotator3"): 0.879,
        ("annotator2", "annotator3"): 0.862,
    }
    assert round(ceiling["fleiss_kappa"], 3) == 0.864 and ceiling["n_items_complete"] == 999
