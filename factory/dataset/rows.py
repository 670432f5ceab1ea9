"""The dataset's row formats: TRL's conversational preference (`dpo`) and unpaired (`kto`) rows, and
MAPL's prompt-level preferences (`mapl_intra`), built from rows of the run's tables.

A prompt is the conversation up to the last user turn (for MT-Bench: user, assistant, user, the
assistant turn being the earlier answer every candidate of the prompt shares); a completion is the
one assistant message answering the last turn."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl

from factory._util.json_columns import dumps, load_json
from factory.inputs.conversation import prompt_messages
from factory.mapl import reverify

Row = dict[str, Any]
MESSAGES = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
SCHEMAS: dict[str, dict[str, Any]] = {
    "dpo": {
        "prompt": MESSAGES,
        "chosen": MESSAGES,
        "rejected": MESSAGES,
        "rationale": pl.Utf8,
        "pair_id": pl.Utf8,
        "prompt_id": pl.Utf8,
        "source": pl.Utf8,
        "chosen_model": pl.Utf8,
        "rejected_model": pl.Utf8,
        "judge_setting": pl.Utf8,
        "margin": pl.Float64,
        "votes": pl.Utf8,
        "constraints": pl.Utf8,
        "checks": pl.Utf8,
        "decided_by": pl.Utf8,
    },
    "kto": {
        "prompt": MESSAGES,
        "completion": MESSAGES,
        "label": pl.Boolean,
        "prompt_id": pl.Utf8,
        "source": pl.Utf8,
        "pair_id": pl.Utf8,
        "model": pl.Utf8,
    },
    "mapl_intra": {
        "prompt_chosen": MESSAGES,
        "prompt_rejected": MESSAGES,
        "response": MESSAGES,
        "row_id": pl.Utf8,
        "prompt_id": pl.Utf8,
        "model": pl.Utf8,
        "chosen_constraints": pl.Utf8,
        "rejected_constraints": pl.Utf8,
        "checks": pl.Utf8,
    },
}
CONFIGS = tuple(SCHEMAS)
SPLITS = ("train", "test")


def prompt_of(row: Mapping[str, Any], turns_column: str = "turns") -> list[dict[str, str]]:
    """A row's conversational prompt: its user turns with the shared earlier answers between them, so a
    multi-turn prompt reads user / assistant / user (rows without `earlier_answers` are single-turn)."""
    return prompt_messages(load_json(row[turns_column]), load_json(row.get("earlier_answers")) or [])


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def messages_key(messages: list[dict[str, str]]) -> str:
    """The text by which rows are compared (dedupe, KTO labels): the messages as JSON."""
    return json.dumps(messages, ensure_ascii=False)


def _json(value: Any) -> str | None:
    value = load_json(value)
    return None if value is None else dumps(value)


def dpo_rows(pairs: pl.DataFrame) -> list[Row]:
    """Pairs-table rows in TRL's conversational preference format, with provenance."""
    out = []
    for p in pairs.iter_rows(named=True):
        margin = p.get("margin")
        out.append(
            {
                "prompt": prompt_of(p),
                "chosen": assistant(p["chosen"]),
                "rejected": assistant(p["rejected"]),
                "rationale": p.get("rationale"),
                "pair_id": p.get("pair_id"),
                "prompt_id": p["prompt_id"],
                "source": p.get("source") or "judged",
                "chosen_model": p.get("chosen_model"),
                "rejected_model": p.get("rejected_model"),
                "judge_setting": p.get("judge_id"),
                "margin": None if margin is None else float(margin),
                "votes": _json(p.get("votes")) or "[]",
                "constraints": _json(p.get("constraints")),
                "checks": _json(p.get("checks")),
                # a person's label (factory annotate) overrides the judge's; MAPL pairs are decided by code
                "decided_by": p.get("decided_by")
                or ("checker" if str(p.get("source")).startswith("mapl") else "judge"),
            }
        )
    return out


def intra_rows(table: pl.DataFrame) -> list[Row]:
    """MAPL intra-sample rows as prompt-level preferences (`prompt_chosen`, `prompt_rejected`, `response`)."""
    return [
        {
            "prompt_chosen": prompt_of(r, "chosen_turns"),
            "prompt_rejected": prompt_of(r, "rejected_turns"),
            "response": assistant(r["response"]),
            "row_id": r.get("row_id"),
            "prompt_id": r["prompt_id"],
            "model": r.get("model"),
            "chosen_constraints": _json(r.get("chosen_constraints")),
            "rejected_constraints": _json(r.get("rejected_constraints")),
            "checks": _json(r.get("checks")),
        }
        for r in table.iter_rows(named=True)
    ]


def kto_candidates(
    row: Row,
) -> tuple[tuple[list[dict[str, str]], list[dict[str, str]], bool, str | None], ...]:
    """The two unpaired rows a `dpo` or `mapl_intra` row offers, as (prompt, completion, label, model):
    a pair's chosen answer is desirable and its rejected one not; a MAPL intra row's answer is
    desirable under its satisfied prompt and not under its violated one."""
    if "prompt_chosen" in row:
        return (
            (row["prompt_chosen"], row["response"], True, row["model"]),
            (row["prompt_rejected"], row["response"], False, row["model"]),
        )
    return (
        (row["prompt"], row["chosen"], True, row["chosen_model"]),
        (row["prompt"], row["rejected"], False, row["rejected_model"]),
    )


def kto_row(row: Row, candidate: int) -> Row:
    """The KTO row of `kto_candidates(row)[candidate]`, with the provenance of its `dpo`/`mapl_intra` row."""
    prompt, completion, label, model = kto_candidates(row)[candidate]
    intra = "prompt_chosen" in row
    return {
        "prompt": prompt,
        "completion": completion,
        "label": label,
        "prompt_id": row["prompt_id"],
        "source": "mapl_intra" if intra else row["source"],
        "pair_id": row.get("pair_id") or row.get("row_id"),
        "model": model,
    }


def reverify_dataset_row(row: Mapping[str, Any]) -> bool:
    """Re-run the checkers of a MAPL row as published (a `dpo` row of source mapl_inter, or a
    `mapl_intra` row) against its recorded checks; see `factory.mapl.reverify`."""
    if "prompt_chosen" in row:
        return reverify(
            {
                "kind": "mapl_intra",
                "checks": row["checks"],
                "response": row["response"][0]["content"],
                "chosen_prompt": row["prompt_chosen"][-1]["content"],
                "rejected_prompt": row["prompt_rejected"][-1]["content"],
                "chosen_constraints": row["chosen_constraints"],
                "rejected_constraints": row["rejected_constraints"],
            }
        )
    return reverify(
        {
            "kind": "mapl_inter",
            "checks": row["checks"],
            "constraints": row["constraints"],
            "prompt": row["prompt"][-1]["content"],
            "chosen": row["chosen"][0]["content"],
            "rejected": row["rejected"][0]["content"],
        }
    )
