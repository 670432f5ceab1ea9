"""Human-labelled pairwise preference sets, loaded into one canonical table.

Every loader returns a `HumanSet` whose `frame` (polars) has the columns

    id, prompt, response_a, response_b, label ("A" | "B" | "tie"), labels (one per annotator,
    may be empty), source, meta (a JSON object as text: bias type, PandaLM cmp_key, ...)

Accepted inputs: a public set name (`pandalm`, `llmbar-natural`, `hhh`, `evalbiasbench`, ... see
`judges.humans.public_sets`), a file or folder in one of the public formats or the canonical jsonl, any
jsonl / json / csv / parquet table with a `ColumnMapping`, or `hf://owner/name[:split]`.

Example:
    >>> hs = load_human_set("pandalm", data_dir="../shared/data")
    >>> hs.frame["label"].value_counts()
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from factory._util.errors import UserError
from factory._util.safe_read import UTF8_BOM, read_bytes, read_text
from judges.engine.votes import plurality
from judges.humans.public_sets import known_set_names, resolve_public_file, set_members
from judges.humans.sampling import sample_record, stratified_sample

Label = Literal["A", "B", "tie"]
LABELS: tuple[Label, ...] = ("A", "B", "tie")

SCHEMA: dict[str, Any] = {
    "id": pl.String,
    "prompt": pl.String,
    "response_a": pl.String,
    "response_b": pl.String,
    "label": pl.String,
    "labels": pl.List(pl.String),
    "source": pl.String,
    "meta": pl.String,
}
_TABLE_SUFFIXES = {".json", ".jsonl", ".ndjson", ".csv", ".parquet"}
_PLAIN_LABELS: dict[str, Label] = {"a": "A", "b": "B", "tie": "tie"}


class ColumnMapping(BaseModel):
    """Which columns of a foreign table hold the canonical fields.

    Example: `ColumnMapping(prompt="question", response_a="answer1", response_b="answer2",
    label="winner", label_values={"1": "A", "2": "B", "0": "tie"})`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(default="prompt", description="Column with the prompt text.")
    response_a: str = Field(default="response_a", description="Column with the first response.")
    response_b: str = Field(default="response_b", description="Column with the second response.")
    label: str = Field(
        default="label", description="Column with the preference (one value, or a list per annotator)."
    )
    id: str | None = Field(
        default=None, description="Column with a unique item id; None: use `id` if present, else row numbers."
    )
    label_values: dict[str, Label] | None = Field(
        default=None,
        description="Raw label value (as text) -> A / B / tie; None accepts A, B, tie in any case.",
    )


@dataclass(frozen=True)
class HumanSet:
    """A loaded human-labelled set: a name, the canonical frame and the annotators behind `labels`.

    `sample` records how the items were drawn from the whole set (`judges.humans.sampling.sample_record`).
    """

    name: str
    frame: pl.DataFrame
    annotators: list[str]
    sample: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.frame.height

    def labels_matrix(self) -> list[list[str | None]]:
        """Items x `annotators`, None where an annotator did not label an item (for kappa, Fleiss, alpha)."""
        column = {name: i for i, name in enumerate(self.annotators)}
        matrix: list[list[str | None]] = []
        for labels, meta in zip(self.frame["labels"].to_list(), self.frame["meta"].to_list(), strict=True):
            names = json.loads(meta).get("annotators") or _positional_names(len(labels))
            row: list[str | None] = [None] * len(self.annotators)
            for name, label in zip(names, labels, strict=True):
                row[column[name]] = label
            matrix.append(row)
        return matrix


def _positional_names(count: int) -> list[str]:
    # Unnamed annotators are known by their position, as in PandaLM's annotator1..3.
    return [f"annotator{i + 1}" for i in range(count)]


def majority_label(labels: Sequence[str]) -> Label:
    """The label most annotators gave; "tie" when no label has strictly more votes than every other
    (the juries' plurality rule, `judges.engine.votes.plurality`)."""
    if not labels:
        raise ValueError("majority_label needs at least one label")
    return plurality(labels)  # type: ignore[arg-type,return-value]


