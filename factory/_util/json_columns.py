"""The one codec for nested columns of run tables.

Run tables are parquet with flat, stable schemas: nested values (lists, dicts) are stored as JSON
strings when written (`rows_frame`) and decoded when read back (`load_json`); rows that never went
through parquet hold Python values, which `load_json` passes through.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl


def rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows to a frame; nested values (lists, dicts) are stored as JSON strings for stable schemas."""
    if not rows:
        return pl.DataFrame()
    flat = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, tuple)) else v)
             for k, v in row.items()} for row in rows]
    return pl.DataFrame(flat, infer_schema_length=None)


def load_json(value: Any) -> Any:
    """Nested columns come back from parquet as JSON strings; fresh rows hold Python values."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
