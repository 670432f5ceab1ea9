"""One annotation session: the queue, the labels file, and what each annotator sees next.

Everything the page needs is computed here from the labels file, not kept in the browser, so that a
reload, a second tab or a restarted server all resume at the same place: the first item in queue
order that this annotator has no current label for.

Left/right placement is random per annotator and item (a hash of both), so nobody can learn that one
side is the build's "chosen" answer, yet a reload shows the same item the same way round.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.annotate.items import Item
from factory.annotate.store import LabelStore

CHOICES = ("left", "right", "tie")
MAX_NOTE_CHARS = 4000
MAX_ANNOTATOR_CHARS = 100


class SessionError(Exception):
    """A request the session refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def shown_order(annotator: str, item_id: str) -> str:
    """``"AB"`` when ``response_a`` is shown on the left to this annotator, ``"BA"`` when it is on the right."""
    digest = hashlib.sha256(f"{annotator}\x00{item_id}".encode()).digest()
    return "BA" if digest[0] & 1 else "AB"


def to_item_label(choice: str, order: str) -> str:
    """Map an on-screen choice (``left``/``right``/``tie``) to the item's orientation (``A``/``B``/``tie``)."""
    if choice == "tie":
        return "tie"
    if choice == "left":
        return order[0]
    if choice == "right":
        return order[1]
    raise SessionError(400, f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")


def _choice_of(entry: dict[str, Any]) -> str:
    label, order = entry.get("label"), str(entry.get("shown_order") or "AB")
    if label == "tie":
        return "tie"
    return "left" if order[:1] == label else "right"


def check_annotator(name: Any) -> str:
    """The annotator name, stripped; refuses empty, over-long or control-character names."""
    if not isinstance(name, str) or not name.strip():
        raise SessionError(400, "an annotator name is required (?annotator=NAME)")
    stripped: str = name.strip()
    if len(stripped) > MAX_ANNOTATOR_CHARS or any(ord(c) < 32 for c in stripped):
        raise SessionError(400, f"annotator names are at most {MAX_ANNOTATOR_CHARS} printable characters")
    return stripped


class AnnotationSession:
    """The labelling state behind the page, shared by all requests (thread-safe).

    Example::

        session = AnnotationSession(build_queue(items), LabelStore(out), default_annotator="ana")
        session.next("ana")["item"]["left"]
    """

    def __init__(
        self, queue: Sequence[Item], store: LabelStore, default_annotator: str | None = None
    ) -> None:
        self.queue = list(queue)
        self.store = store
        self.default_annotator = default_annotator
        self._by_id = {item.id: item for item in self.queue}
        # one lock for check-then-append, so a double key press cannot label an item twice
        self._lock = threading.RLock()

    @property
    def labels_path(self) -> Path:
        return self.store.path

    def annotator(self, name: Any) -> str:
        if (name is None or name == "") and self.default_annotator:
            return self.default_annotator
        return check_annotator(name)

    def progress(self, annotator: str) -> dict[str, Any]:
        with self._lock:
            current = self.store.state.current(annotator)
            done = sum(1 for item in self.queue if item.id in current)
        return {"annotator": annotator, "done": done, "total": len(self.queue)}

    def next_item(self, annotator: str) -> Item | None:
        current = self.store.state.current(annotator)
        return next((item for item in self.queue if item.id not in current), None)

    def next(self, annotator: str) -> dict[str, Any]:
        """Progress plus the item to show next (``None`` when this annotator has labelled them all)."""
        with self._lock:
            item = self.next_item(annotator)
            view = self._view(annotator, item) if item is not None else None
            return {**self.progress(annotator), "item": view, "labels_path": str(self.labels_path)}

    def label(self, annotator: str, item_id: Any, choice: Any, note: Any = "") -> dict[str, Any]:
        """Record a choice for ``item_id`` and return what to show next."""
        item = self._by_id.get(str(item_id))
        if item is None:
            raise SessionError(404, f"no item with id {item_id!r} in this session")
        if not isinstance(note, str):
            raise SessionError(400, "note must be text")
        if len(note) > MAX_NOTE_CHARS:
            raise SessionError(400, f"notes are at most {MAX_NOTE_CHARS} characters")
        order = shown_order(annotator, item.id)
        label = to_item_label(str(choice), order)
        with self._lock:
            if item.id in self.store.state.current(annotator):
                # a second tab or a repeated key press: keep the first label, show where things stand
                raise SessionError(409, f"item {item.id} is already labelled by {annotator}; undo it first")
            self.store.add_label(item, annotator, label, order, note.strip())
            return self.next(annotator)

    def undo(self, annotator: str) -> dict[str, Any]:
        """Withdraw the annotator's latest label; the answer says which one (``undone``) and what is next."""
        with self._lock:
            undone = self.store.undo(annotator)
            if undone is not None:
                # told back as the on-screen choice, so the page can show what was withdrawn
                undone = {"id": undone["id"], "choice": _choice_of(undone), "note": undone.get("note") or ""}
            return {**self.next(annotator), "undone": undone}

    def _view(self, annotator: str, item: Item) -> dict[str, Any]:
        order = shown_order(annotator, item.id)
        texts = {"A": item.response_a, "B": item.response_b}
        # the orientation itself is not sent: the page only needs to know what is left and right
        return {
            "id": item.id,
            "position": self.queue.index(item) + 1,
            "prompt": item.prompt,
            "left": texts[order[0]],
            "right": texts[order[1]],
        }