def load_human_set(
    name_or_path: str | Path,
    *,
    mapping: ColumnMapping | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    url: str | None = None,
) -> HumanSet:
    """Load a human-labelled set by public name, path or `hf://owner/name[:split]`.

    `seed` fixes which response is shown as A for sets whose files list the better one first
    (HHH, EvalBiasBench) and which items a `limit` keeps: a sample of that size stratified by label
    and spread over prompts (`judges.humans.sampling`), recorded in `HumanSet.sample`. `url` overrides a
    public set's download URL (its checksum still applies). Bad input raises `UserError` with a
    one-line message.
    """
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of rows, got {limit}")
    text = str(name_or_path)
    if text.startswith("hf://"):
        name, rows, annotators = _load_hf(text, mapping)
    elif not isinstance(name_or_path, Path) and text.strip().lower() in known_set_names():
        name = text.strip().lower()
        members = set_members(name)
        if url and len(members) > 1:
            raise UserError(
                f"url= names one file, but {name!r} stands for {len(members)} sets; load them one by one"
            )
        rows, annotators = [], []
        for entry in members:
            path = resolve_public_file(entry, data_dir=data_dir, url=url)
            member_rows, member_annotators = _PARSERS[entry.format](
                _read_json(path, entry.name), entry.name, seed
            )
            rows += member_rows
            annotators += [a for a in member_annotators if a not in annotators]
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise UserError(
                f"human set {text!r} is neither a known set name nor an existing file "
                f"(known sets: {', '.join(known_set_names())})"
            )
        name = path.stem.removesuffix(".task")
        rows, annotators = _load_path(path, mapping, seed)
    if not rows:
        raise UserError(f"human set {text!r} has no items")
    duplicates = [key for key, count in Counter(row["id"] for row in rows).items() if count > 1]
    if duplicates:
        raise UserError(f"human set {text!r} has duplicate ids, e.g. {duplicates[0]!r}")
    if limit:
        rows, sample = stratified_sample(rows, limit, seed)
    else:
        sample = sample_record(rows, rows, method="all", seed=seed)
    for row in rows:
        row["meta"] = json.dumps(row.get("meta") or {}, ensure_ascii=False, sort_keys=True)
    return HumanSet(name=name, frame=pl.DataFrame(rows, schema=SCHEMA), annotators=annotators, sample=sample)


# ---------------------------------------------------------------- files and tables

Rows = list[dict[str, Any]]


def _load_path(path: Path, mapping: ColumnMapping | None, seed: int) -> tuple[Rows, list[str]]:
    if path.is_dir():
        # A folder laid out like upstream (LLMBar's dataset.json) or holding several files of one kind.
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _TABLE_SUFFIXES)
        if not files:
            raise UserError(f"{path}: folder holds no .json/.jsonl/.csv/.parquet files")
        rows: Rows = []
        annotators: list[str] = []
        for file in files:
            if file.name == "task.json" and "examples" not in _read_json(file, file.name):
                continue  # BIG-bench's parent task.json only describes its subtasks
            file_rows, file_annotators = _load_file(file, mapping, seed)
            rows += file_rows
            annotators += [a for a in file_annotators if a not in annotators]
        return rows, annotators
    return _load_file(path, mapping, seed)


