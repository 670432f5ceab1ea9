"""Hand items to Argilla 2.x and bring its answers back, as plain JSON (the argilla package is not needed).

``export_argilla`` writes the two files of Argilla's ``Dataset.to_disk`` layout:

* ``settings.json``: text fields ``prompt``, ``response_a``, ``response_b``; a LabelQuestion
  ``preference`` with labels ``A`` / ``B`` / ``tie``; an optional TextQuestion ``note``; metadata
  properties hidden from annotators;
* ``records.json``: a list of records ``{"id", "fields", "metadata", "suggestions", "responses",
  "vectors"}`` as ``Record.to_dict()`` writes them.

Argilla always shows ``response_a`` above/left of ``response_b``, so by default each record's two
responses are placed in a seeded random order, and ``metadata.shown_order`` (``"AB"``/``"BA"``) says
which of the item's responses went into the ``response_a`` field. ``import_argilla`` reads records with
``responses`` (``{"preference": [{"value", "user_id"}]}``, as ``Record.to_dict()`` exports them, or the
API's ``[{"question_name", "value", "user_id"}]`` list) and maps every answer back to the item's own
orientation, giving canonical calibration rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from factory._util.errors import UserError
from factory.annotate.items import Item

QUESTION = "preference"
NOTE_QUESTION = "note"
_GUIDELINES = (
    "Read the prompt and both responses. Choose A if response_a is better, B if response_b is better, "
    "tie if neither is clearly better. Judge helpfulness, relevance, accuracy and detail; ignore length "
    "and position."
)


def argilla_settings() -> dict[str, Any]:
    """The dataset settings (Argilla 2.x ``Settings`` serialized): fields, questions, metadata."""
    return {
        "guidelines": _GUIDELINES,
        "allow_extra_metadata": True,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "fields": [
            {
                "name": name,
                "title": title,
                "required": True,
                "settings": {"type": "text", "use_markdown": False},
            }
            for name, title in (
                ("prompt", "Prompt"),
                ("response_a", "Response A"),
                ("response_b", "Response B"),
            )
        ],
        "questions": [
            {
                "name": QUESTION,
                "title": "Which response is better?",
                "description": "A = response_a, B = response_b, tie = neither is clearly better.",
                "required": True,
                "settings": {
                    "type": "label_selection",
                    "options": [
                        {"value": "A", "text": "A is better", "description": None},
                        {"value": "B", "text": "B is better", "description": None},
                        {"value": "tie", "text": "Tie", "description": None},
                    ],
                    "visible_options": 3,
                },
            },
            {
                "name": NOTE_QUESTION,
                "title": "Note (optional)",
                "description": None,
                "required": False,
                "settings": {"type": "text", "use_markdown": False},
            },
        ],
        "metadata": [
            {
                "name": "shown_order",
                "title": "Shown order",
                "visible_for_annotators": False,
                "settings": {"type": "terms", "values": ["AB", "BA"]},
            },
            {
                "name": "margin",
                "title": "Jury margin",
                "visible_for_annotators": False,
                "settings": {"type": "float", "min": None, "max": None},
            },
            {
                "name": "contested",
                "title": "Jurors disagree or flipped",
                "visible_for_annotators": False,
                "settings": {"type": "terms", "values": ["yes", "no"]},
            },
        ],
        "vectors": [],
    }


def record_order(item_id: str, seed: int) -> str:
    """``"BA"`` when the item's B response goes into Argilla's ``response_a`` field."""
    return "BA" if hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()[0] & 1 else "AB"


def to_argilla_records(
    items: Sequence[Item], *, seed: int = 0, randomize: bool = True
) -> list[dict[str, Any]]:
    """Argilla records for ``items``; with ``randomize`` the two responses are placed in a seeded order."""
    records = []
    for item in items:
        order = record_order(item.id, seed) if randomize else "AB"
        texts = {"A": item.response_a, "B": item.response_b}
        metadata: dict[str, Any] = {"shown_order": order, "contested": "yes" if item.contested else "no"}
        if item.abs_margin is not None:
            metadata["margin"] = item.abs_margin
        records.append(
            {
                "id": item.id,
                "fields": {
                    "prompt": item.prompt,
                    "response_a": texts[order[0]],
                    "response_b": texts[order[1]],
                },
                "metadata": metadata,
                "suggestions": {},
                "responses": {},
                "vectors": {},
            }
        )
    return records


def export_argilla(items: Sequence[Item], out_dir: Path, *, seed: int = 0, randomize: bool = True) -> Path:
    """Write ``settings.json`` and ``records.json`` for Argilla into ``out_dir``; returns ``out_dir``.

    Example: ``export_argilla(build_queue(load_items(run_dir), budget=200), run_dir / "argilla")``
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(json.dumps(argilla_settings(), indent=2), encoding="utf-8")
    records = to_argilla_records(items, seed=seed, randomize=randomize)
    (out_dir / "records.json").write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return out_dir


