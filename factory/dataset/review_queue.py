"""Contested pairs to people, and people's labels back into the pairs.

At the end of a build, the judged pairs that the judge was least sure of go to a review queue
(`review_queue.parquet` in the run folder), under `review` in the config:

* `split`: the jurors (or the two orders of `order: both`, or a listwise judge's calls) voted differently;
* `flipped`: the verdict changed when the answers swapped places (pairs kept with `keep_inconsistent`);
* `max_margin`: the margin is at most this (judge points; set it to queue close calls).

`factory annotate RUN` serves the queue first (in the judge's orientation: A = chosen), then the
rest of the pairs. Labels go to `RUN/human_labels.jsonl`. Every finalize of the run reads them
(the build's own, `factory build --resume`, and `factory annotate RUN --apply`, which calls no
model, see `factory.pipeline.review_apply`), and per pair the annotators' majority decides:

* `A` (people agree with the judge): the pair stays, `decided_by: human`;
* `B` (people prefer the rejected answer): chosen and rejected swap, the votes are turned with them,
  the rationale (which argued for the judge's choice) and the judge's margin are cleared;
* `tie` (or annotators who do not agree): the pair is removed.

Each reviewed pair's provenance gets `human` (`decided_by`, `label`, `annotators`, `time`,
`judge_label`), the labelled rows are written as a canonical calibration file
(`RUN/human_calibration.jsonl`, usable as `gate.human_set` or by `factory calibrate`), and the
manifest's `review` says how many pairs were queued, reviewed, kept, flipped and dropped, and how
often the judge and each juror agreed with the people.

The judge's pairs (the `rationales` stage files) are never rewritten: `pairs.parquet` and the dataset
are derived from them plus the labels, so a label can be undone and applied again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.atomic_files import atomic_write_parquet
from factory._util.json_columns import dumps, load_json
from factory.config import ReviewSettings
from factory.dataset.shard_parts import DatasetSources, Part
from factory.run.folder import RunFolder

Row = dict[str, Any]
QUEUE_FILE = "review_queue.parquet"
LABELS_FILE = "human_labels.jsonl"
CALIBRATION_FILE = "human_calibration.jsonl"
_SWAP = {"A": "B", "B": "A"}


def _swapped(verdict: Any) -> Any:
    """A vote's verdict as seen from the other answer ('tie' and unscored votes stay as they are)."""
    return _SWAP.get(verdict, verdict) if isinstance(verdict, str) else verdict


# Columns the overlay reads or rewrites, loaded whatever a caller asked for.
_OVERLAY_COLUMNS = (
    "pair_id",
    "chosen",
    "rejected",
    "chosen_id",
    "rejected_id",
    "chosen_model",
    "rejected_model",
    "margin",
    "votes",
    "rationale",
    "provenance",
)


def contested_reasons(pair: Mapping[str, Any], settings: ReviewSettings) -> list[str]:
    """Why a judged pair needs a person: `split`, `flipped`, `small_margin` (none: the judge was sure)."""
    reasons = []
    votes = [v.get("verdict") if isinstance(v, dict) else v for v in load_json(pair.get("votes")) or []]
    scored = [v for v in votes if v in ("A", "B", "tie")]
    if settings.split and len(set(scored)) > 1:
        reasons.append("split")
    if settings.flipped and bool(pair.get("flipped")):
        reasons.append("flipped")
    margin = pair.get("margin")
    if settings.max_margin is not None and margin is not None and abs(float(margin)) <= settings.max_margin:
        reasons.append("small_margin")
    return reasons


def judge_pairs(run: RunFolder) -> pl.DataFrame:
    """The judged pairs as the judge cut them (the `rationales` stage files, before any human label)."""
    scan = run.scan_stage("rationales")
    return scan.collect() if scan is not None else pl.DataFrame()


def write_queue(run: RunFolder, settings: ReviewSettings, pairs: pl.DataFrame) -> pl.DataFrame:
    """Write `review_queue.parquet`: the contested pairs (judge's orientation) with their `reasons`."""
    rows = []
    for pair in pairs.iter_rows(named=True) if pairs.height else []:
        reasons = contested_reasons(pair, settings)
        if reasons:
            rows.append(
                {
                    "pair_id": pair["pair_id"],
                    "prompt_id": pair["prompt_id"],
                    "prompt": pair["prompt"],
                    "chosen": pair["chosen"],
                    "rejected": pair["rejected"],
                    "votes": pair.get("votes"),
                    "flipped": pair.get("flipped"),
                    "margin": pair.get("margin"),
                    "reasons": dumps(reasons),
                }
            )
    schema = {
        "pair_id": pl.Utf8,
        "prompt_id": pl.Utf8,
        "prompt": pl.Utf8,
        "chosen": pl.Utf8,
        "rejected": pl.Utf8,
        "votes": pl.Utf8,
        "flipped": pl.Boolean,
        "margin": pl.Float64,
        "reasons": pl.Utf8,
    }
    queue = pl.DataFrame(rows, schema=schema)
    atomic_write_parquet(run.root / QUEUE_FILE, queue)
    return queue


