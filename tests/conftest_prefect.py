"""Prefect test support (a pytest plugin): a temporary PREFECT_HOME and ONE ephemeral API per session.

Test modules that run flows start with::

    import conftest_prefect  # noqa: F401  (first: PREFECT_HOME must be set before Prefect is imported)
    pytest_plugins = ["conftest_prefect"]

and mark their tests `@pytest.mark.prefect` and use the `prefect_api` fixture. The API server is a
subprocess started once (8-40 s, depending on the machine's load) and stopped at the end of the
session by `prefect_test_harness`; the temporary home and database are removed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="factory-prefect-home-"))
atexit.register(shutil.rmtree, _HOME, True)  # also when no test here started the API
_PREFECT_ALREADY_IMPORTED = "prefect" in sys.modules
os.environ["PREFECT_HOME"] = str(_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Never talk to a server or Cloud workspace configured on the developer's machine.
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "240")

STARTUP_TIMEOUT_S = 240


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """The URL of the session's ephemeral Prefect API; flows run against it with heartbeats off."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home = {"home": str(_HOME)} if _PREFECT_ALREADY_IMPORTED else {}
    try:
        # The heartbeat thread adds ~1 s to every flow run and matters only for deployed runs.
        with (
            temporary_settings(updates=home),
            prefect_test_harness(server_startup_timeout=STARTUP_TIMEOUT_S),
            temporary_settings(updates={"flows.heartbeat_frequency": None}),
        ):
            yield str(PREFECT_API_URL.value())
    finally:
        shutil.rmtree(_HOME, ignore_errors=True)


# ---------------------------------------------------------------- helpers shared by the flow tests

TIMING_COLUMNS = {"latency_s", "finished_at", "created_at"}


def write_build_config(
    folder: Path,
    base_url: str,
    *,
    name: str,
    prompts: list[str] | None = None,
    n_prompts: int = 6,
    shard_size: int = 2,
    gate: bool = False,
) -> Path:
    """A build spec whose every role is the fake server (`openai/fake`), with its prompt file."""
    import json

    import yaml

    texts = (
        prompts
        if prompts is not None
        else [f"Question {i}: how do {name} builds work?" for i in range(n_prompts)]
    )
    prompt_file = folder / f"{name}-prompts.jsonl"
    prompt_file.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": t}) + "\n" for i, t in enumerate(texts))
    )
    model = {"model": "openai/fake", "api_base": base_url}
    spec = {
        "run": {"name": name, "output_dir": str(folder / "outputs"), "shard_size": shard_size, "seed": 3},
        "models": {
            "generator": {**model, "temperature": 0.8},
            "judge": {**model, "temperature": 0.0},
            "rationale_writer": model,
        },
        "prompts": {"path": str(prompt_file)},
        "gate": {"enabled": gate, "human_set_limit": 8},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def comparable_rows(path: Path) -> list[str]:
    """A parquet table as sorted JSON rows without timing columns: equal tables give equal lists."""
    import json

    import polars as pl

    frame = pl.read_parquet(path)
    frame = frame.drop([c for c in frame.columns if c in TIMING_COLUMNS])
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in frame.to_dicts())


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `factory ARGS` in this process; returns (exit code, stdout, stderr)."""
    from factory.cli import main

    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
