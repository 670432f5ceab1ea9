"""The embedded SmolLM2-135M model, for real, through the gateway (litellm custom provider -> llama.cpp)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from factory.llm import Completion, Gateway, ModelSpec

pytestmark = pytest.mark.embedded


class Verdict(BaseModel):
    evidence: str = Field(max_length=200)
    answer: Literal["A", "B", "C"]


def test_short_generation_and_constrained_json_verdict(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    gateway = Gateway(
        {"local": ModelSpec(model="local/smollm2", temperature=0.0, max_tokens=64)},
        cache_path=tmp_path / "cache.sqlite",
    )

    question = [{"role": "user", "content": "Name one primary colour."}]
    judge = [
        {
            "role": "user",
            "content": (
                "Question: What is 2 + 2?\nAnswer A: 4\nAnswer B: 5\nWhich answer is better? "
                "Reply in JSON with evidence and answer (A, B or C for a tie)."
            ),
        }
    ]

    async def run() -> tuple[Completion, Completion]:
        return (
            await gateway.complete("local", question),
            await gateway.complete("local", judge, schema=Verdict),
        )

    answer, verdict = asyncio.run(run())
    assert answer.text.strip()
    assert 0 < answer.completion_tokens <= 64 and 0 < verdict.completion_tokens <= 64  # max_tokens holds
    # Grammar-constrained: the reply text itself is valid JSON for the schema, and it is what was parsed.
    assert isinstance(verdict.parsed, Verdict)
    assert Verdict.model_validate_json(verdict.text) == verdict.parsed
    usage = gateway.usage.snapshot()
    assert usage["calls"] == 2 and usage["cache_hits"] == 0 and usage["cost_usd"] == 0.0
    assert usage["completion_tokens"] == answer.completion_tokens + verdict.completion_tokens
    assert usage["prompt_tokens"] == answer.prompt_tokens + verdict.prompt_tokens

    # The same calls again are answered from the cache, word for word, with no second model call.
    again_answer, again_verdict = asyncio.run(run())
    assert (again_answer.text, again_verdict.text) == (answer.text, verdict.text)
    usage = gateway.usage.snapshot()
    assert usage["calls"] == 2 and usage["cache_hits"] == 2, usage
    gateway.close()
