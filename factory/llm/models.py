"""Model roles: which model a role uses, and with what parameters."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from factory._util.yaml_input import shorten
from factory.llm.batch_settings import BATCH_PROVIDERS
from factory.llm.credentials import find_credentials, secret_like, url_holds_credentials

API_BASE_HOLDS_CREDENTIALS = (
    "api_base must not hold credentials (user:password, a key in the query): put the "
    "key in an environment variable and name it in api_key_env"
)


def checked_api_base(url: str | None) -> str | None:
    """`url` unchanged, or `ValueError` when it carries credentials (shared by every config that takes one)."""
    if url is not None and url_holds_credentials(url):
        raise ValueError(API_BASE_HOLDS_CREDENTIALS)
    return url


# The models the embedded engine can run (`local/<name>`, see factory/llm/local.py).
EMBEDDED_MODELS = ("smollm2",)

# What the lean transport (`lean.py`) sends as they are: fields of OpenAI's chat-completions request
# body, plus the two litellm spellings it maps (`extra_headers` -> headers, `extra_body` -> body).
# Any other parameter is litellm's to interpret, so a spec using one goes through litellm.
LEAN_PARAMS = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "n",
        "stop",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_completion_tokens",
        "reasoning_effort",
        "service_tier",
        "metadata",
        "store",
        "modalities",
        "prediction",
        "audio",
        "web_search_options",
        "extra_headers",
        "extra_body",
    }
)


class ModelSpec(BaseModel):
    """One model as litellm sees it, plus our own per-model limits.

    Example::

        ModelSpec(model="openai/llama3", api_base="http://localhost:8000/v1", temperature=0.0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = Field(
        description="litellm model string, e.g. 'openai/gpt-4o-mini', 'ollama/llama3', 'local/smollm2'."
    )
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible (or provider) endpoint.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key itself)."
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(256, gt=0, le=131072, description="Maximum completion tokens per call.")
    top_p: float | None = Field(
        None, gt=0.0, le=1.0, description="Nucleus sampling; None keeps the backend default."
    )
    seed: int | None = Field(None, description="Base sampling seed; the sample index is added to it.")
    timeout_s: float = Field(120.0, gt=0.0, description="Per-call timeout in seconds.")
    max_concurrency: int = Field(
        16,
        ge=1,
        description="Maximum requests in flight to this model (per process, "
        "or across every process of the build once any rate limit below is set).",
    )
    # Rate limits (factory/llm/rate_limit.py, docs/rate-limits.md): held across every process of a build.
    rpm: int | None = Field(
        None,
        ge=1,
        description="Requests per minute: no 60 s window ever holds more "
        "requests to this model (retries included).",
    )
    tpm: int | None = Field(
        None,
        ge=1,
        description="Tokens per minute, input plus output, as the provider "
        "counts them (in-flight calls hold their estimate and max_tokens).",
    )
    input_tpm: int | None = Field(None, ge=1, description="Input (prompt) tokens per minute.")
    output_tpm: int | None = Field(
        None, ge=1, description="Output (completion) tokens per minute; in-flight calls hold max_tokens."
    )
    adaptive_concurrency: bool = Field(
        False,
        description="AIMD: halve this model's window of calls in flight on a 429, grow it by one after "
        "a window of successes, between 1 and max_concurrency.",
    )
    rate_limit_headers: bool = Field(
        True,
        description="Follow the x-ratelimit-remaining-*/reset-* response headers: no more requests "
        "than the server says remain until its reset.",
    )
    structured_output: bool = Field(
        True,
        description="Backend supports JSON-schema constrained output (llama.cpp, OpenAI, vLLM do). "
        "When false the schema is described in the prompt and the reply validated afterwards.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Extra litellm parameters passed as-is.")
    transport: Literal["auto", "lean", "litellm"] = Field(
        "auto",
        description="How calls reach the model. litellm: through litellm (every provider). lean: a direct "
        "HTTP client for OpenAI-compatible chat completions (`openai/...` models; vLLM, SGLang, TGI, llama.cpp "
        "server, Ollama's /v1), same records, cache keys, errors and litellm prices at a fraction of the CPU "
        "per call. auto (default): lean for an `openai/` model with an api_base and only OpenAI request "
        "params, litellm otherwise.",
    )
    batch: bool = Field(
        False,
        description="Send this role's calls through the provider's batch API (OpenAI, Azure, Vertex, Bedrock, or "
        "an OpenAI-compatible server with /v1/files and /v1/batches such as vLLM) at the batch price: calls "
        "are collected per shard, sent as one batch and polled; replies are cached like online ones "
        "(docs/batch.md).",
    )

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        # litellm takes anything here and fails each call later with a connection error that the
        # retries and the circuit breaker then spend time on; a typo should stop the config at once.
        if url is None:
            return None
        # The value is not echoed: a key pasted into the wrong field must not land in a log.
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            found = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise ValueError(
                f"api_base must be an http:// or https:// URL such as http://localhost:8000/v1 "
                f"(found {found})"
            )
        if not parts.hostname:
            raise ValueError("api_base must name a host, as in http://localhost:8000/v1")
        return url

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        # A pasted key here would be saved in config.yaml; the message must not echo it back.
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(
                "api_key_env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                "not the key itself"
            )
        return name

    @field_validator("model")
    @classmethod
    def _model_string(cls, model: str) -> str:
        if not model.strip():
            raise ValueError(
                "model is empty: give a litellm model string, e.g. 'openai/gpt-4o-mini' or 'local/smollm2'"
            )
        if model != model.strip() or any(c.isspace() for c in model):
            raise ValueError(
                "model must not contain spaces (a litellm model string, e.g. 'openai/gpt-4o-mini')"
            )
        if model.startswith("local/") and model.removeprefix("local/") not in EMBEDDED_MODELS:
            names = ", ".join(f"local/{name}" for name in EMBEDDED_MODELS)
            raise ValueError(f"unknown embedded model {shorten(model)}: the embedded engine runs {names}")
        if secret_like(model):
            raise ValueError(
                "model looks like an API key: put the key in an environment variable and name it "
                "in api_key_env"
            )
        return model

    @field_validator("api_base")
    @classmethod
    def _no_secret_in_url(cls, url: str | None) -> str | None:
        return checked_api_base(url)

    @field_validator("params")
    @classmethod
    def _no_secrets_in_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        # Any depth, by name and by value: params are saved in config.yaml and sent with every call.
        # The message names where, never what (the value must not reach a terminal or a log).
        found = find_credentials(params)
        if found:
            shown = ", ".join(found[:3]) + (" ..." if len(found) > 3 else "")
            raise ValueError(
                f"params must not hold credentials ({shown}): put the key in an "
                "environment variable and name it in api_key_env"
            )
        return params

    @model_validator(mode="after")
    def _lean_needs_openai_compatible(self) -> ModelSpec:
        if self.transport == "lean":
            if not self.model.startswith("openai/"):
                raise ValueError(
                    f"transport: lean speaks OpenAI's chat-completions API, which needs an "
                    f"'openai/...' model (got '{self.model}'); use transport: litellm or auto"
                )
            other = sorted(k for k in self.params if k not in LEAN_PARAMS)
            if other:
                raise ValueError(
                    f"transport: lean sends only OpenAI request fields; params {', '.join(other)} "
                    "need litellm (transport: litellm or auto)"
                )
        return self

    @model_validator(mode="after")
    def _batch_provider(self) -> ModelSpec:
        if self.batch and self.model.partition("/")[0] not in BATCH_PROVIDERS:
            names = ", ".join(f"{p}/..." for p in BATCH_PROVIDERS)
            raise ValueError(
                f"batch: true needs a provider with a batch API ({names}); '{self.model}' has none"
            )
        if self.batch and self.params.get("stream"):
            raise ValueError("batch: true cannot stream replies (params.stream)")
        return self

    @property
    def rate_limited(self) -> bool:
        """Whether calls to this model go through a limiter (a cheap check on every call)."""
        return (
            self.rpm is not None
            or self.tpm is not None
            or self.input_tpm is not None
            or self.output_tpm is not None
            or self.adaptive_concurrency
        )

    @property
    def is_local(self) -> bool:
        return self.model.startswith("local/")

    @property
    def uses_lean_transport(self) -> bool:
        """Whether calls go through the lean transport (see `transport`)."""
        if self.transport != "auto":
            return self.transport == "lean"
        return (
            self.model.startswith("openai/")
            and self.api_base is not None
            and all(k in LEAN_PARAMS for k in self.params)
        )
