"""Per-model rate limits that hold: requests and tokens per minute, the server's own account of its
window, and adaptive (AIMD) concurrency. The gateway awaits `acquire` before every attempt of a
limited model (retries included) and reports how the attempt went with `finish`.

Why a log of held slots and not a token bucket: a bucket whose burst equals the RPM lets through
up to twice the RPM in its first minute, and a bucket never knows when a request reached the
server. Here every attempt holds a slot from the moment it is granted until `window_s` after it
*ended* (reply or error). A request reaches the server between its grant and its end, so for any
window [a, a + 60 s) every request that arrived in it was granted before a + 60 s and holds its slot
until after a + 60 s: all of them hold a slot at once, so there are at most `rpm` of them. That is
true whatever the network delays, the clocks of the client machines, or the number of processes
sharing one limiter (`rate_limit_dask.py`). The price: a slot is busy for a call's latency plus the
window, so against an endpoint that takes L seconds per call the steady rate is rpm x 60 / (60 + L).

Tokens work the same way: a call holds its estimated input tokens and its `max_tokens` while in
flight, and the provider's counts (the reply's usage) from its end for a window. A call whose
estimate alone exceeds a limit waits for an empty window and then goes alone rather than never.

Server hints (`rate_limit_headers.py`): after a response that says "R requests remaining, reset in
T", at most R, less those granted since that request, are granted until then. A 429 with Retry-After
pauses the model for every caller, not just for the call that got it.

AIMD (`adaptive`): the model's window of calls in flight starts at `max_in_flight`, halves on a 429
(once per round trip: 429s of calls granted before the last decrease do not halve it again, as in
TCP) and grows by one after a window's worth of successes, between 1 and `max_in_flight`.

`ModelLimiter` is thread-safe and loop-agnostic: waiters on any event loop (Prefect tasks may run
their own) are woken with `call_soon_threadsafe`. Waiters are served first come, first served.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from factory.llm.models import ModelSpec
from factory.llm.rate_limit_headers import ServerLimits

WINDOW_S = 60.0


@dataclass(frozen=True)
class ModelLimits:
    """The configured limits of one model (from `ModelSpec`); None: not limited on that count."""

    rpm: int | None = None
    tpm: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None
    adaptive: bool = False
    max_in_flight: int = 16
    window_s: float = WINDOW_S
    # An attempt not finished after this long counts as ended (its process may have died).
    stale_after_s: float = 600.0

    @property
    def counts_tokens(self) -> bool:
        return self.tpm is not None or self.input_tpm is not None or self.output_tpm is not None


@dataclass(frozen=True)
class Cost:
    """What one attempt holds: one request, and its (estimated, then actual) tokens."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `ok`: a reply (its usage replaces the estimate); `rate_limited`: a 429."""

    kind: Literal["ok", "rate_limited", "failed"]
    input_tokens: int | None = None
    output_tokens: int | None = None
    retry_after_s: float | None = None
    server: ServerLimits | None = None


@dataclass
class _Held:
    granted_at: float
    cost: Cost
    epoch: int
    seq: int  # grants before this one
    tokens_mark: int  # tokens granted up to and including this one


@dataclass
class _ServerHint:
    """What the latest response said is left, and how many grants had happened when it was granted."""

    seq: int = -1
    requests_left: int | None = None
    requests_until: float = 0.0
    tokens_left: int | None = None
    tokens_until: float = 0.0
    tokens_mark: int = 0


@dataclass
class LimiterStats:
    """Figures for tests and the report: grants, the AIMD window's path, the busiest moments."""

    granted: int = 0
    waited: int = 0
    peak_in_flight: int = 0
    window: int = 0
    min_window: int = 0
    decreases: int = 0
    increases: int = 0
    rate_limited: int = 0


