"""The embedded SmolLM2-135M model, for real, through the gateway (litellm custom provider -> llama.cpp)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from factory.llm import Gateway, ModelSpec

pytestmark = pytest.mark.embedded


class Verdict(BaseModel):
    evidence: str = Field(max_length=200)
    answer: Literal["A", "B", "C"]


def test_short_generation_and_constrained_json_verdict(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    gateway = Gateway({"local": ModelSpec(model="local/smollm2", temperature=0.0, max_tokens=64)},
                      cache_path=tmp_path / "cache.sqlite")

    async def run() -> tuple[str, Verdict, int]:
        answer = await gateway.complete("local", [{"role": "user", "content": "Name one primary colour."}])
        verdict = await gateway.complete("local", [{"role": "user", "content": (
            "Question: What is 2 + 2?\nAnswer A: 4\nAnswer B: 5\nWhich answer is better? "
            "Reply in JSON with evidence and answer (A, B or C for a tie).")}], schema=Verdict)
        assert isinstance(verdict.parsed, Verdict)
        return answer.text, verdict.parsed, answer.completion_tokens

    text, parsed, tokens = asyncio.run(run())
    assert text.strip() and tokens > 0
    assert parsed.answer in ("A", "B", "C")  # grammar-constrained: always parseable, whatever it decides
    usage = gateway.usage.snapshot()
    assert usage["calls"] == 2 and usage["cost_usd"] == 0.0
    gateway.close()
