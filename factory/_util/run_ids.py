"""Run ids: `<name>-<UTC date>-<UTC time>-<4 hex>`, sortable by start time and unique across hosts."""

from __future__ import annotations

import os
from datetime import UTC, datetime


def new_run_id(name: str) -> str:
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
