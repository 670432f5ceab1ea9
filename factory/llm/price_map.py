"""litellm's price table, read from the JSON file litellm bundles, without importing litellm.

Importing litellm costs seconds of start-up; the lean transport (`lean.py`) and the budget's
worst-case estimates need only prices, so they read the same table litellm prices from (its
`model_prices_and_context_window_backup.json`, what litellm uses offline, which the factory always
is: `_litellm_env`). The file is parsed once, on the first price asked for (about 40 ms).

Covered: per-token input/output prices, cached prompt tokens at the cache-read price, and the
`*_above_<N>k_tokens` tiers chosen by prompt size, as litellm applies them to chat completions.
A model priced some other way (per character, per second, per image) is unpriced here (None);
`tests/test_price_map.py` checks these prices against `litellm.cost_per_token` over the table.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from functools import cache
from pathlib import Path
from typing import Any

_TABLE_FILE = "model_prices_and_context_window_backup.json"
_lock = threading.Lock()


@cache
def _table_path() -> Path | None:
    """The bundled table of the installed litellm (found without running litellm's __init__)."""
    found = importlib.util.find_spec("litellm")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / _TABLE_FILE
    return path if path.is_file() else None


_table: dict[str, Any] | None = None


def price_table() -> dict[str, Any]:
    """Model name -> litellm's price entry ({} when litellm or its table is missing)."""
    global _table
    if _table is None:
        with _lock:
            if _table is None:
                path = _table_path()
                _table = json.loads(path.read_bytes()) if path else {}
    return _table


def _entry(model: str) -> dict[str, Any] | None:
    """The entry litellm prices `model` (a litellm model string) with: the full string, else the name
    without its provider prefix when that entry belongs to the provider."""
    table = price_table()
    if model in table:
        return table[model]
    provider, _, name = model.partition("/")
    entry = table.get(name) if name else None
    if entry is not None and entry.get("litellm_provider") in (provider, f"text-completion-{provider}"):
        return entry
    return None


def _threshold(key: str) -> float:
    size = key.rsplit("_above_", 1)[1].split("_tokens")[0]
    return float(size[:-1]) * 1000 if size.endswith("k") else float(size)


def _rate(entry: dict[str, Any], base: str, prompt_tokens: int) -> float | None:
    """The per-token rate `base` for a prompt of `prompt_tokens`: the highest tier it exceeds."""
    rate = entry.get(base)
    tiers = sorted(
        (k for k in entry if k.startswith(f"{base}_above_") and k.endswith("_tokens")), key=_threshold
    )
    for key in tiers:
        if entry[key] is not None and prompt_tokens > _threshold(key):
            rate = entry[key]
    return None if rate is None else float(rate)


def token_cost(
    model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> float | None:
    """USD for a chat completion on `model` with these token counts, as litellm prices it; None when the
    table has no per-token price for it. `cached_tokens` (part of `prompt_tokens`) cost the cache-read rate.

    >>> token_cost("openai/no-such-model", 10, 10) is None
    True
    """
    if model.startswith("local/"):
        return 0.0
    entry = _entry(model)
    if entry is None:
        return None
    input_rate = _rate(entry, "input_cost_per_token", prompt_tokens)
    output_rate = _rate(entry, "output_cost_per_token", prompt_tokens)
    if input_rate is None or output_rate is None:
        return None
    cached = min(max(cached_tokens, 0), prompt_tokens)
    cache_rate = _rate(entry, "cache_read_input_token_cost", prompt_tokens) if cached else None
    cost = (prompt_tokens - cached) * input_rate + completion_tokens * output_rate
    return cost + cached * (input_rate if cache_rate is None else cache_rate)


# -- batch prices (hook for batch mode, `batch.py`) ------------------------------------------------
HALF_PRICE_NOTE = "no batch price in litellm's table: half the online price"


def batch_token_cost(
    model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> tuple[float | None, str | None]:
    """USD for a chat completion run through a provider's batch API, and a note when it is a guess.

    litellm's table gives batch rates as `input_cost_per_token_batches` / `output_cost_per_token_batches`
    (and `cache_read_input_token_cost_batches`); a model without them is priced at half its online
    price, as litellm's `batch_cost_calculator` does and as OpenAI, Azure, Vertex and Bedrock charge,
    with `HALF_PRICE_NOTE`. None when the model has no per-token price at all.

    >>> batch_token_cost("local/smollm2", 10, 10)
    (0.0, None)
    """
    if model.startswith("local/"):
        return 0.0, None
    entry = _entry(model)
    if entry is None:
        return None, None
    input_rate = _rate(entry, "input_cost_per_token_batches", prompt_tokens)
    output_rate = _rate(entry, "output_cost_per_token_batches", prompt_tokens)
    if input_rate is None or output_rate is None:
        online = token_cost(model, prompt_tokens, completion_tokens, cached_tokens)
        return (None, None) if online is None else (online / 2, HALF_PRICE_NOTE)
    cached = min(max(cached_tokens, 0), prompt_tokens)
    cache_rate = _rate(entry, "cache_read_input_token_cost_batches", prompt_tokens) if cached else None
    cost = (prompt_tokens - cached) * input_rate + completion_tokens * output_rate
    return cost + cached * (input_rate if cache_rate is None else cache_rate), None
