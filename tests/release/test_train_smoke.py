"""Trainer hand-off (factory.release.train.trainer): TRL DPO, KTO and RDPO consume the written dataset as-is (CPU smoke)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from factory._util.atomic_files import atomic_write_json
from factory._util.errors import UserError
from factory._util.json_columns import rows_frame
from factory.cli import main
from factory.config import parse_config
from factory.dataset.writer import write_dataset
from factory.release.train.trainer import check_gate, train
from factory.run.folder import RunFolder


def pair(i: int) -> dict[str, Any]:
    return {
        "pair_id": f"pair{i}",
        "prompt_id": f"p{i}",
        "prompt": f"Add {i} and {i}.",
        "turns": [f"Add {i} and {i}."],
        "chosen": f"{i} + {i} = {2 * i}.",
        "rejected": "I am not sure.",
        "chosen_id": f"p{i}:c1",
        "rejected_id": f"p{i}:c2",
        "chosen_model": "m1",
        "rejected_model": "m2",
        "margin": 4.0,
        "votes": ["A"],
        "judge_id": "judge[judge]/combined10/fixed",
        "source": "judged",
        "rationale": "It does the sum and gives the right number.",
        "rationale_status": "verified",
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    config = parse_config(
        {
            "run": {"output_dir": str(root)},
            "models": {r: {"model": "openai/x"} for r in ("generator", "judge", "rationale_writer")},
            "prompts": {"path": "p.jsonl"},
            "dataset": {"test_fraction": 0.25},
        }
    )
    run = RunFolder.create(root, "smoke")
    manifest = {"gate": {"passed": True, "kappa": 0.7}}
    counts = write_dataset(
        run,
        config,
        {"pairs": rows_frame([pair(i) for i in range(8)]), "mapl_intra": pl.DataFrame()},
        manifest,
    )
    atomic_write_json(run.manifest_path, {**manifest, "counts": {"dataset": counts}})
    return run.root


@pytest.mark.parametrize("loss", ["dpo", "kto", "rdpo"])
def test_smoke_training_consumes_the_dataset(run_dir: Path, loss: str) -> None:
    result = train(run_dir, loss=loss, smoke=True)  # type: ignore[arg-type]
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]["dataset"]
    prefix = "kto" if loss == "kto" else "dpo"
    assert result.steps == 2 and result.device == "cpu" and result.gate == "passed"
    assert (result.train_rows, result.test_rows) == (counts[f"{prefix}_train"], counts[f"{prefix}_test"])
    assert result.train_loss is not None and math.isfinite(result.train_loss)
    # The dpo test split was scored before and after (KTO included: its implicit reward is the same).
    assert result.evaluation is not None and result.evaluation["pairs"] == counts["dpo_test"]
    assert result.evaluation["before"]["reward_accuracy"] == 0.5  # policy = reference: every margin is 0
    assert all(math.isfinite(v) for side in ("before", "after") for v in result.evaluation[side].values())
    if loss == "rdpo":
        # The rationale term is on: log p(rationale) < 0, so -log sigmoid(gamma * log p) > log 2.
        assert result.metrics["rationale/logps"] < 0 and result.metrics["rationale/loss"] > math.log(2)
    saved = json.loads((Path(result.output_dir) / "train_result.json").read_text())
    assert saved["steps"] == 2 and saved["loss"] == loss
    assert json.loads((Path(result.output_dir) / "eval.json").read_text())["pairs"] == counts["dpo_test"]


def test_gate_refusals(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "manifest.json", {"gate": {"passed": False}})
    with pytest.raises(UserError, match="quality gate did not pass"):
        check_gate(tmp_path, force=False)
    assert check_gate(tmp_path, force=True).startswith("forced")
    atomic_write_json(tmp_path / "manifest.json", {"counts": {}})
    with pytest.raises(UserError, match="no quality gate result"):
        check_gate(tmp_path, force=False)


def test_cli_refuses_an_unapproved_dataset(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unapproved = tmp_path / "run"
    (unapproved / "dataset").mkdir(parents=True)
    atomic_write_json(unapproved / "manifest.json", {"gate": {"passed": False, "kappa": 0.1}})
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(unapproved), "--smoke"])
    assert exit_info.value.code == 2
    assert "quality gate did not pass" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(run_dir), "--loss", "ppo", "--smoke"])
    assert exit_info.value.code == 2


def test_dry_run_prints_the_accelerate_launch_and_writes_nothing(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "train",
            str(run_dir),
            "--model",
            "local/smollm2",
            "--lora",
            "--gpus",
            "4",
            "--strategy",
            "fsdp",
            "--machines",
            "2",
            "--machine-rank",
            "1",
            "--main-ip",
            "10.0.0.1",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    folder = run_dir / "training" / "dpo"
    command = out.split("# would run:\n", 1)[1].strip()
    assert command.split()[1:] == [
        "launch",
        "--config_file",
        str(folder / "accelerate.yaml"),
        "-m",
        "factory.release.train.worker",
        str(folder / "train_spec.json"),
    ]
    config = yaml.safe_load(out.split(":\n", 1)[1].split("# would write", 1)[0])
    assert (config["distributed_type"], config["num_processes"], config["num_machines"]) == ("FSDP", 8, 2)
    assert (config["machine_rank"], config["main_process_ip"]) == (1, "10.0.0.1")
    assert config["fsdp_config"]["fsdp_version"] == 2
    spec = json.loads(out.split("train_spec.json:\n", 1)[1].split("# would run", 1)[0])
    assert spec["lora"] is True and spec["model"] == "local/smollm2"
    assert not folder.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--smoke", "--machines", "2"], "needs --main-ip"),
        (["--smoke", "--strategy", "zero3"], "unknown --strategy"),
        (["--model", "./no/such/folder"], "model folder not found"),
        (["--model", "local/llama3"], "unknown embedded model"),
    ],
)
def test_cli_refuses_a_launch_that_cannot_work(
    run_dir: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(run_dir), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(run_dir.glob("training/dpo*/accelerate.yaml"))  # refused before anything was written


def test_cli_trains_through_accelerate_launch(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["train", str(run_dir), "--smoke", "--loss", "rdpo"])
    folder = run_dir / "training" / "rdpo-smoke"
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(folder)
    config = yaml.safe_load((folder / "accelerate.yaml").read_text())
    assert config["num_processes"] == 1 and config["distributed_type"] in ("NO", "MULTI_GPU")
    spec = json.loads((folder / "train_spec.json").read_text())
    assert spec["loss"] == "rdpo" and spec["smoke"] is True
    result = json.loads((folder / "train_result.json").read_text())  # written by the launched worker
    assert result["steps"] == 2 and result["processes"] == 1


def test_training_check_goes_into_the_card_once_and_the_card_still_publishes(run_dir: Path) -> None:
    from factory.release.publish import check_card
    from factory.release.train.report import record_training_check

    card = run_dir / "dataset" / "README.md"
    before = card.read_text()
    for sentence in ("first run: accuracy 0.6", "second run: accuracy 0.7"):
        assert card in record_training_check(run_dir, sentence)
    text = card.read_text()
    assert text.count("## Training check") == 1 and "second run" in text and "first run" not in text
    assert text.index("## Training check") < text.index("## Use")
    assert text.split("## Training check")[0].startswith(before.split("## Use")[0].rstrip())
    files = [str(p.relative_to(card.parent)) for p in card.parent.rglob("*.parquet")]
    check_card(card.parent, files)  # YAML, configs and their data sha256 untouched
    card.write_text(before)


def test_preference_metrics_follow_the_implicit_reward() -> None:
    from factory.release.train.evaluate import PairScores, preference_metrics

    ref = PairScores(
        chosen_logps=[-10.0, -10.0, -10.0],
        rejected_logps=[-10.0, -10.0, -10.0],
        chosen_tokens=[5, 5, 5],
        rejected_tokens=[5, 5, 5],
    )
    # pair 0: chosen up, rejected down; pair 1: the reverse; pair 2: both up by the same amount (a tie)
    policy = PairScores(
        chosen_logps=[-8.0, -12.0, -9.0],
        rejected_logps=[-12.0, -8.0, -9.0],
        chosen_tokens=[5, 5, 5],
        rejected_tokens=[5, 5, 5],
    )
    summary = preference_metrics(ref, policy, beta=0.5)
    assert summary["before"]["reward_accuracy"] == 0.5 and summary["before"]["reward_margin"] == 0.0
    after = summary["after"]
    assert after["reward_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3, abs=1e-4)
    assert after["reward_margin"] == pytest.approx((0.5 * 4 - 0.5 * 4 + 0) / 3, abs=1e-6)
    assert after["reward_chosen"] == pytest.approx(0.5 * (2 - 2 + 1) / 3, abs=1e-6)
    assert after["dpo_loss"] == pytest.approx(
        (math.log1p(math.exp(-2)) + math.log1p(math.exp(2)) + math.log(2)) / 3, abs=1e-5
    )
