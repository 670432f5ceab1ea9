"""A small build on the fake server whose three-juror jury splits on the odd-numbered prompts: the
review tests label its contested pairs (by API and in a real browser) and rebuild the dataset."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
from _reliability import build_config, fake_model

from factory.config import parse_config
from factory.pipeline import run_build
from factory.testing import FakeLLMServer, Rule

QUALITY = re.compile(r"\[quality (\d+)\]")
QUESTION = re.compile(r"Question (\d+):")
QUALITIES = (3, 8)  # sample 0 and sample 1 of every prompt


def juror(contrary_on_odd: bool) -> Any:
    """A combined-protocol juror scoring by the `[quality N]` tags; a contrary one inverts its scores on
    odd-numbered questions, so the jury votes 2-1 there and 3-0 elsewhere."""

    def reply(body: dict[str, Any]) -> str:
        text = "\n".join(str(m.get("content", "")) for m in body["messages"])
        a, b = (int(q) for q in QUALITY.findall(text)[-2:])
        if contrary_on_odd and int(QUESTION.findall(text)[0]) % 2 == 1:
            a, b = b, a
        return f"### Evaluation Evidence: compared.\n### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"

    return reply


def server() -> FakeLLMServer:
    return FakeLLMServer(
        rules=[
            Rule(model="juror1", reply=juror(False)),
            Rule(model="juror2", reply=juror(False)),
            Rule(model="juror3", reply=juror(True)),
            Rule(model="gen", reply=lambda body: f"An answer [quality {QUALITIES[body['seed']]}]."),
        ]
    )


def build(tmp: Path, base_url: str, prompts: int = 4) -> Path:
    config = build_config(
        base_url,
        tmp,
        prompts=prompts,
        shard_size=2,
        concurrency=2,
        judging={"setting": {"kind": "jury", "models": ["juror_a", "juror_b", "juror_c"]}},
        variants={"enabled": False},
    )
    config["models"].update(
        {
            "generator": {**fake_model(base_url), "model": "openai/gen"},
            **{
                f"juror_{k}": {**fake_model(base_url), "model": f"openai/juror{i}"}
                for i, k in enumerate("abc", start=1)
            },
        }
    )
    return run_build(parse_config(config)).run_dir


def odd(pair: dict[str, Any]) -> bool:
    return int(QUESTION.findall(pair["prompt"])[0]) % 2 == 1


def dpo_rows(run_dir: Path) -> list[dict[str, Any]]:
    files = sorted((run_dir / "dataset" / "dpo").glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).to_dicts()
