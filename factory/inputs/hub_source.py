"""Prompt rows from a Hugging Face dataset, through `datasets.load_dataset`.

One call serves the Hub (`hf://ORG/NAME`) and a local folder in Hub layout (a README.md card whose
`configs:` name the data files), so a test on a folder exercises the code a Hub build runs.

Every failure at this boundary (no network, an unknown dataset, config or split, a gated dataset
without a token) reaches the user as one line. Without network a plain `load_dataset` retries for
about half a minute, printing a warning per try; so unless the Hub is switched off on purpose
(`HF_HUB_OFFLINE=1`: the local cache answers) the Hub's host is probed first, and an unreachable one
is an immediate error. The probe is skipped behind a proxy, where a direct connection says nothing.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from factory._util.errors import UserError
from factory.config import HUB_PREFIX, HubPrompts

# ORG/NAME as the Hub spells repository ids; `hf://datasets/ORG/NAME` (huggingface_hub's file-system URL) too.
_REPO_ID = re.compile(r"^(?:datasets/)?((?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*)$")
_PROBE_TIMEOUT_S = 5.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_target(spec: HubPrompts) -> tuple[str, bool]:
    """(what to pass to `load_dataset`, whether it is on the Hub) for `spec.dataset`."""
    text = spec.dataset.strip()
    local = Path(text).expanduser()
    if not text.startswith(HUB_PREFIX) and (local.is_absolute() or text.startswith(".")):
        if not local.is_dir():
            raise UserError(
                f"prompt dataset folder not found: {local} (for a Hub dataset write hf://ORG/NAME)"
            )
        return str(local), False
    match = _REPO_ID.match(text.removeprefix(HUB_PREFIX))
    if match is None:
        raise UserError(
            f"prompts.hf: {text[:80]!r} is not a Hub dataset id (expected hf://ORG/NAME) "
            "nor an existing folder"
        )
    return match.group(1), True


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _probe_hub(label: str) -> None:
    """Fail at once, in one line, when the Hub's host cannot be reached."""
    if _offline() or any(os.environ.get(v) for v in _PROXY_VARS):
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(endpoint)
    host = parts.hostname or "huggingface.co"
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"cannot load prompts from {label}: the Hugging Face Hub at {endpoint} is not reachable "
            f"({reason}); check the network, or set HF_HUB_OFFLINE=1 to use a cached copy"
        ) from None


@contextmanager
def _quiet() -> Iterator[None]:
    """No library warnings, and progress bars only on a terminal, while the dataset loads: the build
    prints its own progress, and an error must stay one line."""
    import datasets
    from datasets.utils import logging as ds_logging

    level = ds_logging.get_verbosity()
    bars_were_on = not datasets.are_progress_bars_disabled()
    ds_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        ds_logging.set_verbosity(level)
        if bars_were_on:
            datasets.enable_progress_bars()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "OfflineModeIsEnabled" in text or type(exc).__name__ == "OfflineModeIsEnabled":
        return "the Hub is off (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set) and no cached copy was found"
    return text if len(text) <= 300 else text[:297] + "..."


def hub_label(spec: HubPrompts) -> str:
    """How messages name the dataset: hf://ORG/NAME or the folder, with config and split."""
    config = f"config {spec.config}, " if spec.config else ""
    return f"{spec.dataset.strip()} ({config}split {spec.split})"


def hub_rows(spec: HubPrompts) -> tuple[Iterator[dict[str, Any]], str]:
    """The rows of the dataset's split, lazily, and the short source name prompts record.

    Errors while the rows stream (a streaming split reads as it goes) are one-line `UserError`s too.
    """
    target, on_hub = hub_target(spec)
    label = hub_label(spec)
    if on_hub:
        _probe_hub(label)
    try:
        import datasets

        with _quiet():
            loaded = datasets.load_dataset(
                target, name=spec.config, split=spec.split, revision=spec.revision, streaming=spec.streaming
            )
    except ImportError:
        raise UserError("prompts.hf needs the `datasets` package: pip install datasets") from None
    # The Hub boundary: network, auth, an unknown config or split... all reach the user as one line.
    except Exception as exc:
        raise UserError(f"cannot load prompts from {label}: {_reason(exc)}") from None
    source = target if on_hub else Path(target).name

    def rows() -> Iterator[dict[str, Any]]:
        try:
            yield from loaded
        except Exception as exc:
            raise UserError(f"cannot read prompts from {label}: {_reason(exc)}") from None

    return rows(), source
