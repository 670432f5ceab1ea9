"""The labels file: append-only, one JSON line per event, written to disk before the page hears back.

Format (one line per event; every line is itself a canonical calibration row)::

    {"event": "label", "id": "p7", "prompt": "...", "response_a": "...", "response_b": "...",
     "labels": [{"annotator": "ana", "label": "B", "time": "2026-11-27T10:02:11.532Z",
                 "shown_order": "BA", "note": ""}]}
    {"event": "undo",  "id": "p7", "prompt": "...", "response_a": "...", "response_b": "...",
     "labels": [], "annotator": "ana", "time": "2026-11-27T10:02:15.004Z"}

``label`` is always in the item's own orientation (A = ``response_a``); ``shown_order`` records what the
annotator saw left to right (``"BA"``: ``response_b`` was on the left).

Readers must fold the events, not read lines as rows: per annotator the label events form a stack, an
``undo`` pops that annotator's latest one, and for each (annotator, id) the latest remaining label wins.
``fold_labels`` does this and returns one canonical row per item with every annotator's current label.
Nothing is ever rewritten, so a closed tab or a killed server loses at most the event being written,
and a torn last line is skipped (with a warning) rather than failing the whole file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory._util.errors import UserError
from factory.annotate.items import VERDICTS, Item

log = logging.getLogger(__name__)


def now_iso() -> str:
    """UTC time with milliseconds, e.g. ``2026-11-27T10:02:11.532Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_fields(item: Item) -> dict[str, str]:
    return {
        "id": item.id,
        "prompt": item.prompt,
        "response_a": item.response_a,
        "response_b": item.response_b,
    }


class LabelFold:
    """The current labels, built by applying label/undo events in file order."""

    def __init__(self) -> None:
        self._stacks: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._texts: dict[str, dict[str, str]] = {}

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        item_id = str(event.get("id"))
        if kind == "label":
            entry = (event.get("labels") or [None])[0]
            if (
                not isinstance(entry, dict)
                or entry.get("label") not in VERDICTS
                or not entry.get("annotator")
            ):
                log.warning(
                    "labels file: skipping a label event without annotator and A/B/tie label: %r", event
                )
                return
            texts = {k: str(event.get(k, "")) for k in ("prompt", "response_a", "response_b")}
            self._texts.setdefault(item_id, {"id": item_id, **texts})
            self._stacks.setdefault(str(entry["annotator"]), []).append((item_id, entry))
        elif kind == "undo":
            stack = self._stacks.get(str(event.get("annotator")), [])
            if stack:
                stack.pop()
        else:
            log.warning("labels file: skipping an event of unknown kind %r", kind)

    def current(self, annotator: str) -> dict[str, dict[str, Any]]:
        """Item id -> this annotator's current label entry."""
        out: dict[str, dict[str, Any]] = {}
        for item_id, entry in self._stacks.get(annotator, []):
            out.pop(item_id, None)  # re-insert so dict order follows the latest labelling
            out[item_id] = entry
        return out

    def texts(self, item_id: str) -> dict[str, str]:
        """The id, prompt and responses stored with the item's first label event."""
        return self._texts.get(item_id, {"id": item_id, "prompt": "", "response_a": "", "response_b": ""})

    def last(self, annotator: str) -> tuple[str, dict[str, Any]] | None:
        """The annotator's latest label event still in force (what ``undo`` would remove)."""
        stack = self._stacks.get(annotator)
        return stack[-1] if stack else None

    def rows(self) -> list[dict[str, Any]]:
        """Canonical rows, one per item with at least one current label, in order of first labelling."""
        by_item: dict[str, list[dict[str, Any]]] = {}
        for annotator in self._stacks:
            for item_id, entry in self.current(annotator).items():
                by_item.setdefault(item_id, []).append(entry)
        return [
            {**self._texts[item_id], "labels": sorted(by_item[item_id], key=lambda e: str(e.get("time")))}
            for item_id in self._texts
            if item_id in by_item
        ]


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events of a labels file in order; a line that does not parse (a torn write) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("%s line %d: not valid JSON (an interrupted write?), skipped", path, n)
                continue
            if isinstance(event, dict):
                yield event