def queued_ids(run_dir: Path) -> list[str]:
    """The pair ids of a run's review queue, in queue-file order (empty when there is none)."""
    path = Path(run_dir) / QUEUE_FILE
    if not path.is_file():
        return []
    return [str(x) for x in pl.read_parquet(path, columns=["pair_id"])["pair_id"].to_list()]


@dataclass(frozen=True)
class Decision:
    """What the people said about one pair (labels in the judge's orientation: A = the judge's chosen)."""

    label: str  # "A", "B" or "tie" (also when the annotators did not agree)
    annotators: tuple[str, ...]
    labels: tuple[str, ...]
    time: str | None

    @property
    def provenance(self) -> Row:
        return {
            "decided_by": "human",
            "label": self.label,
            "annotators": list(self.annotators),
            "labels": list(self.labels),
            "time": self.time,
            "judge_label": "A",
        }


def decisions(run_dir: Path) -> dict[str, Decision]:
    """Pair id -> the people's decision, from `RUN/human_labels.jsonl` (none: an empty dict).

    The majority label wins; without a strict majority the pair counts as a tie (people disagree, so
    it is not a clear preference)."""
    from factory.annotate.store import fold

    path = Path(run_dir) / LABELS_FILE
    if not path.is_file():
        return {}
    out = {}
    for row in fold(path).rows():
        entries = row["labels"]
        counts = Counter(e["label"] for e in entries)
        label, top = counts.most_common(1)[0]
        if top * 2 <= len(entries):
            label = "tie"
        out[row["id"]] = Decision(
            label,
            tuple(str(e["annotator"]) for e in entries),
            tuple(str(e["label"]) for e in entries),
            max((str(e.get("time")) for e in entries if e.get("time")), default=None),
        )
    return out


def overlay(frame: pl.DataFrame, by_pair: Mapping[str, Decision]) -> pl.DataFrame:
    """`frame`'s pair rows with the people's decisions applied (see the module doc); other rows unchanged.

    Adds `decided_by` ("human" on reviewed rows). Row order is kept, removed rows aside."""
    if frame.height == 0 or "pair_id" not in frame.columns or not by_pair:
        return frame
    out = []
    for row in frame.iter_rows(named=True):
        decision = by_pair.get(row["pair_id"])
        if decision is None:
            out.append({**row, "decided_by": None})
            continue
        if decision.label == "tie":
            continue
        row = dict(row)
        provenance = load_json(row.get("provenance")) if "provenance" in row else None
        human = {**decision.provenance, "judge_margin": row.get("margin")}
        if decision.label == "B":
            for a, b in (
                ("chosen", "rejected"),
                ("chosen_id", "rejected_id"),
                ("chosen_model", "rejected_model"),
            ):
                if a in row and b in row:
                    row[a], row[b] = row[b], row[a]
            if "votes" in row:
                votes = load_json(row["votes"]) or []
                turned = [
                    {**v, "verdict": _swapped(v.get("verdict"))} if isinstance(v, dict) else _swapped(v)
                    for v in votes
                ]
                row["votes"] = dumps(turned)
            if "margin" in row:
                row["margin"] = None  # the judge's margin was for the other answer
            if "rationale" in row:
                row["rationale"] = None  # it argued for the judge's choice; writing a new one needs a model
                human["rationale_cleared"] = True
        if isinstance(provenance, dict):
            row["provenance"] = dumps({**provenance, "human": human})
        row["decided_by"] = "human"
        out.append(row)
    schema = pl.Schema(frame.schema)
    schema["decided_by"] = pl.String()
    return pl.DataFrame(out, schema=schema)


def reviewed_sources(sources: DatasetSources, by_pair: Mapping[str, Decision]) -> DatasetSources:
    """The dataset's sources with the people's decisions applied to every pairs part as it loads."""
    if not by_pair:
        return sources

    def wrap(part: Part) -> Part:
        def load(columns: list[str] | None) -> pl.DataFrame:
            wanted = None if columns is None else list(dict.fromkeys([*columns, *_OVERLAY_COLUMNS]))
            frame = overlay(part.load(wanted), by_pair)
            return frame if columns is None else frame.select([c for c in columns if c in frame.columns])

        return Part(part.shard, load)

    return DatasetSources([wrap(p) for p in sources.pairs], sources.intra)