class ModelLimiter:
    """The limits of one model (endpoint), shared by every caller of it in this process (or, in the
    Dask actor, of the whole cluster). `clock` is injectable for tests."""

    def __init__(self, limits: ModelLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._held: dict[int, _Held] = {}  # in flight, in grant order
        self._ended: list[tuple[float, int, Cost]] = []  # heap of (frees_at, id, cost)
        self._used_requests = 0
        self._used_input = 0
        self._used_output = 0
        self._queue: deque[_Waiter] = deque()
        self._not_before = 0.0
        self._hint = _ServerHint()
        self._seq = 0  # grants so far, for the server hints
        self._granted_tokens = 0
        self._epoch = 0
        self._successes = 0
        window = limits.max_in_flight
        self.stats = LimiterStats(window=window, min_window=window)

    # -- the two calls ------------------------------------------------------------------------
    async def acquire(self, cost: Cost) -> int:
        """Wait until `cost` fits every limit, hold it, and return the ticket for `finish`."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop)
        with self._lock:
            if not self._queue:
                ticket, _ = self._try_grant(cost)
                if ticket is not None:
                    return ticket
            self._queue.append(waiter)
            self.stats.waited += 1
        try:
            while True:
                with self._lock:
                    delay: float | None = None
                    if self._queue[0] is waiter:
                        ticket, delay = self._try_grant(cost)
                        if ticket is not None:
                            self._queue.popleft()
                            self._wake_head()
                            return ticket
                    waiter.future = loop.create_future()
                await asyncio.wait({waiter.future}, timeout=delay)
        except BaseException:
            with self._lock:
                was_head = bool(self._queue) and self._queue[0] is waiter
                self._queue.remove(waiter)
                if was_head:
                    self._wake_head()
            raise

    def finish(self, ticket: int, outcome: Outcome) -> None:
        """End attempt `ticket`: its slot frees `window_s` from now; feeds AIMD and the server hints."""
        with self._lock:
            now = self._clock()
            held = self._held.pop(ticket, None)
            if held is None:
                return  # already counted as ended (stale) or abandoned
            self._end(ticket, held, now, outcome)
            self._adapt(held, outcome, now)
            self._wake_head()

    def abandon(self, ticket: int) -> None:
        """A granted ticket whose attempt never ran (the caller was cancelled): counted as sent."""
        self.finish(ticket, Outcome("failed"))

    def observe(self, server: ServerLimits) -> None:
        """A response's rate-limit headers from a call that held no ticket (limits learned late)."""
        with self._lock:
            self._take_hint(server, self._seq - 1, self._granted_tokens, self._clock())
            self._wake_head()

    # -- bookkeeping (under the lock) ------------------------------------------------------------
    def _try_grant(self, cost: Cost) -> tuple[int | None, float | None]:
        """A ticket when `cost` fits now; else None and how long until it may (None: until a finish)."""
        now = self._clock()
        self._expire(now)
        waits: list[float] = []
        if now < self._not_before:
            return None, self._not_before - now
        lim = self.limits
        window = self.stats.window if lim.adaptive else lim.max_in_flight
        blocked = len(self._held) >= window
        if lim.rpm is not None and self._used_requests >= lim.rpm:
            blocked = True
        for used, need, cap in (
            (self._used_input, cost.input_tokens, lim.input_tpm),
            (self._used_output, cost.output_tokens, lim.output_tpm),
            (self._used_input + self._used_output, cost.input_tokens + cost.output_tokens, lim.tpm),
        ):
            if cap is not None and used > 0 and used + need > cap:
                blocked = True
        # The server counted the hinted request itself, not those granted after it.
        hint = self._hint
        since = self._seq - hint.seq - 1
        if hint.requests_left is not None and now < hint.requests_until and hint.requests_left - since <= 0:
            blocked = True
            waits.append(hint.requests_until - now)
        if hint.tokens_left is not None and now < hint.tokens_until:
            granted_since = self._granted_tokens - hint.tokens_mark
            if hint.tokens_left - granted_since < cost.input_tokens + cost.output_tokens:
                blocked = True
                waits.append(hint.tokens_until - now)
        if blocked:
            if self._ended:
                waits.append(self._ended[0][0] - now)
            if self._held:
                oldest = next(iter(self._held.values()))
                waits.append(oldest.granted_at + lim.stale_after_s - now)
            return None, max(0.0, min(waits)) if waits else None
        ticket = next(self._ids)
        self._granted_tokens += cost.input_tokens + cost.output_tokens
        self._held[ticket] = _Held(now, cost, self._epoch, self._seq, self._granted_tokens)
        self._seq += 1
        self._used_requests += 1
        self._used_input += cost.input_tokens
        self._used_output += cost.output_tokens
        self.stats.granted += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, len(self._held))
        return ticket, None

    def _expire(self, now: float) -> None:
        while self._ended and self._ended[0][0] <= now:
            _, _, cost = heapq.heappop(self._ended)
            self._used_requests -= 1
            self._used_input -= cost.input_tokens
            self._used_output -= cost.output_tokens
        stale = self.limits.stale_after_s
        while self._held:
            ticket, held = next(iter(self._held.items()))
            if held.granted_at + stale > now:
                break
            del self._held[ticket]
            self._end(ticket, held, held.granted_at + stale, Outcome("failed"))

    def _end(self, ticket: int, held: _Held, ended_at: float, outcome: Outcome) -> None:
        cost = held.cost
        if outcome.kind == "ok":
            # The provider's counts replace the estimate (a reply without usage keeps it).
            actual = Cost(
                cost.input_tokens if outcome.input_tokens is None else outcome.input_tokens,
                cost.output_tokens if outcome.output_tokens is None else outcome.output_tokens,
            )
        else:
            actual = Cost(cost.input_tokens, 0)  # refused or failed: no output, the prompt may count
        self._used_input += actual.input_tokens - cost.input_tokens
        self._used_output += actual.output_tokens - cost.output_tokens
        heapq.heappush(self._ended, (ended_at + self.limits.window_s, ticket, actual))

    def _adapt(self, held: _Held, outcome: Outcome, now: float) -> None:
        if outcome.server is not None:
            self._take_hint(outcome.server, held.seq, held.tokens_mark, now)
        stats = self.stats
        if outcome.kind == "rate_limited":
            stats.rate_limited += 1
            if outcome.retry_after_s:
                self._not_before = max(self._not_before, now + outcome.retry_after_s)
            if self.limits.adaptive and held.epoch == self._epoch:
                stats.window = max(1, stats.window // 2)
                stats.min_window = min(stats.min_window, stats.window)
                stats.decreases += 1
                self._epoch += 1
                self._successes = 0
        elif outcome.kind == "ok" and self.limits.adaptive:
            self._successes += 1
            if self._successes >= stats.window and stats.window < self.limits.max_in_flight:
                stats.window += 1
                stats.increases += 1
                self._successes = 0

    def _take_hint(self, server: ServerLimits, seq: int, tokens_mark: int, now: float) -> None:
        hint = self._hint
        if seq < hint.seq:
            return  # an older response than the one the hint came from
        hint.seq = seq
        if server.remaining_requests is not None and server.reset_requests_s is not None:
            hint.requests_left = server.remaining_requests
            hint.requests_until = now + server.reset_requests_s
        if server.remaining_tokens is not None and server.reset_tokens_s is not None:
            hint.tokens_left = server.remaining_tokens
            hint.tokens_until = now + server.reset_tokens_s
            hint.tokens_mark = tokens_mark

    def _wake_head(self) -> None:
        if self._queue:
            self._queue[0].wake()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**vars(self.stats), "in_flight": len(self._held), "used_requests": self._used_requests}


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        future = self.future
        if future is not None and not future.done():
            self.loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LimitsHub(Protocol):
    """Where the gateway's limiters live: this process (`LocalLimits`) or a Dask cluster
    (`rate_limit_dask.DaskLimits`). `key` names the endpoint (model @ api_base)."""

    async def acquire(self, key: str, limits: ModelLimits, cost: Cost) -> int: ...

    def finish(self, key: str, ticket: int, outcome: Outcome) -> None: ...

    def abandon(self, key: str, ticket: int) -> None: ...

    def observe(self, key: str, limits: ModelLimits, server: ServerLimits) -> None: ...

    def snapshot(self, key: str) -> dict[str, Any]: ...


