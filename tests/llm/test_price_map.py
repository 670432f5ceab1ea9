"""The lean transport's prices (read from litellm's bundled table without importing litellm) are
litellm's own, for every OpenAI-compatible chat model in the table, at small and long prompts."""

from __future__ import annotations

import pytest

from factory.llm._litellm_env import litellm
from factory.llm.price_map import price_table, token_cost


def _openai_chat_models() -> list[str]:
    return [
        name if "/" in name else f"openai/{name}"
        for name, entry in price_table().items()
        if entry.get("mode") == "chat" and entry.get("litellm_provider") == "openai"
    ]


def test_the_table_is_litellms_and_has_openai_chat_models() -> None:
    assert len(_openai_chat_models()) > 50


@pytest.mark.parametrize(("prompt", "completion"), [(1000, 500), (300_000, 2000)])
def test_token_cost_equals_litellms_cost_per_token(prompt: int, completion: int) -> None:
    compared = 0
    for model in _openai_chat_models():
        try:
            expected = sum(
                litellm.cost_per_token(model=model, prompt_tokens=prompt, completion_tokens=completion)
            )
        except Exception:
            expected = None
        ours = token_cost(model, prompt, completion)
        if ours is None:
            assert not expected, model  # unpriced here only where litellm prices nothing
            continue
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12), model
        compared += 1
    assert compared > 50


def test_unknown_and_local_models() -> None:
    assert token_cost("openai/my-self-hosted-llama", 100, 100) is None
    assert token_cost("local/smollm2", 100, 100) == 0.0
    # Cached prompt tokens cost the cache-read rate where the table has one.
    full, cached = token_cost("openai/gpt-4o-mini", 1000, 0), token_cost("openai/gpt-4o-mini", 1000, 0, 1000)
    assert full is not None and cached is not None and cached < full