def fold(path: Path) -> LabelFold:
    state = LabelFold()
    if Path(path).exists():
        for event in read_events(Path(path)):
            state.apply(event)
    return state


def fold_labels(path: Path) -> list[dict[str, Any]]:
    """Fold a labels file into canonical rows: ``id, prompt, response_a, response_b, labels`` where
    ``labels`` holds one ``{"annotator", "label", "time", "shown_order", "note"}`` per annotator.

    Example: ``rows = fold_labels(run_dir / "human_labels.jsonl")``
    """
    if not Path(path).is_file():
        raise UserError(f"{path}: labels file not found")
    return fold(path).rows()


def export_canonical(
    labels_path: Path, items: Sequence[Item], *, include_unlabelled: bool = False
) -> list[dict[str, Any]]:
    """Canonical rows for ``items`` (in their order) with the current labels from ``labels_path``.

    The texts come from ``items``, so rows follow the source even if the labels file holds older copies.
    """
    state = fold(labels_path)
    labelled = {row["id"]: row["labels"] for row in state.rows()}
    rows = []
    for item in items:
        labels = labelled.get(item.id, [])
        if labels or include_unlabelled:
            rows.append({**item_fields(item), "labels": labels})
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write rows as jsonl (UTF-8, one object per line) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def write_canonical(path_in: Path, path_out: Path) -> int:
    """Fold the labels file ``path_in`` into a canonical calibration jsonl at ``path_out``.

    Returns the number of labelled rows written. Example:
    ``write_canonical(run_dir / "human_labels.jsonl", run_dir / "human_calibration.jsonl")``
    """
    rows = fold_labels(path_in)
    write_jsonl(rows, path_out)
    return len(rows)


class LabelStore:
    """Appends label and undo events to the labels file (flushed and fsynced) and keeps the fold in memory.

    Safe to share between the HTTP server's threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.state = fold(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        # held open for the session's life (closed by close()); every event is flushed and fsynced
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if created:
            _fsync_dir(self.path.parent)
        else:
            self._end_torn_line()

    def _end_torn_line(self) -> None:
        # a killed writer may leave a line without its newline; the next event must not be glued to it
        with open(self.path, "rb") as raw:
            raw.seek(0, os.SEEK_END)
            if raw.tell() == 0:
                return
            raw.seek(-1, os.SEEK_END)
            torn = raw.read(1) != b"\n"
        if torn:
            self._append_line("")

    def _append_line(self, line: str) -> None:
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def add_label(
        self, item: Item, annotator: str, label: str, shown_order: str, note: str = ""
    ) -> dict[str, Any]:
        """Record ``label`` (item orientation) and return the event written."""
        if label not in VERDICTS:
            raise ValueError(f"label must be one of {VERDICTS}, got {label!r}")
        entry = {
            "annotator": annotator,
            "label": label,
            "time": now_iso(),
            "shown_order": shown_order,
            "note": note,
        }
        event = {"event": "label", **item_fields(item), "labels": [entry]}
        with self._lock:
            self._append_line(json.dumps(event, ensure_ascii=False))
            self.state.apply(event)
        return event

    def undo(self, annotator: str) -> dict[str, Any] | None:
        """Withdraw the annotator's latest label; returns the label entry undone (with ``id``) or None."""
        with self._lock:
            last = self.state.last(annotator)
            if last is None:
                return None
            item_id, entry = last
            event = {
                "event": "undo",
                **self.state.texts(item_id),
                "labels": [],
                "annotator": annotator,
                "time": now_iso(),
            }
            self._append_line(json.dumps(event, ensure_ascii=False))
            self.state.apply(event)
        return {"id": item_id, **entry}

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def _fsync_dir(folder: Path) -> None:
    # the new file's directory entry must reach the disk too, or a crash can lose the whole file
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows, where directories cannot be opened this way
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
