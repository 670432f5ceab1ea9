"""litellm's Files and Batches API for one model: upload a JSONL file, create, poll and read a batch.

Provider by the model's prefix (`BATCH_PROVIDERS`). `openai/` honours `api_base` in every call
(litellm passes it to the OpenAI SDK client), which is how an OpenAI-compatible server such as vLLM,
or the test suite's fake server, is reached. Azure takes `api_base` and `api_version` (params) too.
Vertex and Bedrock get the model with each call (litellm converts the OpenAI-format file for them)
and their own credentials from the environment, as for their online calls; those two paths are not
exercised by the test suite (no such server exists here).

Importing this module imports litellm (seconds): the gateway imports it only for a batch-mode model.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

from factory.llm._litellm_env import litellm
from factory.llm._translate import translate
from factory.llm.errors import LLMError
from factory.llm.models import ModelSpec

# litellm's success logging of a finished batch prices it from the output file through a coroutine
# it never awaits on the OpenAI path; the warning is litellm's, and the pricing here is our own.
warnings.filterwarnings("ignore", message="coroutine 'OpenAIFilesAPI.afile_content' was never awaited")

ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchState:
    """What a poll says of a batch."""

    status: str
    output_file_id: str | None
    error_file_id: str | None
    errors: str | None = None


class BatchClient:
    """The batch API calls of one `ModelSpec` (raises `LLMError`s, as the transports do)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.provider = spec.model.partition("/")[0]
        self._kwargs: dict[str, Any] = {}
        if spec.api_base:
            self._kwargs["api_base"] = spec.api_base
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if key:
            self._kwargs["api_key"] = key
        elif spec.api_base and self.provider == "openai":
            self._kwargs["api_key"] = "no-key"  # OpenAI-compatible local servers accept any key
        if self.provider == "azure" and spec.params.get("api_version"):
            self._kwargs["api_version"] = spec.params["api_version"]
        if self.provider in ("vertex_ai", "bedrock"):
            self._kwargs["model"] = spec.model

    @property
    def secret(self) -> str | None:
        return self._kwargs.get("api_key") if self.spec.api_key_env else None

    def _error(self, exc: BaseException) -> LLMError:
        return translate(exc, self.spec.model, self.spec.api_base)

    async def upload(self, jsonl: bytes) -> str:
        """Upload a batch input file; returns its file id."""
        try:
            file = await litellm.acreate_file(
                file=("factory-batch.jsonl", jsonl, "application/jsonl"),
                purpose="batch",
                custom_llm_provider=self.provider,
                **self._kwargs,
            )
        except Exception as exc:
            raise self._error(exc) from None
        return str(file.id)

    async def create(self, file_id: str, completion_window: str, metadata: dict[str, str]) -> str:
        """Create a batch over an uploaded file; returns the batch id."""
        try:
            batch = await litellm.acreate_batch(
                completion_window=completion_window,
                endpoint=ENDPOINT,
                input_file_id=file_id,
                custom_llm_provider=self.provider,
                metadata=metadata,
                **self._kwargs,
            )
        except Exception as exc:
            raise self._error(exc) from None
        return str(batch.id)

    async def retrieve(self, batch_id: str) -> BatchState:
        try:
            batch = await litellm.aretrieve_batch(
                batch_id=batch_id, custom_llm_provider=self.provider, **self._kwargs
            )
        except Exception as exc:
            raise self._error(exc) from None
        errors = getattr(batch, "errors", None)
        data = getattr(errors, "data", None) or []
        detail = "; ".join(str(getattr(e, "message", e)) for e in data) if data else None
        return BatchState(
            status=str(batch.status),
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            errors=detail,
        )

    async def content(self, file_id: str) -> bytes:
        """The bytes of an output or error file."""
        try:
            response = await litellm.afile_content(
                file_id=file_id, custom_llm_provider=self.provider, **self._kwargs
            )
        except Exception as exc:
            raise self._error(exc) from None
        return bytes(response.content)
