"""Human labels for calibration sets: a local annotation page, its append-only labels file, Argilla I/O.

Typical use (what ``factory annotate`` does)::

    session = open_session(Path("outputs/run-1"), "ana", budget=200)
    AnnotationServer(session, port=8765).serve_forever()
    write_canonical(Path("outputs/run-1/human_labels.jsonl"), Path("outputs/run-1/human_calibration.jsonl"))

The labels file is an event log whose lines are canonical calibration rows plus an ``event`` field;
read it with ``fold_labels`` (see ``store.py`` for the format).
"""

from factory.annotate.argilla import argilla_settings, export_argilla, import_argilla, to_argilla_records
from factory.annotate.items import Item, default_labels_path, load_items
from factory.annotate.queue import build_queue, margin_strata
from factory.annotate.server import AnnotationServer, open_session
from factory.annotate.session import AnnotationSession, SessionError, shown_order, to_item_label
from factory.annotate.store import LabelStore, export_canonical, fold_labels, write_canonical, write_jsonl

__all__ = [
    "AnnotationServer",
    "AnnotationSession",
    "Item",
    "LabelStore",
    "SessionError",
    "argilla_settings",
    "build_queue",
    "default_labels_path",
    "export_argilla",
    "export_canonical",
    "fold_labels",
    "import_argilla",
    "load_items",
    "margin_strata",
    "open_session",
    "shown_order",
    "to_argilla_records",
    "to_item_label",
    "write_canonical",
    "write_jsonl",
]
