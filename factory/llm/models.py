"""Model roles: which model a role uses, and with what parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelSpec(BaseModel):
    """One model as litellm sees it, plus our own per-model limits.

    Example::

        ModelSpec(model="openai/llama3", api_base="http://localhost:8000/v1", temperature=0.0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="litellm model string, e.g. 'openai/gpt-4o-mini', 'ollama/llama3', 'local/smollm2'.")
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible (or provider) endpoint.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key itself)."
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(256, gt=0, le=131072, description="Maximum completion tokens per call.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling; None keeps the backend default.")
    seed: int | None = Field(None, description="Base sampling seed; the sample index is added to it.")
    timeout_s: float = Field(120.0, gt=0.0, description="Per-call timeout in seconds.")
    max_concurrency: int = Field(16, ge=1, description="Maximum requests in flight to this model.")
    structured_output: bool = Field(
        True,
        description="Backend supports JSON-schema constrained output (llama.cpp, OpenAI, vLLM do). "
        "When false the schema is described in the prompt and the reply validated afterwards.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Extra litellm parameters passed as-is.")

    @property
    def is_local(self) -> bool:
        return self.model.startswith("local/")
