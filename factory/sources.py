"""Prompt sources: local files (jsonl, json, csv, parquet) and public prompt sets by name.

A prompt is one or more user turns (MT-Bench has two) with a stable id. Prompts that cannot be
used (empty, too long) are not dropped: they come back as rejects with a reason, and the build
writes them to its failures table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from factory.errors import UserError
from judges.public_sets import PublicSet, resolve_public_file

TEXT_FIELDS = ("prompt", "instruction", "question", "turns", "text", "input")
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


# Public prompt sets: canonical URL and checksum; a local copy is found through FACTORY_DATA_DIR,
# then the download cache (same machinery as the human-labelled sets).
PUBLIC_PROMPT_SETS: dict[str, PublicSet] = {
    "mt_bench": PublicSet(
        name="mt_bench", relpath="prompts/mt_bench_question.jsonl",
        url="https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench/question.jsonl",
        sha256="119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7", license="Apache-2.0", format="jsonl", rows=80),
    "alpaca_eval": PublicSet(
        name="alpaca_eval", relpath="prompts/alpaca_eval_805_text_davinci_003_outputs.json",
        url="https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/results/text_davinci_003/model_outputs.json",
        sha256="af0bc112f08c88bf589bbfe6fc1036806d0a0f6fec9c4d5a4db860f5afe73b4b", license="Apache-2.0", format="json", rows=805),
    "ifeval": PublicSet(
        name="ifeval", relpath="prompts/ifeval_input_data.jsonl",
        url="https://raw.githubusercontent.com/google-research/google-research/master/"
            "instruction_following_eval/data/input_data.jsonl",
        sha256="67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49", license="Apache-2.0", format="jsonl", rows=541),
    "gsm8k": PublicSet(
        name="gsm8k", relpath="prompts/gsm8k_test.jsonl",
        url="https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
        sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14", license="MIT", format="jsonl", rows=1319),
}


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a prompt file as dicts; every unreadable file is a one-line UserError."""
    if not path.exists():
        raise UserError(f"prompt file not found: {path}")
    if path.is_dir():
        raise UserError(f"prompt path is a directory, not a file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path).to_dicts()
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=0).to_dicts()
        raw = path.read_bytes()
    except PermissionError:
        raise UserError(f"prompt file not readable (permission denied): {path}") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UserError(f"prompt file cannot be read as {suffix.lstrip('.')}: {path}: {str(exc).splitlines()[0]}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"prompt file is not valid UTF-8: {path} (byte {exc.start})") from None
    if not text.strip():
        raise UserError(f"prompt file is empty: {path}")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"prompt file is not valid JSON: {path} (line {exc.lineno})") from None
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        if not isinstance(data, list):
            raise UserError(f"prompt file must hold a JSON list of objects: {path}")
        records = data
    elif suffix in (".jsonl", ".ndjson"):
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"prompt file line {lineno} is not valid JSON: {path}") from None
    elif suffix == ".txt":
        records = [{"prompt": line} for line in text.splitlines() if line.strip()]
    else:
        raise UserError(f"unsupported prompt file type '{suffix}': {path} (use jsonl, json, csv, parquet or txt)")
    if not all(isinstance(r, dict) for r in records):
        raise UserError(f"prompt file rows must be JSON objects: {path}")
    return records


def _pick(row: dict[str, Any], explicit: str | None, candidates: tuple[str, ...]) -> str | None:
    if explicit is not None:
        return explicit if explicit in row else None
    return next((c for c in candidates if c in row), None)


def prompts_from_records(records: list[dict[str, Any]], *, source: str, id_field: str | None = None,
                         text_field: str | None = None, max_chars: int = 20000
                         ) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """Turn raw rows into prompts. Duplicate ids and a missing text column are user errors."""
    if not records:
        raise UserError(f"no prompts in {source}")
    text_key = _pick(records[0], text_field, TEXT_FIELDS)
    if text_key is None:
        wanted = text_field or " / ".join(TEXT_FIELDS)
        raise UserError(f"prompt rows in {source} have no '{wanted}' column (columns: {', '.join(records[0])})")
    id_key = _pick(records[0], id_field, ID_FIELDS)
    if id_field is not None and id_key is None:
        raise UserError(f"prompt rows in {source} have no id column '{id_field}'")
    prompts: list[Prompt] = []
    rejected: list[RejectedPrompt] = []
    seen: set[str] = set()
    for index, row in enumerate(records):
        pid = str(row.get(id_key)) if id_key and row.get(id_key) is not None else f"p{index:06d}"
        if pid in seen:
            raise UserError(f"duplicate prompt id '{pid}' in {source}")
        seen.add(pid)
        value = row.get(text_key)
        turns = tuple(str(t) for t in value) if isinstance(value, list) else (str(value) if value is not None else "",)
        if "input" in row and text_key == "instruction" and row.get("input"):
            turns = (f"{turns[0]}\n\n{row['input']}", *turns[1:])
        raw = json.dumps(row, ensure_ascii=False, default=str)
        if not any(t.strip() for t in turns):
            rejected.append(RejectedPrompt(pid, "empty_prompt", raw[:2000]))
        elif sum(len(t) for t in turns) > max_chars:
            rejected.append(RejectedPrompt(pid, f"prompt_too_long: {sum(len(t) for t in turns)} chars > "
                                           f"max_chars {max_chars}", raw[:2000]))
        else:
            prompts.append(Prompt(pid, turns, source))
    if not prompts:
        # Rejects alone would make a run of nothing but failures: say why instead.
        first = rejected[0]
        hint = f" ({first.reason}; raise prompts.max_chars)" if first.reason.startswith("prompt_too_long") else \
            f" ({first.reason})"
        raise UserError(f"no usable prompts in {source}: all {len(rejected)} were rejected, e.g. "
                        f"'{first.item_id}'{hint}")
    return prompts, rejected


def load_prompts(*, path: str | None = None, name: str | None = None, id_field: str | None = None,
                 text_field: str | None = None, limit: int | None = None, max_chars: int = 20000
                 ) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """Load a prompt file or a public prompt set; returns usable prompts and rejects with reasons."""
    if name is not None:
        if name not in PUBLIC_PROMPT_SETS:
            raise UserError(f"unknown prompt set '{name}' (known: {', '.join(sorted(PUBLIC_PROMPT_SETS))})")
        file_path = resolve_public_file(PUBLIC_PROMPT_SETS[name])
        source = name
    elif path is not None:
        file_path = Path(path)
        source = file_path.name
    else:
        raise UserError("no prompt source: give a path or a public set name")
    records = _read_records(file_path)
    if limit is not None:
        records = records[:limit]
    return prompts_from_records(records, source=source, id_field=id_field, text_field=text_field,
                                max_chars=max_chars)


def prompt_fingerprint(prompt: Prompt) -> str:
    """Content hash of a prompt, used to skip prompts already built in earlier versions."""
    return hashlib.sha256("\u241e".join(prompt.turns).encode("utf-8")).hexdigest()[:16]