def _load_file(path: Path, mapping: ColumnMapping | None, seed: int) -> tuple[Rows, list[str]]:
    source = path.stem.removesuffix(".task")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        records = _read_jsonl(path)
    elif suffix == ".json":
        data = _read_json(path, path.name)
        kind = None if mapping else _detect_format(data)
        if kind in _PARSERS:
            return _PARSERS[kind](data, source, seed)
        if not isinstance(data, list):
            raise UserError(
                f"{path}: not a known human-set format (PandaLM, LLMBar, HHH, EvalBiasBench, "
                "or a list of records)"
            )
        records = data
    elif suffix in {".csv", ".parquet"}:
        # Through the safe reader: only a regular file, at most FACTORY_MAX_INPUT_BYTES (polars would
        # block on a FIFO or read a link to /dev/zero forever).
        raw = read_bytes(path, what="human set file")
        try:
            table = (
                pl.read_csv(io.BytesIO(raw.removeprefix(UTF8_BOM)))
                if suffix == ".csv"
                else pl.read_parquet(io.BytesIO(raw))
            )
        except Exception as exc:  # polars raises several unrelated types for unreadable files
            raise UserError(f"{path}: cannot read {suffix[1:]} ({_first_line(exc)})") from exc
        records = table.to_dicts()
    else:
        raise UserError(
            f"{path}: unsupported file type {suffix or '(none)'}; use .json, .jsonl, .csv or .parquet"
        )
    return _from_records(records, mapping or ColumnMapping(), source, str(path))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(read_text(path, what="human set file"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{what}: {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def _read_jsonl(path: Path) -> list[Any]:
    records = []
    # split("\n"), not splitlines(): a JSON string may hold a raw U+2028, which is not a line break in JSONL.
    for number, line in enumerate(read_text(path, what="human set file").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
    return records


def _load_hf(spec: str, mapping: ColumnMapping | None) -> tuple[str, Rows, list[str]]:
    name, _, split = spec.removeprefix("hf://").partition(":")
    if name.count("/") != 1:
        raise UserError(f"{spec}: expected hf://owner/name[:split]")
    try:
        import datasets

        # The whole split: a representative sample needs every label and prompt to draw from.
        records = datasets.load_dataset(name, split=split or "train").to_list()
    # The Hub boundary: network, auth, a missing split, ... all reach the user as one line.
    except Exception as exc:
        raise UserError(f"{spec}: cannot load from the Hugging Face Hub ({_first_line(exc)})") from exc
    rows, annotators = _from_records(records, mapping or ColumnMapping(), name.split("/")[1], spec)
    return name, rows, annotators


def _from_records(
    records: Sequence[Any], mapping: ColumnMapping, source: str, where: str
) -> tuple[Rows, list[str]]:
    """Canonical records (or mapped foreign ones) -> rows; `labels` may be strings or annotator dicts."""
    fields = {"prompt": mapping.prompt, "response_a": mapping.response_a, "response_b": mapping.response_b}
    annotators: list[str] = []
    rows: Rows = []
    for number, record in enumerate(records, start=1):
        at = f"{where}: row {number}"
        if not isinstance(record, dict):
            raise UserError(f"{at} is {type(record).__name__}, expected an object with named fields")
        missing = [col for col in fields.values() if col not in record]
        has_label = mapping.label in record and record[mapping.label] is not None
        if not has_label and not record.get("labels"):
            missing.append(mapping.label if mapping.label != "label" else "label (or labels)")
        if missing:
            raise UserError(f"{at} lacks column(s) {', '.join(missing)}; have {', '.join(map(str, record))}")
        row = {key: _text(record[col], f"{at} column {col!r}") for key, col in fields.items()}
        id_col = mapping.id or ("id" if "id" in record else None)
        row["id"] = (
            f"{source}-{number - 1}"
            if id_col is None
            else _text(record.get(id_col), f"{at} column {id_col!r}")
        )
        raw_labels = record.get("labels") if mapping.label == "label" else None
        if has_label and isinstance(record[mapping.label], list):
            raw_labels, has_label = record[mapping.label], False
        if raw_labels is not None and not isinstance(raw_labels, list):
            raise UserError(
                f"{at}: labels must be a list (one per annotator), got {type(raw_labels).__name__}"
            )
        labels, names = _annotator_labels(raw_labels or [], mapping.label_values, at)
        label = (
            _norm_label(record[mapping.label], mapping.label_values, at)
            if has_label
            else majority_label(labels)
        )
        meta = {"annotators": names} if names else {}
        for name in names or _positional_names(len(labels)):
            if name not in annotators:
                annotators.append(name)
        rows.append({**row, "label": label, "labels": labels, "source": source, "meta": meta})
    return rows, annotators


def _annotator_labels(
    raw: Iterable[Any], values: dict[str, Label] | None, at: str
) -> tuple[list[str], list[str]]:
    """Labels per annotator and, when annotators are named, their names (else positional)."""
    items = list(raw)
    if not any(isinstance(item, dict) for item in items):
        return [_norm_label(item, values, at) for item in items], []
    if not all(isinstance(item, dict) and "label" in item for item in items):
        raise UserError(f"{at}: labels mixes strings and objects, or an object lacks 'label'")
    times = [item.get("time") for item in items]
    if all(t is not None for t in times) and len({type(t) for t in times}) == 1:
        items = sorted(items, key=lambda item: item["time"])  # stable: equal times keep file order
    # The same annotator labelling twice is a correction: the latest label wins.
    latest: dict[str, str] = {}
    for position, item in enumerate(items):
        latest[str(item.get("annotator") or f"anonymous{position + 1}")] = _norm_label(
            item["label"], values, at
        )
    return list(latest.values()), list(latest)


def _norm_label(value: Any, values: dict[str, Label] | None, at: str) -> Label:
    if values is not None:
        key = str(value)
        if key not in values:
            raise UserError(f"{at}: label value {value!r} is not in label_values ({', '.join(values)})")
        return values[key]
    if isinstance(value, str) and value.strip().lower() in _PLAIN_LABELS:
        return _PLAIN_LABELS[value.strip().lower()]
    raise UserError(
        f"{at}: unknown label {value!r}; expected A, B or tie (or map values with "
        "ColumnMapping(label_values=...))"
    )


def _text(value: Any, at: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        # Scalars are text that a JSON or CSV writer typed: numeric ids, or a model that answered
        # "True" (PandaLM's file stores six such responses as JSON booleans).
        return str(value)
    raise UserError(f"{at} is {'missing' if value is None else type(value).__name__}, expected text")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------- the public formats


def _detect_format(data: Any) -> str | None:
    if isinstance(data, dict):
        if isinstance(data.get("examples"), list):
            return "hhh"
        first = next(iter(data.values()), None)
        if isinstance(first, list) and first and isinstance(first[0], dict) and "response1" in first[0]:
            return "evalbiasbench"
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        keys = data[0].keys()
        if {"annotator1", "response1"} <= keys:
            return "pandalm"
        if {"output_1", "output_2"} <= keys:
            return "llmbar"
    return None


def _get(record: Any, key: str, at: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise UserError(f"{at} lacks field {key!r}")
    return record[key]


def _get_text(record: Any, key: str, at: str) -> str:
    return _text(_get(record, key, at), f"{at} field {key!r}")


def _parse_pandalm(data: Any, source: str, seed: int) -> tuple[Rows, list[str]]:
    """PandaLM testset-v1: annotator1..3 each 1 (response1 better), 2 (response2 better) or 0 (tie)."""
    codes: dict[Any, Label] = {1: "A", 2: "B", 0: "tie"}
    annotators = _positional_names(3)
    rows: Rows = []
    for number, item in enumerate(_as_list(data, source)):
        at = f"{source}: item {number}"
        labels = []
        for annotator in annotators:
            code = _get(item, annotator, at)
            if code not in codes:
                raise UserError(f"{at}: {annotator} is {code!r}, expected 0, 1 or 2")
            labels.append(codes[code])
        extra = item.get("input") or ""
        prompt = _get_text(item, "instruction", at) + (f"\n\n{extra}" if extra else "")
        rows.append(
            {
                "id": f"{source}-{item.get('idx', number)}",
                "prompt": prompt,
                "response_a": _get_text(item, "response1", at),
                "response_b": _get_text(item, "response2", at),
                "label": majority_label(labels),
                "labels": labels,
                "source": source,
                "meta": {k: item[k] for k in ("idx", "cmp_key", "motivation_app") if k in item},
            }
        )
    return rows, annotators


def _parse_llmbar(data: Any, source: str, seed: int) -> tuple[Rows, list[str]]:
    """LLMBar: `input`, `output_1`, `output_2`, `label` 1 or 2 (author gold, no ties)."""
    rows: Rows = []
    for number, item in enumerate(_as_list(data, source)):
        at = f"{source}: item {number}"
        label = _get(item, "label", at)
        if label not in (1, 2):
            raise UserError(f"{at}: label is {label!r}, expected 1 or 2")
        rows.append(
            {
                "id": f"{source}-{number}",
                "prompt": _get_text(item, "input", at),
                "response_a": _get_text(item, "output_1", at),
                "response_b": _get_text(item, "output_2", at),
                "label": "A" if label == 1 else "B",
                "labels": [],
                "source": source,
                "meta": {},
            }
        )
    return rows, []


def _parse_hhh(data: Any, source: str, seed: int) -> tuple[Rows, list[str]]:
    """BIG-bench hhh_alignment: `target_scores` maps each of two responses to 1 (preferred) or 0."""
    examples = _get(data, "examples", source)
    if not isinstance(examples, list):
        raise UserError(f"{source}: 'examples' is not a list")
    flips = _balanced_flips(len(examples), f"{source}:{seed}")
    rows: Rows = []
    for number, (example, flip) in enumerate(zip(examples, flips, strict=True)):
        at = f"{source}: example {number}"
        scores = _get(example, "target_scores", at)
        if not isinstance(scores, dict) or sorted(scores.values()) != [0, 1]:
            raise UserError(f"{at}: target_scores must hold two responses scored 1 and 0")
        better = next(text for text, score in scores.items() if score == 1)
        worse = next(text for text, score in scores.items() if score == 0)
        rows.append(
            _oriented(
                f"{source}-{number}",
                _get_text(example, "input", at),
                better,
                worse,
                flip,
                source,
                {"subset": source.removeprefix("hhh-")},
            )
        )
    return rows, []


def _parse_evalbiasbench(data: Any, source: str, seed: int) -> tuple[Rows, list[str]]:
    """EvalBiasBench: {bias type: [{instruction, response1, response2, label}]}; the file always
    lists the better response first, so orientation is shuffled (balanced, seeded)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected an object keyed by bias type")
    items = [(bias, item) for bias, group in data.items() for item in _as_list(group, f"{source}: {bias}")]
    flips = _balanced_flips(len(items), f"{source}:{seed}")
    rows: Rows = []
    for number, ((bias, item), flip) in enumerate(zip(items, flips, strict=True)):
        at = f"{source}: item {number} ({bias})"
        label = _get(item, "label", at)
        if label not in (1, 2):
            raise UserError(f"{at}: label is {label!r}, expected 1 or 2")
        first, second = _get_text(item, "response1", at), _get_text(item, "response2", at)
        better, worse = (first, second) if label == 1 else (second, first)
        rows.append(
            _oriented(
                f"{source}-{number}",
                _get_text(item, "instruction", at),
                better,
                worse,
                flip,
                source,
                {"bias": bias},
            )
        )
    return rows, []


def _oriented(
    item_id: str, prompt: str, better: str, worse: str, flip: bool, source: str, meta: dict[str, Any]
) -> dict[str, Any]:
    a, b = (worse, better) if flip else (better, worse)
    return {
        "id": item_id,
        "prompt": prompt,
        "response_a": a,
        "response_b": b,
        "label": "B" if flip else "A",
        "labels": [],
        "source": source,
        "meta": meta,
    }


def _balanced_flips(n: int, seed: str) -> list[bool]:
    # Exactly half flipped (not independent coin tosses), so a judge that always answers "A"
    # scores 50% accuracy, and position bias cannot pass for skill.
    flips = [True] * (n // 2) + [False] * (n - n // 2)
    random.Random(seed).shuffle(flips)
    return flips


def _as_list(data: Any, at: str) -> list[Any]:
    if not isinstance(data, list):
        raise UserError(f"{at}: expected a list of items, got {type(data).__name__}")
    return data


_PARSERS = {
    "pandalm": _parse_pandalm,
    "llmbar": _parse_llmbar,
    "hhh": _parse_hhh,
    "evalbiasbench": _parse_evalbiasbench,
}
