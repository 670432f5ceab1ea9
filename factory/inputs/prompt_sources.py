"""Prompt sources: local files (jsonl, json, csv, parquet, txt), public prompt sets by name, and
Hugging Face datasets (`factory.inputs.hub_source`), with an optional row filter (`factory.inputs.row_filter`).

A prompt is one or more user turns (MT-Bench has two) with a stable id; a chat `messages` column is
read as its user turns (`factory.inputs.chat_prompts`). Prompts that cannot be
used (empty, too long) are not dropped: they come back as rejects with a reason, and the build
writes them to its failures table.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.errors import UserError
from factory._util.safe_read import MAX_INPUT_BYTES_ENV, UTF8_BOM, decode_text, read_bytes, regular_file_size
from factory.config import HubPrompts, PromptSource
from factory.inputs.chat_prompts import chat_turns, looks_like_chat
from factory.inputs.hub_source import hub_rows
from factory.inputs.row_filter import Condition, parse_where, select_rows
from judges.humans.public_sets import PUBLIC_PROMPT_SETS, resolve_public_file

TEXT_FIELDS = (
    "prompt",
    "instruction",
    "question",
    "turns",
    "text",
    "input",
    "messages",
    "conversations",
    "conversation",
)
FILE_TYPES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".txt")
ID_FIELDS = ("id", "prompt_id", "question_id", "key", "idx")


@dataclass(frozen=True)
class Prompt:
    """One prompt: `turns` are the user messages, in order."""

    prompt_id: str
    turns: tuple[str, ...]
    source: str

    @property
    def text(self) -> str:
        """The first turn (what single-turn code and reports show)."""
        return self.turns[0]

    def to_row(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "turns": list(self.turns), "source": self.source}


@dataclass(frozen=True)
class RejectedPrompt:
    item_id: str
    reason: str
    raw: str


def _read_records(path: Path, *, max_bytes: int | None = None) -> list[dict[str, Any]]:
    """Rows of a prompt file as dicts; every unreadable file is a one-line UserError.

    Only a regular file (symlinks resolved) of at most `max_bytes` is read, so a FIFO or a link to
    /dev/zero fails at once instead of hanging or filling memory (`factory._util.safe_read`).
    """
    suffix = path.suffix.lower()
    regular_file_size(path, what="prompt file")  # a FIFO or a device is named as such, whatever its suffix
    if suffix not in FILE_TYPES:  # refused before reading: no need to read a gigabyte to say so
        raise UserError(
            f"unsupported prompt file type '{suffix}': {path} (use jsonl, json, csv, parquet or txt)"
        )
    raw = read_bytes(
        path,
        what="prompt file",
        max_bytes=max_bytes,
        limit_hint=f"prompts.max_file_bytes or {MAX_INPUT_BYTES_ENV}",
    )
    if suffix in (".parquet", ".csv"):
        try:
            if suffix == ".parquet":
                return pl.read_parquet(io.BytesIO(raw)).to_dicts()
            return pl.read_csv(io.BytesIO(raw.removeprefix(UTF8_BOM)), infer_schema_length=0).to_dicts()
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            raise UserError(
                f"prompt file cannot be read as {suffix.lstrip('.')}: {path}: "
                f"{str(exc).splitlines()[0][:200]}"
            ) from None
    text = decode_text(raw, path=path, what="prompt file")  # a BOM some editors write is not part of line 1
    if not text.strip():
        raise UserError(f"prompt file is empty: {path}")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"prompt file is not valid JSON: {path} (line {exc.lineno}: {exc.msg})") from None
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        if not isinstance(data, list):
            raise UserError(f"prompt file must hold a JSON list of objects: {path}")
        records = data
    elif suffix in (".jsonl", ".ndjson"):
        records = []
        # split("\n"), not splitlines(): a JSON string may hold a raw U+2028, which is no line break in JSONL.
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"prompt file line {lineno} is not valid JSON: {path}") from None
    else:  # .txt
        records = [{"prompt": line} for line in text.splitlines() if line.strip()]
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise UserError(
                f"prompt file rows must be JSON objects: {path} (row {number} is {_type_name(record)})"
            )
    return records


def _columns(records: list[dict[str, Any]]) -> list[str]:
    """Every column of any row, in order of first appearance: a column missing from row 1 still counts."""
    return list(dict.fromkeys(key for row in records for key in row))


def _pick(columns: list[str], explicit: str | None, candidates: tuple[str, ...]) -> str | None:
    if explicit is not None:
        return explicit if explicit in columns else None
    return next((c for c in candidates if c in columns), None)


def _type_name(value: Any) -> str:
    """'int', 'dict', 'a list of int': what a value is, for a message."""
    if isinstance(value, (list, tuple)):
        inner = sorted({type(v).__name__ for v in value if not isinstance(v, str)})
        return f"a list holding {'/'.join(inner)}" if inner else "a list"
    return type(value).__name__


def _prompt_id(row: dict[str, Any], id_key: str | None, index: int, source: str) -> str:
    if id_key is None:
        return f"p{index:06d}"
    value = row.get(id_key)
    if value is None or (isinstance(value, str) and not value.strip()):
        # Row numbers for some rows and explicit ids for others would make ids that change when rows move.
        raise UserError(
            f"prompt row {index + 1} in {source} has no '{id_key}' (other rows have one): "
            f"give every row an id, or none"
        )
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UserError(
            f"prompt row {index + 1} in {source}: id '{id_key}' is {_type_name(value)}, "
            f"expected a string or an integer"
        )
    return str(value)


def _turns(value: Any, text_key: str, index: int, source: str) -> tuple[tuple[str, ...], str | None]:
    """(turns, reject reason or None) of a row's prompt value; a value of another type is a UserError."""
    if value is None:
        return ("",), None
    if isinstance(value, str):
        return (value,), None
    if looks_like_chat(value):
        turns, reason = chat_turns(value)
        return (turns or ("",)), reason
    if isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
        return (tuple(value) or ("",)), None
    raise UserError(
        f"prompt row {index + 1} in {source}: '{text_key}' is {_type_name(value)}, not text "
        f"(a prompt is a string, a list of strings (its user turns) or a list of chat messages; "
        f"set prompts.text_field to the prompt column)"
    )


