"""Shared set-up of the reliability tests: small builds against the fake server, and table comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
# Columns about how a run went (time, cache hits), not what it produced: they differ between an
# uninterrupted run and a resumed one of the same build.
TIMING_COLUMNS = (
    "latency_s",
    "elapsed_s",
    "duration_s",
    "created_at",
    "finished_at",
    "started_at",
    "cached_calls",
    "cached",
    "cache_hits",
)
TABLES = ("candidates", "judgments", "pairs", "failures")


def write_prompts(path: Path, n: int, *, prefix: str = "q") -> Path:
    """n distinct prompts as jsonl with ids `<prefix>000`..."""
    lines = [
        json.dumps(
            {"id": f"{prefix}{i:03d}", "prompt": f"Question {i}: explain topic number {i} in a few words."}
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fake_model(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"model": "openai/fake", "api_base": base_url, "max_tokens": 64, **extra}


def build_config(
    base_url: str, tmp: Path, *, prompts: int = 8, shard_size: int = 4, concurrency: int = 4, **sections: Any
) -> dict[str, Any]:
    """A small build spec (as data) whose every role is the fake server; gate off (no human set calls)."""
    prompt_file = write_prompts(tmp / "prompts.jsonl", prompts)
    config: dict[str, Any] = {
        "run": {
            "name": "rel",
            "output_dir": str(tmp / "outputs"),
            "seed": 3,
            "shard_size": shard_size,
            "concurrency": concurrency,
            "salvage_backoff_s": 0.05,
        },
        "models": {
            "generator": fake_model(base_url, temperature=0.8),
            "judge": fake_model(base_url, temperature=0.0),
            "rationale_writer": fake_model(base_url, temperature=0.3),
        },
        "gateway": {"backoff_base_s": 0.01, "backoff_max_s": 0.05},
        "prompts": {"path": str(prompt_file)},
        "gate": {"enabled": False},
    }
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value}
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def comparable(frame: pl.DataFrame) -> list[str]:
    """Rows as sorted JSON strings, timing columns left out: equal lists = same rows."""
    keep = [c for c in frame.columns if c not in TIMING_COLUMNS]
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in frame.select(keep).to_dicts())


def tables(run_dir: Path) -> dict[str, list[str]]:
    return {name: comparable(pl.read_parquet(run_dir / f"{name}.parquet")) for name in TABLES}


def manifest(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return data


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DO_NOT_TRACK": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m factory ARGS` in a subprocess, the way a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "factory", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env or cli_env(),
        timeout=timeout,
        cwd=cwd or REPO,
    )


class OutageAfter:
    """A fake-server reply function that answers normally and switches the server's outage on at its
    `n`-th answer: `with FakeLLMServer(default=OutageAfter(20)) as server: reply.server = server`."""

    def __init__(self, n: int) -> None:
        import threading

        self.n = n
        self.answered = 0
        self.server: Any = None
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        from factory.testing import default_reply

        with self._lock:
            self.answered += 1
            if self.answered == self.n:
                self.server.set_outage(True)
        return default_reply(body)
