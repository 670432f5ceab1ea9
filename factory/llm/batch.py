"""Batch mode: the calls of a `batch: true` model go through the provider's batch API.

The gateway checks the request cache as for any call; a miss comes here (`BatchCalls.submit`) and
waits on a future while its row sits in the model's collector. A collector is sent as one batch when
it holds `max_rows` requests, or when no new request arrived for `quiet_s` (a shard's prompts reach
a stage together, so their calls arrive together), or `max_wait_s` after its first request. Rounds
that depend on earlier replies (knockout judging, a feedback loop's revisions, rationale rewrites)
therefore go as one batch per round.

A batch's life, per collector (one per model and endpoint, per event loop):

1. the JSONL file is uploaded and the batch created; its id, file id and each row's request key are
   recorded in the run folder (`batch_journal.py`, fsync'd) before any wait;
2. it is polled with backoff (`poll_s` doubling to `poll_max_s`), its state shown by progress
   (submitted / in progress / finalizing / done);
3. once it is done, every answered row is committed to the request cache under the key an online
   call of the same request has (so either mode answers the other), priced at the batch price, its
   usage recorded with `batch=True`, and its waiters resolved;
4. rows that failed retryably (5xx, 429, an unusable reply) or expired are resubmitted, alone, in a
   new batch, up to `row_attempts` batches per row; then, and for other failures at once, the call
   fails with the row's error through the gateway's error tree.

A resumed build finds the journal's open batches at the collector's start and polls them first; a
request whose key is in one of them waits on it instead of being sent again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.llm.batch_journal import BatchJournal, BatchRecord, BatchRow
from factory.llm.batch_settings import BatchSettings
from factory.llm.cache import RequestCache
from factory.llm.errors import BadRequestError, LLMError, ProviderError
from factory.llm.lean import http_error
from factory.llm.models import ModelSpec
from factory.llm.price_map import batch_token_cost
from factory.llm.replies import no_choices, reply_record
from factory.llm.usage import UsageLedger

if TYPE_CHECKING:
    from factory.llm.batch_client import BatchClient, BatchState

# Gateway arguments that are litellm's own, not fields of the request body of a batch row.
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
        "api_version",
    }
)
# Statuses after which a batch changes no more.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_STATE = {
    "validating": "submitted",
    "in_progress": "in_progress",
    "finalizing": "finalizing",
    "cancelling": "finalizing",
}


def _mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (provider files are data, not trusted shapes)."""
    return value if isinstance(value, dict) else {}


def row_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body of one batch row for these gateway arguments (`Gateway._call_kwargs`):
    what an online call sends, the model without its provider prefix."""
    body = {k: v for k, v in kwargs.items() if k not in _NOT_SENT}
    body["model"] = kwargs["model"].partition("/")[2]
    body.update(kwargs.get("extra_body") or {})
    return body


def row_record(spec: ModelSpec, body: Any, latency_s: float) -> dict[str, Any]:
    """The cache record of an answered row (a chat-completion body), at the batch price; raises
    `LLMError` for a body without choices or an empty reply, as an online reply would."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise no_choices(spec.model)
    choice = choices[0]
    message = _mapping(choice.get("message"))
    usage = _mapping(body.get("usage"))
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    text = message.get("content")
    cost, _ = batch_token_cost(spec.model, prompt, completion, cached)
    record = reply_record(
        spec.model,
        text=text if isinstance(text, str) or text is None else str(text),
        finish_reason=choice.get("finish_reason"),
        has_tool_call=bool(message.get("tool_calls") or message.get("function_call")),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost or 0.0,
        latency_s=latency_s,
    )
    record["batch"] = True  # paid at the batch price; the key is the online one
    return record


def row_error(spec: ModelSpec, line: dict[str, Any]) -> LLMError:
    """The error of a row in an error file (or a non-200 row): HTTP status as online, expiry retryable."""
    error = _mapping(line.get("error"))
    if error.get("code") == "batch_expired":
        return ProviderError(
            f"{spec.model}: batch row expired: {error.get('message') or 'not run in time'}", model=spec.model
        )
    response = _mapping(line.get("response"))
    status = response.get("status_code")
    detail = response.get("body") if response.get("body") is not None else error or None
    message = json.dumps(detail)[:300] if detail is not None else "no detail"
    if isinstance(status, int):
        return http_error(status, message, None, spec.model, spec.api_base)
    return ProviderError(f"{spec.model}: batch row failed: {message}", model=spec.model)


@dataclass
class _Row:
    key: str
    body: dict[str, Any] | None  # None: a resumed row no request has asked for yet
    role: str
    tag: str | None
    waiters: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)
    attempt: int = 1
    since: float = field(default_factory=time.monotonic)


