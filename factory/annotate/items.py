"""What an annotator labels: one prompt and two responses, loaded from a run folder or a calibration file.

Two sources are accepted:

* a build run folder (or its ``pairs.parquet``): item = ``pair_id``, ``prompt``, ``chosen`` as
  ``response_a``, ``rejected`` as ``response_b``, plus the jury's ``votes`` / ``flipped`` / ``margin``
  when present (they decide which items are worth a human's time first, see ``queue.py``); a run
  folder's pairs are read as the judge cut them (its stage files), before any human label was applied;
* a calibration file in the canonical format (jsonl or a JSON list): ``id``, ``prompt``,
  ``response_a``, ``response_b``; any ``label``/``labels`` already there are ignored, so that a set can
  be labelled again by someone else without seeing earlier answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory._util.errors import UserError

VERDICTS = ("A", "B", "tie")


@dataclass(frozen=True)
class Item:
    """One comparison, always in its own orientation (A = ``response_a``), whatever is shown on screen.

    Example: ``Item(id="p1", prompt="2+2?", response_a="4", response_b="5")``
    """

    id: str
    prompt: str
    response_a: str
    response_b: str
    votes: tuple[str, ...] | None = None
    """The jurors' scored verdicts (``A``/``B``/``tie``); unscored jurors are left out."""
    flipped: bool | None = None
    """True when the judge's verdict changed under an order swap."""
    margin: float | None = None
    """The jury's margin for this pair; only its size is used (larger = clearer)."""

    @property
    def has_jury_info(self) -> bool:
        return self.votes is not None or self.flipped is not None or self.margin is not None

    @property
    def contested(self) -> bool:
        """Jurors disagree, or the verdict flipped with the order: where humans are most informative."""
        return bool(self.flipped) or (self.votes is not None and len(set(self.votes)) > 1)

    @property
    def abs_margin(self) -> float | None:
        """The margin's size, or one derived from the votes (|#A - #B| / #votes) when none was stored."""
        if self.margin is not None:
            return abs(self.margin)
        if self.votes:
            return abs(self.votes.count("A") - self.votes.count("B")) / len(self.votes)
        return None


def load_items(source: Path) -> list[Item]:
    """Read the items of a run folder, a ``pairs.parquet`` or a canonical calibration file.

    Raises ``UserError`` naming the file and the problem (missing file, missing column, duplicate id).
    Example: ``load_items(Path("outputs/run-1"))``
    """
    source = Path(source)
    if source.is_dir():
        pairs = source / "pairs.parquet"
        if not pairs.is_file():
            raise UserError(
                f"{source} is a folder without pairs.parquet; pass a build run folder or a .jsonl file"
            )
        judged = _judge_orientation(source)
        return _check_unique(
            _from_frame(judged if judged is not None else _read_parquet(pairs), pairs), pairs
        )
    if not source.is_file():
        raise UserError(f"{source} does not exist")
    if source.suffix == ".parquet":
        return _check_unique(_from_parquet(source), source)
    if source.suffix in (".jsonl", ".json"):
        return _check_unique(_from_canonical(_read_json_rows(source), source), source)
    raise UserError(f"{source}: expected a run folder, pairs.parquet, .jsonl or .json file")


def default_labels_path(source: Path) -> Path:
    """``<run_dir>/human_labels.jsonl`` for a run folder, else ``<stem>.labels.jsonl`` beside the file."""
    source = Path(source)
    if source.is_dir():
        return source / "human_labels.jsonl"
    if source.name == "pairs.parquet":
        return source.parent / "human_labels.jsonl"
    return source.with_name(f"{source.stem}.labels.jsonl")


def as_text(value: Any) -> str:
    """Text to show for a prompt or response that may be a string or a list of chat turns."""
    if isinstance(value, str):
        stripped = value.lstrip()
        # pairs.parquet may hold conversational prompts as JSON text; only a real turn list is unpacked
        if stripped.startswith("[{"):
            try:
                turns = json.loads(value)
            except ValueError:
                return value
            if _is_turn_list(turns):
                return _turns_text(turns)
        return value
    if _is_turn_list(value):
        return _turns_text(value)
    if value is None:
        return ""
    return str(value)


