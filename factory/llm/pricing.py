"""Prices from litellm's bundled price table, for estimates made before any call.

The gateway prices finished calls from their responses; this prices token counts we only expect.
"""

from __future__ import annotations

from factory.llm._litellm_env import litellm


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for these token counts on `model` (a litellm model string), or None when the price is unknown.

    The embedded model (`local/...`) is free. Self-hosted endpoints (`openai/<anything>` with an
    api_base) are usually absent from the table and come back as None, not as a guess.

    >>> estimate_cost("local/smollm2", 1000, 1000)
    0.0
    """
    if model.startswith("local/"):
        return 0.0
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return float(prompt_cost) + float(completion_cost)