def summary(queue: pl.DataFrame, pairs: pl.DataFrame, by_pair: Mapping[str, Decision]) -> Row:
    """The manifest's `review`: queued / reviewed / kept / flipped / dropped, and agreement with people."""
    judged = {r["pair_id"]: r for r in pairs.iter_rows(named=True)} if pairs.height else {}
    reviewed = {pid: d for pid, d in by_pair.items() if pid in judged}
    queued = set(queue["pair_id"].to_list()) if queue.height else set()
    labels = Counter(d.label for d in reviewed.values())
    jurors: dict[str, list[bool]] = {}
    for pid, decision in reviewed.items():
        if decision.label == "tie":
            continue
        for k, vote in enumerate(load_json(judged[pid].get("votes")) or []):
            verdict = vote.get("verdict") if isinstance(vote, dict) else vote
            if verdict in ("A", "B", "tie"):
                jurors.setdefault(f"vote_{k + 1}", []).append(verdict == decision.label)
    return {
        "queued": len(queued),
        "reasons": dict(Counter(r for rs in queue["reasons"].to_list() for r in load_json(rs)))
        if queue.height
        else {},
        "reviewed": len(reviewed),
        "reviewed_in_queue": len(set(reviewed) & queued),
        "kept": labels["A"],
        "flipped": labels["B"],
        "dropped": labels["tie"],
        "judge_agreement": round(labels["A"] / len(reviewed), 4) if reviewed else None,
        "vote_agreement": {k: round(sum(v) / len(v), 4) for k, v in sorted(jurors.items())},
        "labels_file": LABELS_FILE if by_pair else None,
        "calibration_file": CALIBRATION_FILE if reviewed else None,
    }


def gate_figures(review: Mapping[str, Any] | None) -> Row:
    """What the quality gate reports from the run's own labels (figures only: the reviewed pairs are the
    contested ones, so their agreement is low by design and is no threshold)."""
    if not review or not review.get("reviewed"):
        return {}
    return {"review_n": review["reviewed"], "review_judge_agreement": review["judge_agreement"]}


def apply_reviews(run: RunFolder, settings: ReviewSettings) -> tuple[Row, dict[str, Decision]]:
    """The review step of a finalize, after the tables are merged: write the queue from the judge's pairs,
    apply the labels to `pairs.parquet`, write the calibration file; return (the manifest's `review`,
    the decisions, for `reviewed_sources`). Calls no model."""
    judged = judge_pairs(run)
    queue = write_queue(run, settings, judged)
    by_pair = decisions(run.root)
    if by_pair:
        table = run.table("pairs")
        atomic_write_parquet(table, overlay(pl.read_parquet(table), by_pair))
        _write_calibration(run, by_pair)
    return summary(queue, judged, by_pair), by_pair


def _write_calibration(run: RunFolder, by_pair: Mapping[str, Decision]) -> None:
    """The labelled pairs as canonical calibration rows (A = the judge's chosen), current labels only."""
    from factory.annotate.store import fold_labels, write_jsonl

    rows = [r for r in fold_labels(run.root / LABELS_FILE) if r["id"] in by_pair]
    write_jsonl(rows, run.root / CALIBRATION_FILE)


def card_section(review: Mapping[str, Any] | None) -> str:
    """The dataset card's "Human review" paragraph."""
    if not review:
        return "No review step ran for this build."
    queued = (
        f"{review['queued']} contested pairs were queued for people "
        f"({', '.join(f'{n} {why}' for why, n in sorted(review.get('reasons', {}).items())) or 'none'})."
    )
    if not review.get("reviewed"):
        return f"{queued} None has been labelled yet: every pair is as the judge decided it (`decided_by` judge)."
    agreement = review.get("judge_agreement")
    return (
        f"{queued} People labelled {review['reviewed']} pairs ({review['reviewed_in_queue']} from the queue): "
        f"{review['kept']} kept as the judge chose, {review['flipped']} flipped (chosen and rejected swapped, "
        f"judge margin and rationale cleared), {review['dropped']} dropped (tie or no majority). The judge agreed "
        f"with people on {agreement:.0%} of the reviewed pairs, which are the contested ones. Rows people "
        "decided carry `decided_by` human."
    )