@dataclass
class LocalLimits:
    """One `ModelLimiter` per endpoint, in this process."""

    clock: Callable[[], float] = time.monotonic
    _limiters: dict[str, ModelLimiter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def limiter(self, key: str, limits: ModelLimits) -> ModelLimiter:
        found = self._limiters.get(key)
        if found is None:
            with self._lock:
                found = self._limiters.setdefault(key, ModelLimiter(limits, self.clock))
        return found

    async def acquire(self, key: str, limits: ModelLimits, cost: Cost) -> int:
        return await self.limiter(key, limits).acquire(cost)

    def finish(self, key: str, ticket: int, outcome: Outcome) -> None:
        self._limiters[key].finish(ticket, outcome)

    def abandon(self, key: str, ticket: int) -> None:
        self._limiters[key].abandon(ticket)

    def observe(self, key: str, limits: ModelLimits, server: ServerLimits) -> None:
        self.limiter(key, limits).observe(server)

    def snapshot(self, key: str) -> dict[str, Any]:
        found = self._limiters.get(key)
        return found.snapshot() if found is not None else {}


def limits_of(spec: ModelSpec) -> ModelLimits:
    """The `ModelLimits` of a model spec. An attempt ends within the gateway's deadline (timeout + 5 s);
    one still unfinished well after it belonged to a process that died."""
    return ModelLimits(
        rpm=spec.rpm,
        tpm=spec.tpm,
        input_tpm=spec.input_tpm,
        output_tpm=spec.output_tpm,
        adaptive=spec.adaptive_concurrency,
        max_in_flight=1 if spec.is_local else spec.max_concurrency,
        stale_after_s=spec.timeout_s + 60.0,
    )