def prompts_from_records(
    records: list[dict[str, Any]],
    *,
    source: str,
    id_field: str | None = None,
    text_field: str | None = None,
    max_chars: int = 20000,
) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """Turn raw rows into prompts. Duplicate ids, a missing text column and a prompt or id value of
    the wrong type are user errors; empty, too long and unusable chat rows come back as rejects."""
    if not records:
        raise UserError(f"no prompts in {source}")
    columns = _columns(records)
    text_key = _pick(columns, text_field, TEXT_FIELDS)
    if text_key is None:
        wanted = text_field or " / ".join(TEXT_FIELDS)
        # Bounded: a hostile file can hold a million columns or a megabyte-long key.
        shown = ", ".join(c[:40] for c in columns[:20]) + (", ..." if len(columns) > 20 else "")
        raise UserError(f"prompt rows in {source} have no '{wanted}' column (columns: {shown})")
    id_key = _pick(columns, id_field, ID_FIELDS)
    if id_field is not None and id_key is None:
        raise UserError(f"prompt rows in {source} have no id column '{id_field}'")
    prompts: list[Prompt] = []
    rejected: list[RejectedPrompt] = []
    seen: set[str] = set()
    for index, row in enumerate(records):
        pid = _prompt_id(row, id_key, index, source)
        if pid in seen:
            raise UserError(f"duplicate prompt id '{pid[:80]}' in {source}")
        seen.add(pid)
        turns, reason = _turns(row.get(text_key), text_key, index, source)
        if text_key == "instruction" and isinstance(row.get("input"), str) and row["input"]:
            turns = (f"{turns[0]}\n\n{row['input']}", *turns[1:])
        raw = json.dumps(row, ensure_ascii=False, default=str)
        if reason is not None:
            rejected.append(RejectedPrompt(pid, reason, raw[:2000]))
        elif not any(t.strip() for t in turns):
            rejected.append(RejectedPrompt(pid, "empty_prompt", raw[:2000]))
        elif sum(len(t) for t in turns) > max_chars:
            rejected.append(
                RejectedPrompt(
                    pid,
                    f"prompt_too_long: {sum(len(t) for t in turns)} chars > max_chars {max_chars}",
                    raw[:2000],
                )
            )
        else:
            prompts.append(Prompt(pid, turns, source))
    if not prompts:
        # Rejects alone would make a run of nothing but failures: say why instead.
        first = rejected[0]
        hint = (
            f" ({first.reason}; raise prompts.max_chars)"
            if first.reason.startswith("prompt_too_long")
            else f" ({first.reason})"
        )
        raise UserError(
            f"no usable prompts in {source}: all {len(rejected)} were rejected, e.g. "
            f"'{first.item_id[:80]}'{hint}"
        )
    return prompts, rejected


def load_prompts(
    *,
    path: str | None = None,
    name: str | None = None,
    hf: HubPrompts | None = None,
    id_field: str | None = None,
    text_field: str | None = None,
    where: dict[str, Any] | None = None,
    limit: int | None = None,
    max_chars: int = 20000,
    max_file_bytes: int | None = None,
) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """Load a prompt file, a public prompt set or a Hugging Face dataset; returns usable prompts and
    rejects with reasons. `where` keeps matching rows (`factory.inputs.row_filter`), then `limit` the first N."""
    conditions = _conditions(where)
    rows: Iterable[dict[str, Any]]
    if hf is not None:
        rows, source = hub_rows(hf)
    elif name is not None:
        if name not in PUBLIC_PROMPT_SETS:
            raise UserError(f"unknown prompt set '{name}' (known: {', '.join(sorted(PUBLIC_PROMPT_SETS))})")
        rows, source = (
            _read_records(resolve_public_file(PUBLIC_PROMPT_SETS[name]), max_bytes=max_file_bytes),
            name,
        )
    elif path is not None:
        file_path = Path(path)
        rows, source = _read_records(file_path, max_bytes=max_file_bytes), file_path.name
    else:
        raise UserError("no prompt source: give a path, a public set name or a Hugging Face dataset")
    records = select_rows(rows, conditions, limit=limit, source=source)
    return prompts_from_records(
        records, source=source, id_field=id_field, text_field=text_field, max_chars=max_chars
    )


def load_source(source: PromptSource) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """`load_prompts` for a config's `prompts` section."""
    return load_prompts(
        path=source.path,
        name=source.name,
        hf=source.hf,
        id_field=source.id_field,
        text_field=source.text_field,
        where=source.where,
        limit=source.limit,
        max_chars=source.max_chars,
        max_file_bytes=source.max_file_bytes,
    )


def _conditions(where: dict[str, Any] | None) -> tuple[Condition, ...]:
    try:
        return parse_where(where)
    except ValueError as exc:
        raise UserError(f"prompts.where: {exc}") from None


def prompt_fingerprint(prompt: Prompt) -> str:
    """Content hash of a prompt, used to skip prompts already built in earlier versions."""
    return hashlib.sha256("\u241e".join(prompt.turns).encode("utf-8")).hexdigest()[:16]
