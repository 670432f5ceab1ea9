"""`factory cache stats|prune`: the request cache shared between builds (`run.cache_dir`, $FACTORY_CACHE_DIR)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from factory._util.errors import UserError
from factory.llm.shared_cache import SharedCache

console = Console(stderr=True)

cache_app = typer.Typer(
    name="cache",
    help="The request cache shared between builds (run.cache_dir).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="FACTORY_CACHE_DIR",
        help="The shared cache folder (default: $FACTORY_CACHE_DIR).",
    ),
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_BYTES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(value: str | None) -> float | None:
    """`30d`, `12h`, `90m`, `45s`, `2w` in seconds."""
    if value is None:
        return None
    found = _DURATION.match(value)
    if not found:
        raise typer.BadParameter(
            f"expected a duration like 30d, 12h, 90m or 2w, got '{value}'", param_hint="'--older-than'"
        )
    return float(found.group(1)) * _SECONDS[found.group(2).lower()]


def parse_size(value: str | None) -> int | None:
    """`500M`, `2G`, `800KiB`, `1000000` in bytes (K, M, G, T are powers of 1024)."""
    if value is None:
        return None
    found = _SIZE.match(value)
    if not found:
        raise typer.BadParameter(
            f"expected a size like 500M, 2G or 800K, got '{value}'", param_hint="'--max-size'"
        )
    return int(float(found.group(1)) * _BYTES[found.group(2).lower()])


def _open(cache_dir: Path | None) -> SharedCache:
    if cache_dir is None:
        raise UserError("give the shared cache folder: --cache-dir DIR (or set FACTORY_CACHE_DIR)")
    return SharedCache(cache_dir.expanduser().absolute(), create=False)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.2f} MiB"


@cache_app.command("stats")
def stats(
    cache_dir: CacheDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Entries, size, dollars the cached calls cost, oldest and newest entry, in all and per model."""
    cache = _open(cache_dir)
    try:
        figures = cache.stats()
    finally:
        cache.close()
    if as_json:
        print(json.dumps(asdict(figures), indent=2))
        return
    print(
        f"{figures.path}: {figures.entries} entries, {_mib(figures.record_bytes)} of responses "
        f"({_mib(figures.file_bytes)} on disk), ${figures.cost_usd:.4f} paid for them; "
        f"oldest {_when(figures.oldest)}, newest {_when(figures.newest)}"
    )
    head = ("model", "entries", "size", "cost", "oldest", "newest")
    rows = [
        (
            m,
            f"{f['entries']:,}",
            _mib(f["record_bytes"]),
            f"${f['cost_usd']:.4f}",
            _when(f["oldest"]),
            _when(f["newest"]),
        )
        for m, f in figures.by_model.items()
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


@cache_app.command("prune")
def prune(
    cache_dir: CacheDir = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Remove entries written longer ago than this: 30d, 12h, 90m, 2w."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Remove the entries of this model (the litellm model string, e.g. openai/gpt-4o-mini).",
        ),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            help="Then remove the oldest entries until the responses take at most this: 500M, 2G.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
) -> None:
    """Remove entries from the shared cache (then VACUUM). Builds over it pay again for what is removed;
    run folders keep their own copy of what they paid for, so resumes are unaffected."""
    seconds, limit = parse_duration(older_than), parse_size(max_size)
    if seconds is None and model is None and limit is None:
        raise UserError("give what to prune: --older-than, --model and/or --max-size")
    cache = _open(cache_dir)
    try:
        result = cache.prune(older_than_s=seconds, model=model, max_bytes=limit, dry_run=dry_run)
    finally:
        cache.close()
    verb = "would remove" if dry_run else "removed"
    print(
        f"{verb} {result.removed} entries ({_mib(result.removed_bytes)}, ${result.removed_cost_usd:.4f} of "
        f"calls); {result.remaining} left"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
