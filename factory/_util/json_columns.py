"""The one codec for nested columns of run tables.

Run tables are parquet with flat, stable schemas: nested values (lists, dicts) are stored as JSON
strings when written (`rows_frame`) and decoded when read back (`load_json`); rows that never went
through parquet hold Python values, which `load_json` passes through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Rows to a frame; nested values (lists, dicts) are stored as JSON strings for stable schemas."""
    if not rows:
        return pl.DataFrame()
    flat = [
        {
            k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, tuple)) else v)
            for k, v in row.items()
        }
        for row in rows
    ]
    return pl.DataFrame(flat, infer_schema_length=None)


def load_json(value: Any) -> Any:
    """Nested columns come back from parquet as JSON strings; fresh rows hold Python values."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def decode_columns(rows: list[dict[str, Any]], columns: Iterable[str]) -> list[dict[str, Any]]:
    """Decode `columns` of rows read back from parquet in place (JSON strings to Python values); values
    that are not JSON strings are kept. Returns `rows`."""
    names = tuple(columns)
    for row in rows:
        for name in names:
            value = row.get(name)
            if isinstance(value, str):
                row[name] = load_json(value)
    return rows


def dumps(value: Any) -> str:
    """A nested value as the JSON text of a column (non-ASCII kept as is, as `rows_frame` writes it)."""
    return json.dumps(value, ensure_ascii=False)