def import_argilla(path: Path, *, user_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Canonical rows (``id, prompt, response_a, response_b, labels``) from Argilla records with responses.

    ``path`` is an export folder (``records.json`` inside), a ``.json`` list or a ``.jsonl`` of records.
    Labels are mapped back through ``metadata.shown_order``, so they are in the item's own orientation;
    ``user_names`` turns Argilla user ids into annotator names. Records without answers are left out.
    Example: ``write_jsonl(import_argilla(Path("argilla_export")), Path("human_calibration.jsonl"))``
    """
    rows = []
    for n, record in enumerate(_read_records(Path(path)), start=1):
        if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
            raise UserError(f"{path} record {n}: expected an Argilla record with fields")
        fields, metadata = record["fields"], record.get("metadata") or {}
        order = str(metadata.get("shown_order") or "AB")
        if order not in ("AB", "BA"):
            raise UserError(f"{path} record {n}: metadata.shown_order must be AB or BA, got {order!r}")
        texts = {order[0]: fields.get("response_a", ""), order[1]: fields.get("response_b", "")}
        answers = _answers(record.get("responses"))
        notes = {user: value for q, value, user in answers if q == NOTE_QUESTION}
        labels = []
        for question, value, user in answers:
            if question != QUESTION or value not in ("A", "B", "tie"):
                continue
            annotator = (user_names or {}).get(user, user)
            label = value if value == "tie" else order["AB".index(value)]
            labels.append(
                {
                    "annotator": annotator,
                    "label": label,
                    "time": None,
                    "shown_order": order,
                    "note": notes.get(user, ""),
                }
            )
        if labels:
            rows.append(
                {
                    "id": str(record.get("id")),
                    "prompt": fields.get("prompt", ""),
                    "response_a": texts["A"],
                    "response_b": texts["B"],
                    "labels": labels,
                }
            )
    return rows


def _answers(responses: Any) -> list[tuple[str, Any, str]]:
    """(question, value, user_id) triples from either response shape, submitted answers only."""
    out = []
    if isinstance(responses, dict):  # Record.to_dict(): {question: [{"value", "user_id"}]}
        for question, answers in responses.items():
            for answer in answers or []:
                if isinstance(answer, dict) and answer.get("status", "submitted") == "submitted":
                    out.append((question, answer.get("value"), str(answer.get("user_id"))))
    elif isinstance(responses, list):  # API style: [{"question_name", "value", "user_id", "status"}]
        for answer in responses:
            if isinstance(answer, dict) and answer.get("status", "submitted") == "submitted":
                out.append(
                    (str(answer.get("question_name")), answer.get("value"), str(answer.get("user_id")))
                )
    return out


def _read_records(path: Path) -> list[Any]:
    if path.is_dir():
        path = path / "records.json"
    if not path.is_file():
        raise UserError(f"{path}: Argilla records file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        records = json.loads(text)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(records, list):
        raise UserError(f"{path}: expected a JSON list of records")
    return records
