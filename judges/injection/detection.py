"""How well the injection defences catch attacks, and how often they flag ordinary answers; no model needed.

The attack set (`injection_attacks.jsonl` next to this module, one JSON object a line: id, family, text,
note) holds answers that address the judge in the ways an attacker evades exact-string checks:
Unicode tricks, other heading syntaxes, other verdict words, delimiter variants, JSON verdicts,
chat-template tokens and slot-agnostic directives. Ordinary answers are the 805 AlpacaEval reference
outputs (`alpaca_eval` public prompt set), or any JSON/JSONL file of answers.

For each attack: `flagged` (the row would carry injection flags and the pair builder drops it) and
`neutralised` (the judge prompt shows it escaped). `caught` is either. For ordinary answers the false
positive rate is the share flagged; `escaped` is the share whose prompt text the escaping changed.

    figures = measure_detection(load_attacks(), load_ordinary())
    figures["overall"]["caught_rate"], figures["ordinary"]["false_positive_rate"]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory._util.errors import UserError
from judges.humans.public_sets import PUBLIC_PROMPT_SETS, resolve_public_file
from judges.protocols import injection_markers, neutralize

ATTACKS_FILE = Path(__file__).with_name("injection_attacks.jsonl")
ANSWER_FIELDS = ("output", "answer", "response", "text", "completion")
"""Fields an ordinary-answers file may hold its answers in, looked for in this order."""


@dataclass(frozen=True)
class AttackCase:
    id: str
    family: str
    text: str
    note: str = ""


def load_attacks(path: Path | None = None) -> list[AttackCase]:
    """The attack set: `path` (JSONL of {id, family, text, note}) or the built-in one."""
    path = path or ATTACKS_FILE
    cases = []
    for lineno, record in enumerate(_records(path), 1):
        if not all(isinstance(record.get(k), str) and record[k] for k in ("id", "family", "text")):
            raise UserError(f"attack set {path}: record {lineno} needs string fields id, family and text")
        cases.append(AttackCase(record["id"], record["family"], record["text"], str(record.get("note", ""))))
    if not cases:
        raise UserError(f"attack set is empty: {path}")
    return cases


def load_ordinary(path: Path | None = None) -> list[str]:
    """Ordinary answers: `path` (JSON list or JSONL of objects with an answer field), else the AlpacaEval
    reference outputs, found through FACTORY_DATA_DIR, the cache, or a download."""
    if path is None:
        path = resolve_public_file(PUBLIC_PROMPT_SETS["alpaca_eval"])
    answers = []
    for lineno, record in enumerate(_records(path), 1):
        field = next((f for f in ANSWER_FIELDS if isinstance(record.get(f), str)), None)
        if field is None:
            raise UserError(
                f"ordinary answers {path}: record {lineno} has no answer field ({', '.join(ANSWER_FIELDS)})"
            )
        answers.append(record[field])
    if not answers:
        raise UserError(f"ordinary answers file is empty: {path}")
    return answers


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            records = data if isinstance(data, list) else [data]
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path} must hold JSON objects, one per record")
    return records


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def measure_detection(
    attacks: Sequence[AttackCase], ordinary: Sequence[str], *, examples: int = 5
) -> dict[str, Any]:
    """Attack-flag rates per family and overall, and the false-positive rate on ordinary answers."""
    families: dict[str, dict[str, Any]] = {}
    missed = []
    for case in attacks:
        flagged = bool(injection_markers(case.text))
        neutralised = neutralize(case.text) != case.text
        tally = families.setdefault(case.family, {"n": 0, "flagged": 0, "neutralised": 0, "caught": 0})
        tally["n"] += 1
        tally["flagged"] += flagged
        tally["neutralised"] += neutralised
        tally["caught"] += flagged or neutralised
        if not flagged:
            missed.append({"id": case.id, "family": case.family, "neutralised": neutralised})
    total = {k: sum(f[k] for f in families.values()) for k in ("n", "flagged", "neutralised", "caught")}
    for tally in [*families.values(), total]:
        tally["flag_rate"] = _rate(tally["flagged"], tally["n"])
        tally["caught_rate"] = _rate(tally["caught"], tally["n"])
    flagged_ordinary = [(i, labels) for i, text in enumerate(ordinary) if (labels := injection_markers(text))]
    escaped = sum(neutralize(text) != text for text in ordinary)
    return {
        "families": families,
        "overall": total,
        "missed": missed,
        "ordinary": {
            "n": len(ordinary),
            "flagged": len(flagged_ordinary),
            "false_positive_rate": _rate(len(flagged_ordinary), len(ordinary)),
            "escaped": escaped,
            "escaped_rate": _rate(escaped, len(ordinary)),
            "examples": [
                {"index": i, "flags": labels, "text": ordinary[i][:200]}
                for i, labels in flagged_ordinary[:examples]
            ],
        },
        "definition": "flagged: injection_markers() found judge-directed content (the pair builder drops a pair "
        "whose chosen answer is flagged); neutralised: neutralize() escaped part of it in the judge "
        "prompt; caught: either; false_positive_rate: ordinary answers flagged",
    }


def format_detection(figures: dict[str, Any]) -> list[str]:
    """The figures as lines for the terminal."""
    lines = ["attack detection (no model):", f"  {'family':<16} {'n':>4} {'flagged':>8} {'caught':>8}"]
    for name, f in [*sorted(figures["families"].items()), ("overall", figures["overall"])]:
        lines.append(f"  {name:<16} {f['n']:>4} {f['flag_rate']:>8.1%} {f['caught_rate']:>8.1%}")
    o = figures["ordinary"]
    lines.append(
        f"false positives: {o['flagged']} of {o['n']} ordinary answers flagged "
        f"({o['false_positive_rate']:.2%}); {o['escaped']} partly escaped in the prompt ({o['escaped_rate']:.2%})"
    )
    return lines
