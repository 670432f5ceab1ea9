"""The fake OpenAI-compatible chat server's behaviour: request handlers and their shared state
(`FakeLLMApp`); `fake_server` hosts it on a thread, in a process or blocking.

Arrival times of chat requests are kept per model (`arrival_times`), so a test can count the
requests in any time window. `request_limit=(N, W)` makes the server a rate-limited provider:
at most N requests per model in any W seconds, more get 429 with Retry-After, and every answer
carries OpenAI's `x-ratelimit-{limit,remaining,reset}-requests` headers.

Endpoints: `POST /v1/chat/completions` (also `stream: true` as minimal SSE), `GET /v1/models`,
`GET /health`, `GET /stats`, `POST /reset`, `POST /outage` (body `{"on": true}`), and OpenAI's Files
and Batches endpoints (`fake_batches.py`: rows answered by the same script, with a `BatchPlan` of
completion delay, failed and expired rows).

Token counts are whitespace-split words: prompt tokens over the contents of all request messages,
completion tokens over the reply text(s). Only answered completions (HTTP 200 with a well-formed
body) add to the token totals. Faults and latency are drawn from an RNG seeded by (seed, request
index), the index counting requests since start or reset in order of arrival, so a sequential
client sees the same faults on every run. Faults fire before the script is consulted, so a retried
request gets the reply the failed attempt would have got.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any

from aiohttp import web

from factory._util.errors import UserError
from factory.testing._process import ServerStats
from factory.testing.default_replies import message_text
from factory.testing.fake_batches import BatchPlan, FakeBatches
from factory.testing.script import Fault, Script, ScriptExhausted


class FakeLLMApp:
    """The request handlers and their shared state; `FakeLLMServer` and `serve_forever` host it."""

    def __init__(
        self,
        script: Script,
        faults: Fault,
        latency_s: float = 0.0,
        latency_jitter_s: float = 0.0,
        seed: int = 0,
        keep_requests: bool = True,
        batch: BatchPlan | None = None,
        request_limit: tuple[int, float] | None = None,
    ) -> None:
        if request_limit is not None and (request_limit[0] < 1 or request_limit[1] <= 0):
            raise UserError(
                f"request_limit must be (requests >= 1, window seconds > 0); got {request_limit}."
            )
        self.request_limit = request_limit
        if latency_s < 0 or latency_jitter_s < 0:
            raise UserError(
                f"Latency must be >= 0; got latency_s={latency_s}, latency_jitter_s={latency_jitter_s}."
            )
        self.script = script
        self.faults = faults
        self.latency_s = latency_s
        self.latency_jitter_s = latency_jitter_s
        self.seed = seed
        self.keep_requests = keep_requests
        self.outage = faults.outage
        # Handlers run on one event loop, but tests read state from other threads.
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.batches = FakeBatches(self.script.reply, batch or BatchPlan(), seed)
        self._zero()

    def _zero(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._calls = self._ok = self._prompt_tokens = self._completion_tokens = 0
        self._in_flight = getattr(self, "_in_flight", 0)
        self._peak = self._in_flight
        self._status: dict[int, int] = {}
        self._faults: dict[str, int] = {}
        self._by_model: dict[str, dict[str, int]] = {}
        self._models_seen: set[str] = set()
        self._arrivals: dict[str, list[float]] = {}

    def reset(self) -> None:
        """Forget requests and stats, and restart rule counts and the request index."""
        with self._lock:
            self._zero()
        self.script.reset()
        self.batches.reset()

    def snapshot(self) -> ServerStats:
        with self._lock:
            return ServerStats(
                calls=self._calls,
                ok=self._ok,
                status_counts=dict(self._status),
                faults=dict(self._faults),
                in_flight=self._in_flight,
                peak_in_flight=self._peak,
                prompt_tokens=self._prompt_tokens,
                completion_tokens=self._completion_tokens,
                by_model={k: dict(v) for k, v in self._by_model.items()},
                **self.batches.snapshot(),
            )

    def arrival_times(self, model: str | None = None) -> list[float]:
        """`time.monotonic()` at the arrival of each chat request (of `model`, or of all), in order."""
        with self._lock:
            if model is not None:
                return list(self._arrivals.get(model, []))
            return sorted(t for times in self._arrivals.values() for t in times)

    def recorded_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests)

    def cancel_pending(self) -> None:
        """Cancel handlers still sleeping (latency or timeout faults) so shutdown is immediate."""
        for task in list(self._tasks):
            task.cancel()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/reset", self._reset)
        app.router.add_post("/outage", self._outage)
        self.batches.routes(app)
        return app

    # --- handlers ----------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot().to_dict())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": "reset"})

    async def _outage(self, request: web.Request) -> web.Response:
        try:
            self.outage = bool((await request.json()).get("on", True))
        except (ValueError, AttributeError):
            return _error(400, 'body must be a JSON object like {"on": true}', "invalid_request_error")
        return web.json_response({"outage": self.outage})

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            names = {"fake", *self._models_seen, *(r.model for r in self.script.rules if r.model)}
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "factory-fake"} for n in sorted(names)]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        with self._lock:
            index = self._calls
            self._calls += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            response = await self._answer(request, index, arrived)
            with self._lock:
                self._status[response.status] = self._status.get(response.status, 0) + 1
            return response
        finally:
            with self._lock:
                self._in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    def _fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] = self._faults.get(kind, 0) + 1

    def _limit_headers(self, model: str, arrived: float) -> tuple[dict[str, str], float | None]:
        """The rate-limit headers for a request of `model` arriving at `arrived`, and the Retry-After
        when it is over the limit (None: within it). Records the arrival."""
        with self._lock:
            times = self._arrivals.setdefault(model, [])
            if self.request_limit is None:
                if self.keep_requests:
                    times.append(arrived)
                return {}, None
            times.append(arrived)
            limit, window = self.request_limit
            if not self.keep_requests:  # a long-running server keeps only the window it needs
                del times[: max(0, len(times) - limit - 1)]
            recent = [t for t in times if t > arrived - window]
        # This request counts, accepted or not (as providers count them).
        remaining = limit - len(recent)
        # As OpenAI means it: the time until the limit is back to its initial state (for a sliding
        # window, when this request leaves it). The time until just the oldest leaves would let a
        # client that waits for it send a whole window's worth into a window that is still full.
        reset = window
        if remaining < 0:
            reset = recent[-limit - 1] + window - arrived  # when the oldest that puts it over leaves
        headers = {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(max(0, remaining)),
            "x-ratelimit-reset-requests": f"{max(0.0, reset) * 1000:.0f}ms",
        }
        return headers, (max(0.0, reset) if remaining < 0 else None)

    async def _answer(self, request: web.Request, index: int, arrived: float) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list of chat messages", "invalid_request_error")
        model = str(body.get("model") or "fake")
        with self._lock:
            if self.keep_requests:
                self.requests.append(body)
            self._models_seen.add(model)
        limit_headers, over_limit = self._limit_headers(model, arrived)
        if over_limit is not None:
            self._fault("over_limit")
            return _error(
                429,
                "fake rate limit: too many requests in the window",
                "rate_limit_exceeded",
                headers={**limit_headers, "Retry-After": f"{over_limit:.3f}"},
            )
        response = await self._reply(request, body, model, index)
        if limit_headers and not response.prepared:  # (a streamed reply has sent its headers already)
            response.headers.update(limit_headers)
        return response

    async def _reply(
        self, request: web.Request, body: dict[str, Any], model: str, index: int
    ) -> web.StreamResponse:
        faults = self.faults
        rng = (
            random.Random(self.seed * 1_000_003 + index)
            if faults.any_random or self.latency_jitter_s
            else None
        )
        delay = self.latency_s + (
            rng.uniform(0.0, self.latency_jitter_s) if rng and self.latency_jitter_s else 0.0
        )
        fault = faults.pick(rng) if rng is not None and faults.any_random else None
        if delay > 0:
            await asyncio.sleep(delay)

        if self.outage:
            self._fault("outage")
            return _error(503, "fake outage: the service is unavailable", "service_unavailable")
        if index < faults.first_n_fail:
            self._fault("first_n_fail")
            retry_headers = (
                {
                    "Retry-After": f"{faults.retry_after_s:g}",
                    "retry-after-ms": str(round(faults.retry_after_s * 1000)),
                }
                if faults.fail_status == 429
                else None
            )
            return _error(
                faults.fail_status,
                f"fake failure {index + 1} of the first {faults.first_n_fail}",
                "server_error",
                headers=retry_headers,
            )
        if fault is not None:
            self._fault(fault)
        if fault == "429":
            retry = faults.retry_after_s
            return _error(
                429,
                "fake rate limit: slow down",
                "rate_limit_exceeded",
                headers={"Retry-After": f"{retry:g}", "retry-after-ms": str(round(retry * 1000))},
            )
        if fault == "500":
            return _error(500, "fake internal server error", "server_error")
        if fault == "401":
            return _error(401, "fake: incorrect API key provided", "invalid_api_key")
        if fault == "timeout":
            await asyncio.sleep(faults.timeout_s)
        if fault == "malformed":
            assert rng is not None
            if rng.random() < 0.5:
                return web.Response(
                    status=200,
                    text='{"id": "chatcmpl-broken", "choices": [{"mess',
                    content_type="application/json",
                )
            return web.json_response({"id": f"chatcmpl-{index}", "object": "chat.completion", "model": model})

        n = body.get("n")
        count = max(1, min(n, 16)) if isinstance(n, int) else 1
        if fault == "empty":
            assert rng is not None
            # Not from the script, like the other failing faults: a retry gets the reply this one would have.
            texts = ["" if rng.random() < 0.5 else " \n\t " for _ in range(count)]
        else:
            try:
                texts = [self.script.reply(body, choice) for choice in range(count)]
            except ScriptExhausted as exc:
                return _error(500, str(exc), "script_exhausted")
            except Exception as exc:
                return _error(
                    500, f"fake LLM reply callable raised {type(exc).__name__}: {exc}", "script_error"
                )
        finish = "stop"
        if fault == "truncated":
            texts = [t[: len(t) // 2] for t in texts]
            finish = "length"

        prompt_tokens = sum(len(message_text(m).split()) for m in body["messages"] if isinstance(m, dict))
        completion_tokens = sum(len(t.split()) for t in texts)
        with self._lock:
            self._ok += 1
            self._prompt_tokens += prompt_tokens
            self._completion_tokens += completion_tokens
            per = self._by_model.setdefault(model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
            per["calls"] += 1
            per["prompt_tokens"] += prompt_tokens
            per["completion_tokens"] += completion_tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        head = {"id": f"chatcmpl-fake-{index}", "created": int(time.time()), "model": model}
        if body.get("stream"):
            return await _stream(request, head, texts, finish, usage, body.get("stream_options"))
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "finish_reason": finish,
                "logprobs": None,
            }
            for i, t in enumerate(texts)
        ]
        return web.json_response({**head, "object": "chat.completion", "choices": choices, "usage": usage})


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    """An OpenAI-shaped error body."""
    kind = (
        "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    )
    return web.json_response(
        {"error": {"message": message, "type": kind, "code": code, "param": None}},
        status=status,
        headers=headers,
    )


async def _stream(
    request: web.Request,
    head: dict[str, Any],
    texts: list[str],
    finish: str,
    usage: dict[str, int],
    options: Any,
) -> web.StreamResponse:
    """Minimal SSE: one content chunk and one finish chunk per choice, usage if asked, then [DONE]."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    chunk = {**head, "object": "chat.completion.chunk"}
    events = [
        {
            **chunk,
            "choices": [{"index": i, "delta": {"role": "assistant", "content": t}, "finish_reason": None}],
        }
        for i, t in enumerate(texts)
    ]
    events += [
        {**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": finish}]} for i in range(len(texts))
    ]
    if isinstance(options, dict) and options.get("include_usage"):
        events.append({**chunk, "choices": [], "usage": usage})
    payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    await response.write(payload.encode())
    await response.write_eof()
    return response
