"""How batch-mode calls are collected, polled and retried (`gateway.batch` in a build config).

Kept apart from `batch.py` so that loading a config imports neither litellm nor aiohttp.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# litellm's model prefixes whose batch API the factory drives (`ModelSpec.batch`). An `openai/` model
# with an api_base is any OpenAI-compatible server with /v1/files and /v1/batches (vLLM has them).
BATCH_PROVIDERS = ("openai", "azure", "vertex_ai", "bedrock")


class BatchSettings(BaseModel):
    """Collection, polling and retry of the calls of models with `batch: true`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_rows: int = Field(
        5000,
        ge=1,
        le=50000,
        description="Most requests in one batch (OpenAI allows 50,000); a full collector is sent at once.",
    )
    quiet_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="A collector is sent once no new request arrived for "
        "this long: a shard's prompts reach a stage together, so this gathers them.",
    )
    max_wait_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="A collector is sent at the latest this long after "
        "its first request, however steadily requests keep arriving.",
    )
    poll_s: float = Field(
        10.0, gt=0, le=3600, description="First wait between polls of a batch; doubles up to poll_max_s."
    )
    poll_max_s: float = Field(120.0, gt=0, le=3600, description="Longest wait between polls of a batch.")
    row_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Batches a request may go through: rows that failed "
        "(5xx, 429) or expired are resubmitted alone, in a new batch, until this many; "
        "then the call fails with the row's error.",
    )
    completion_window: str = Field(
        "24h",
        pattern=r"^\d+h$",
        description="The batch API's completion window (OpenAI and Azure accept 24h).",
    )