def _is_turn_list(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(t, dict) and "content" in t for t in value)
    )


def _turns_text(turns: Iterable[dict[str, Any]]) -> str:
    turns = list(turns)
    if len(turns) == 1:
        return str(turns[0]["content"])
    return "\n\n".join(f"[{t.get('role', 'user')}]\n{t['content']}" for t in turns)


def _read_json_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of items")
        return rows
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise UserError(f"{path} line {n}: not valid JSON ({e})") from e
    return rows


def _from_canonical(rows: Sequence[Any], path: Path) -> list[Item]:
    items = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise UserError(f"{path} row {n}: expected an object with id, prompt, response_a, response_b")
        missing = [k for k in ("id", "prompt", "response_a", "response_b") if k not in row]
        if missing:
            raise UserError(f"{path} row {n}: missing {', '.join(missing)}")
        items.append(
            Item(
                id=str(row["id"]),
                prompt=as_text(row["prompt"]),
                response_a=as_text(row["response_a"]),
                response_b=as_text(row["response_b"]),
            )
        )
    return items


def _read_parquet(path: Path) -> Any:
    import polars as pl  # deferred: polars costs import time and canonical files do not need it

    return pl.read_parquet(path)


def _judge_orientation(run_dir: Path) -> Any:
    """A build run's pairs as the judge cut them (its stage files), or None for a folder without them.

    `pairs.parquet` already carries earlier human labels (a pair people flipped has chosen and rejected
    swapped), so labels must be given, and read back, against the judge's pairs."""
    from factory.run.folder import RunFolder
    from factory.run.tables import pair_sources

    frame = pair_sources(RunFolder(run_dir))["pairs"]
    return frame.collect() if frame is not None else None


def _from_parquet(path: Path) -> list[Item]:
    return _from_frame(_read_parquet(path), path)


def _from_frame(df: Any, path: Path) -> list[Item]:
    if {"pair_id", "chosen", "rejected"} <= set(df.columns):
        id_col, a_col, b_col = "pair_id", "chosen", "rejected"
    elif {"id", "response_a", "response_b"} <= set(df.columns):
        id_col, a_col, b_col = "id", "response_a", "response_b"
    else:
        raise UserError(
            f"{path}: expected columns pair_id, prompt, chosen, rejected; got {', '.join(df.columns)}"
        )
    if "prompt" not in df.columns:
        raise UserError(f"{path}: missing column prompt")
    items = []
    for row in df.iter_rows(named=True):
        margin = row.get("margin")
        items.append(
            Item(
                id=str(row[id_col]),
                prompt=as_text(row["prompt"]),
                response_a=as_text(row[a_col]),
                response_b=as_text(row[b_col]),
                votes=parse_votes(row.get("votes")),
                flipped=row.get("flipped"),
                margin=float(margin) if margin is not None else None,
            )
        )
    return items


def parse_votes(raw: Any) -> tuple[str, ...] | None:
    """Juror verdicts from the ``votes`` JSON: a list of verdicts or of ``{"verdict": ...}`` objects, or a
    ``{judge: verdict}`` map. Unscored jurors (``None`` or an unknown verdict) are dropped, not guessed."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, dict):
        raw = list(raw.values())
    if not isinstance(raw, list):
        return None
    verdicts = []
    for vote in raw:
        verdict = vote.get("verdict") if isinstance(vote, dict) else vote
        if isinstance(verdict, str) and verdict.strip().lower() in ("a", "b", "tie"):
            verdicts.append("tie" if verdict.strip().lower() == "tie" else verdict.strip().upper())
    return tuple(verdicts)


def _check_unique(items: list[Item], path: Path) -> list[Item]:
    if not items:
        raise UserError(f"{path}: no items to annotate")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise UserError(f"{path}: duplicate id {item.id!r}; every item needs its own id")
        seen.add(item.id)
    return items
