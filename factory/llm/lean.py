"""The lean transport: OpenAI-compatible chat completions over one aiohttp connection pool.

litellm spends about 7 ms of CPU per call on this machine (request transformation, logging
callbacks, a thread-pool hop, pricing), an aiohttp POST about 0.3 ms; with 64 calls in flight
against a 100 ms endpoint litellm alone cannot keep up (docs/benchmarks.md). For endpoints that speak
OpenAI's chat-completions API this module sends the request litellm would send (same body: the
`openai/` prefix dropped, the same parameters) and turns the reply into the same record, with the
same error tree (`errors.py`), Retry-After hints, usage and litellm's prices (`price_map.py`). It
never imports litellm. `ModelSpec.transport` decides which path a model takes.

One `aiohttp.ClientSession` per event loop (a session belongs to its loop; Prefect tasks may run
graphs on their own loops). Each is closed when its loop finishes: a keeper task waits on the loop
and closes the session when `asyncio.run` (or any runner) cancels it at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import aiohttp

from factory.llm.breaker import endpoint_label
from factory.llm.errors import (
    AuthError,
    BadRequestError,
    LLMError,
    LLMTimeoutError,
    ProviderError,
    RateLimitError,
)
from factory.llm.models import ModelSpec
from factory.llm.price_map import token_cost
from factory.llm.rate_limit_headers import read_rate_limit_headers
from factory.llm.replies import no_choices, reply_record, retry_after_seconds

DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
# Gateway arguments that are litellm's own, not request fields.
_NOT_SENT = frozenset(
    {
        "model",
        "timeout",
        "num_retries",
        "max_retries",
        "drop_params",
        "api_base",
        "api_key",
        "extra_headers",
        "extra_body",
    }
)
# The names litellm gives HTTP failures, so both transports word a failure alike.
_STATUS_NAMES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "Timeout",
    504: "Timeout",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


def base_url(spec: ModelSpec) -> str:
    """Where an `openai/` model is served: its api_base, else OpenAI's, as litellm resolves it."""
    return (
        spec.api_base
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
        or DEFAULT_OPENAI_BASE
    ).rstrip("/")


def request_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON body litellm sends for these gateway arguments (`Gateway._call_kwargs`)."""
    body = {k: v for k, v in kwargs.items() if k not in _NOT_SENT}
    body["model"] = kwargs["model"].removeprefix("openai/")
    body.update(kwargs.get("extra_body") or {})
    return body


def http_error(status: int, text: str, headers: Any, model: str, api_base: str | None) -> LLMError:
    """The error for an HTTP failure, classified as the litellm path classifies it (`_translate.py`)."""
    try:
        detail = json.loads(text)["error"]
        message = str(detail.get("message") or detail) if isinstance(detail, dict) else str(detail)
    except (ValueError, KeyError, TypeError):
        message = text.strip()[:300] or "(empty body)"
    name = _STATUS_NAMES.get(status, "APIError")
    wording = f"{name}: HTTP {status}: {message}"
    if status == 429:
        error = RateLimitError(
            f"{model}: {wording}", model=model, status=status, retry_after=retry_after_seconds(headers)
        )
        error.server_limits = read_rate_limit_headers(headers)
        return error
    if status in (401, 403):
        where = endpoint_label(model, api_base)
        return AuthError(
            f"{where}: credentials rejected (HTTP {status}): {wording}", model=model, status=status
        )
    if status in (408, 504):  # 504: the gateway in front of the model timed out
        return LLMTimeoutError(f"{model}: {wording}", model=model, status=status)
    if status in (400, 404, 422):  # (413 and 409 are retried, as litellm classifies them)
        return BadRequestError(f"{model}: {wording}", model=model, status=status)
    return ProviderError(f"{model}: {wording}", model=model, status=status)


def parse_reply(raw: bytes, spec: ModelSpec, latency_s: float) -> dict[str, Any]:
    """The record of an HTTP 200 body; malformed bodies and empty replies raise, as on the litellm path."""
    model = spec.model
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ProviderError(
            f"{model}: malformed response: the body is not JSON ({raw[:80]!r})", model=model
        ) from None
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise no_choices(model)
    choice = choices[0]
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    usage: dict[str, Any] = payload["usage"] if isinstance(payload.get("usage"), dict) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    text = message.get("content")
    return reply_record(
        model,
        text=text if isinstance(text, str) or text is None else str(text),
        finish_reason=choice.get("finish_reason"),
        has_tool_call=bool(message.get("tool_calls") or message.get("function_call")),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=token_cost(model, prompt, completion, cached) or 0.0,
        latency_s=latency_s,
    )


class LeanTransport:
    """Sends chat completions for `ModelSpec`s with `uses_lean_transport`; one pool per event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            # No connection limit of its own: the gateway's semaphores bound the calls in flight.
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
            keeper = loop.create_task(_close_at_shutdown(session), name="factory-lean-session")
            _KEEPERS.add(keeper)
            keeper.add_done_callback(_KEEPERS.discard)
            with self._lock:
                self._sessions[loop] = session
        return session

    async def complete(self, spec: ModelSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
        """One call; returns the reply's record or raises an `LLMError`."""
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {kwargs.get('api_key') or os.environ.get('OPENAI_API_KEY', '')}",
            **(kwargs.get("extra_headers") or {}),
        }
        data = json.dumps(request_body(kwargs), ensure_ascii=False).encode("utf-8")
        timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
        started = time.perf_counter()
        try:
            async with self._session().post(
                f"{base_url(spec)}/chat/completions", data=data, headers=headers, timeout=timeout
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise http_error(
                        response.status,
                        raw.decode("utf-8", "replace"),
                        response.headers,
                        spec.model,
                        spec.api_base,
                    )
                server_limits = read_rate_limit_headers(response.headers)  # None without x-ratelimit-*
        except LLMError:
            raise
        except TimeoutError:
            raise LLMTimeoutError(
                f"{spec.model}: Timeout: no reply within {spec.timeout_s:g} s", model=spec.model
            ) from None
        except aiohttp.ClientError as exc:  # refused, reset, disconnected, truncated body
            raise ProviderError(
                f"{spec.model}: APIConnectionError: {type(exc).__name__}: {exc}", model=spec.model
            ) from None
        record = parse_reply(raw, spec, time.perf_counter() - started)
        if server_limits is not None:
            record["rate_limits"] = server_limits  # taken off by the gateway before the record is cached
        return record

    def translate(self, exc: BaseException, spec: ModelSpec) -> LLMError:
        """`complete` raises `LLMError`s; this covers what happens around it (the gateway's own deadline)."""
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, TimeoutError):
            return LLMTimeoutError(
                f"{spec.model}: Timeout: no reply within {spec.timeout_s:g} s", model=spec.model
            )
        return ProviderError(f"{spec.model}: {type(exc).__name__}: {exc}", model=spec.model)

    def estimate_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        return token_cost(model, prompt_tokens, completion_tokens)

    def close(self) -> None:
        """Close what is still open: pools of loops that ended without cancelling their tasks."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            connector = session.connector
            if connector is not None and not connector.closed and session._loop.is_closed():
                # Nothing can be awaited on a closed loop; this drops the pool's sockets at once.
                connector._close()


# A loop holds its tasks weakly; the keepers must outlive the gateway that started them (a gateway
# closed and dropped inside a running loop still leaves its pool open until the loop ends).
_KEEPERS: set[asyncio.Task[None]] = set()


async def _close_at_shutdown(session: aiohttp.ClientSession) -> None:
    try:
        await asyncio.Event().wait()  # until the loop's runner cancels the tasks left at its end
    finally:
        await session.close()
