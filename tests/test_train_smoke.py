"""Trainer hand-off (factory.train): TRL DPO, KTO and RDPO consume the written dataset as-is (CPU smoke)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory.cli import main
from factory.config import parse_config
from factory.dataset import write_dataset
from factory.errors import UserError
from factory.run_folder import RunFolder, atomic_write_json, rows_frame
from factory.train import check_gate, train


def pair(i: int) -> dict[str, Any]:
    return {"pair_id": f"pair{i}", "prompt_id": f"p{i}", "prompt": f"Add {i} and {i}.", "turns": [f"Add {i} and {i}."],
            "chosen": f"{i} + {i} = {2 * i}.", "rejected": "I am not sure.", "chosen_id": f"p{i}:c1",
            "rejected_id": f"p{i}:c2", "chosen_model": "m1", "rejected_model": "m2", "margin": 4.0, "votes": ["A"],
            "judge_id": "judge[judge]/combined10/fixed", "source": "judged",
            "rationale": "It does the sum and gives the right number.", "rationale_status": "verified"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    config = parse_config({"run": {"output_dir": str(root)}, "models": {r: {"model": "openai/x"} for r in
                           ("generator", "judge", "rationale_writer")}, "prompts": {"path": "p.jsonl"},
                           "dataset": {"test_fraction": 0.25}})
    run = RunFolder.create(root, "smoke")
    manifest = {"gate": {"passed": True, "kappa": 0.7}}
    counts = write_dataset(run, config, {"pairs": rows_frame([pair(i) for i in range(8)]),
                                         "mapl_intra": pl.DataFrame()}, manifest)
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
    assert math.isfinite(result.metrics["eval_loss"])  # the test split went through the trainer too
    if loss == "rdpo":
        # The rationale term is on: log p(rationale) < 0, so -log sigmoid(gamma * log p) > log 2.
        assert result.metrics["rationale/logps"] < 0 and result.metrics["rationale/loss"] > math.log(2)
    saved = json.loads((Path(result.output_dir) / "train_result.json").read_text())
    assert saved["steps"] == 2 and saved["loss"] == loss


def test_gate_refusals(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "manifest.json", {"gate": {"passed": False}})
    with pytest.raises(UserError, match="quality gate did not pass"):
        check_gate(tmp_path, force=False)
    assert check_gate(tmp_path, force=True).startswith("forced")
    atomic_write_json(tmp_path / "manifest.json", {"counts": {}})
    with pytest.raises(UserError, match="no quality gate result"):
        check_gate(tmp_path, force=False)


def test_cli_refuses_an_unapproved_dataset(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
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