class BatchCollector:
    """The batch calls of one model endpoint on one event loop (see the module docstring)."""

    def __init__(self, spec: ModelSpec, endpoint: str, owner: BatchCalls) -> None:
        self.spec, self.endpoint, self.owner = spec, endpoint, owner
        self.settings = owner.settings
        self._client: BatchClient | None = None
        self._loop = asyncio.get_running_loop()
        self._rows: dict[str, _Row] = {}  # key -> row, pending or in a batch
        self._pending: list[_Row] = []
        self._first_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        for record in owner.journal.open_batches(endpoint):
            rows = {
                cid: _Row(r.key, None, r.role, r.tag, attempt=record.attempt)
                for cid, r in record.rows.items()
                if owner.cache.get(r.key) is None
            }
            for row in rows.values():
                self._rows.setdefault(row.key, row)
            self.owner.usage.record_batch_state(record.batch_id, "submitted")
            self._spawn(self._follow(record.batch_id, rows, record.attempt))

    @property
    def client(self) -> BatchClient:
        if self._client is None:
            # litellm (seconds to import) only once a batch-mode model is called.
            from factory.llm.batch_client import BatchClient

            self._client = BatchClient(self.spec)
        return self._client

    def joinable(self, key: str) -> bool:
        """Whether a request is already collected or in a batch (a resumed one included)."""
        return key in self._rows

    def submit(
        self, key: str, kwargs: dict[str, Any], role: str, tag: str | None
    ) -> asyncio.Future[dict[str, Any]]:
        """A future of the request's record; the request joins its row if it has one, else a new row."""
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        row = self._rows.get(key)
        if row is not None:
            if row.body is None:
                row.body = row_body(kwargs)
            row.waiters.append(future)
            return future
        row = _Row(key, row_body(kwargs), role, tag, [future])
        self._rows[key] = row
        self._pending.append(row)
        now = self._loop.time()
        if len(self._pending) >= self.settings.max_rows:
            self._flush()
            return future
        self._first_at = self._first_at or now
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(
            min(now + self.settings.quiet_s, self._first_at + self.settings.max_wait_s), self._flush
        )
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        rows, self._pending, self._first_at, self._timer = self._pending, [], None, None
        if rows:
            self._spawn(self._run(rows, attempt=1))

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro, name=f"factory-batch-{self.endpoint}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one batch ----------------------------------------------------------------------------

    async def _run(self, rows: list[_Row], attempt: int) -> None:
        try:
            batch_id, by_id = await self._send(rows, attempt)
        except LLMError as error:
            self._fail(rows, error)
            return
        except Exception as error:
            self._fail(
                rows,
                ProviderError(
                    f"{self.spec.model}: batch submission failed: {error!r}", model=self.spec.model
                ),
            )
            return
        await self._follow(batch_id, by_id, attempt)

    async def _send(self, rows: list[_Row], attempt: int) -> tuple[str, dict[str, _Row]]:
        """Upload and create the batch, record it, return its id and rows by custom_id."""
        by_id = {row.key: row for row in rows}  # the request key is a unique custom_id
        lines = [
            json.dumps(
                {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": row.body},
                ensure_ascii=False,
            )
            for cid, row in by_id.items()
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        file_id = await self.owner.with_retries(lambda: self.client.upload(data), self.endpoint)
        metadata = {"factory": "batch mode", "attempt": str(attempt)}
        batch_id = await self.owner.with_retries(
            lambda: self.client.create(file_id, self.settings.completion_window, metadata), self.endpoint
        )
        # Recorded before the first wait: a killed build polls this batch instead of paying for it again.
        self.owner.journal.record(
            BatchRecord(
                batch_id,
                file_id,
                self.endpoint,
                attempt,
                {cid: BatchRow(r.key, r.role, r.tag) for cid, r in by_id.items()},
            )
        )
        self.owner.usage.record_batch_state(batch_id, "submitted")
        return batch_id, by_id

    async def _follow(self, batch_id: str, by_id: dict[str, _Row], attempt: int) -> None:
        """Poll a batch to its end, commit its answers, resubmit or fail the rest."""
        try:
            state = await self._poll(batch_id)
            retry = await self._collect(batch_id, state, by_id)
        except LLMError as error:
            # The batch may still run: its record stays open for a later resume to poll.
            self._fail(list(by_id.values()), error)
            return
        except Exception as error:
            self._fail(
                list(by_id.values()),
                ProviderError(f"{self.spec.model}: batch {batch_id}: {error!r}", model=self.spec.model),
            )
            return
        self.owner.journal.finish(batch_id)
        self.owner.usage.record_batch_state(batch_id, "done")
        again = [row for row in retry if row.waiters or row.body is not None]
        if again:
            await self._run(again, attempt + 1)

    async def _poll(self, batch_id: str) -> BatchState:
        wait = self.settings.poll_s
        failures = 0
        while True:
            try:
                state = await self.client.retrieve(batch_id)
                failures = 0
            except LLMError as error:
                failures += 1
                if not error.retryable or failures > self.owner.max_retries:
                    raise
                await asyncio.sleep(self.owner.backoff(failures - 1, error.retry_after))
                continue
            if state.status in TERMINAL:
                return state
            self.owner.usage.record_batch_state(batch_id, _STATE.get(state.status, "in_progress"))
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.settings.poll_max_s)

    async def _collect(self, batch_id: str, state: BatchState, by_id: dict[str, _Row]) -> list[_Row]:
        """Commit every answered row of a finished batch; returns the rows to resubmit (failing the
        rows that may not be)."""
        seen: set[str] = set()
        failed: dict[str, LLMError] = {}
        for file_id in (state.output_file_id, state.error_file_id):
            if not file_id:
                continue
            raw: bytes = await self.owner.with_retries(partial(self.client.content, file_id), self.endpoint)
            for text in raw.decode("utf-8", "replace").splitlines():
                if not text.strip():
                    continue
                line = json.loads(text)
                row = by_id.get(str(line.get("custom_id")))
                if row is None or row.key in seen:
                    continue
                seen.add(row.key)
                response = _mapping(line.get("response"))
                if response.get("status_code") != 200:
                    failed[row.key] = row_error(self.spec, line)
                    continue
                try:
                    record = row_record(self.spec, response.get("body"), time.monotonic() - row.since)
                except LLMError as unusable:
                    failed[row.key] = unusable
                    continue
                self._answer(row, record)
        retry: list[_Row] = []
        for row in by_id.values():
            if row.key in seen and row.key not in failed:
                continue
            error = failed.get(row.key) or self._missing(batch_id, state)
            if error.retryable and row.attempt < self.settings.row_attempts:
                row.attempt += 1
                retry.append(row)
            else:
                self._fail([row], error)
        return retry

    def _missing(self, batch_id: str, state: BatchState) -> LLMError:
        """The error of a row a finished batch did not answer at all."""
        if state.status == "failed":
            return BadRequestError(
                f"{self.spec.model}: batch {batch_id} failed: {state.errors or 'no detail'}",
                model=self.spec.model,
            )
        if state.status == "cancelled":
            return BadRequestError(
                f"{self.spec.model}: batch {batch_id} was cancelled", model=self.spec.model
            )
        return ProviderError(
            f"{self.spec.model}: batch {batch_id} ended ({state.status}) without this row",
            model=self.spec.model,
        )

    # -- settling rows ------------------------------------------------------------------------

    def _answer(self, row: _Row, record: dict[str, Any]) -> None:
        # Committed and booked before the waiters wake: a kill from here on repeats nothing.
        self.owner.cache.put(row.key, self.spec.model, record)
        self.owner.usage.record_call(
            role=row.role,
            model=self.spec.model,
            tag=row.tag,
            prompt_tokens=record["prompt_tokens"],
            completion_tokens=record["completion_tokens"],
            cost_usd=record["cost_usd"],
            latency_s=record["latency_s"],
            batch=True,
        )
        self._rows.pop(row.key, None)
        for waiter in row.waiters:
            if not waiter.done():
                waiter.set_result(record)

    def _fail(self, rows: list[_Row], error: LLMError) -> None:
        for row in rows:
            self._rows.pop(row.key, None)
            for waiter in row.waiters:
                if not waiter.done():
                    waiter.set_exception(error)


class BatchCalls:
    """Every batch collector of one gateway, with what they share: settings, journal, cache, usage."""

    def __init__(
        self,
        settings: BatchSettings,
        journal_dir: Path | None,
        cache: RequestCache,
        usage: UsageLedger,
        *,
        max_retries: int,
        backoff: Callable[[int, float | None], float],
    ) -> None:
        self.settings = settings
        self.journal = BatchJournal(journal_dir)
        self.cache = cache
        self.usage = usage
        self.max_retries = max_retries
        self.backoff = backoff
        self._collectors: dict[tuple[int, str], BatchCollector] = {}

    def collector(self, spec: ModelSpec) -> BatchCollector:
        """The collector of `spec`'s endpoint on the running loop (created, resuming open batches, on first use)."""
        endpoint = f"{spec.model}@{spec.api_base or ''}"
        key = (id(asyncio.get_running_loop()), endpoint)
        found = self._collectors.get(key)
        if found is None:
            found = self._collectors[key] = BatchCollector(spec, endpoint, self)
        return found

    async def with_retries(self, step: Callable[[], Any], endpoint: str) -> Any:
        """One batch API request, retried like an online call (Retry-After honoured)."""
        attempt = 0
        while True:
            try:
                return await step()
            except LLMError as error:
                if not error.retryable or attempt >= self.max_retries:
                    raise
                await asyncio.sleep(self.backoff(attempt, error.retry_after))
                attempt += 1
