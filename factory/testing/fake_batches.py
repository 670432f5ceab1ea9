"""OpenAI's Files and Batches endpoints for the fake server, answering each row as the chat endpoint would.

Endpoints: `POST /v1/files` (multipart, as the OpenAI SDK uploads), `GET /v1/files/{id}`,
`GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches`, `GET /v1/batches/{id}`,
`POST /v1/batches/{id}/cancel`.

A batch is `validating` on creation, `in_progress` until `completion_delay_s` has passed since,
`finalizing` for `finalizing_s` more, then done. Its rows are executed once, by the first poll that
finds it done (lazily: no timer runs on the server), each answered by the server's script exactly
as a chat completion with the same body would be. The `BatchPlan` fails (`fail_fraction`, HTTP
`fail_status` in the error file) and expires (`expire_fraction`, `batch_expired` in the error file,
the batch's status `expired`) exact shares of the rows a batch runs for the first time (custom_ids
not seen in an earlier batch), drawn from an RNG seeded by (seed, batch index). A resubmitted row
succeeds, unless the plan is `sticky`: then it fails or expires again, as on its first execution. What was executed,
failed and expired, by custom_id, is kept for tests (`FakeBatches.rows`).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from factory._util.errors import UserError
from factory.testing.default_replies import message_text

# (body, choice) -> reply text; the chat endpoint's script.
ReplyFn = Callable[[dict[str, Any], int], str]


@dataclass(frozen=True)
class BatchPlan:
    """How the fake batch API behaves (see the module docstring)."""

    completion_delay_s: float = 0.2
    finalizing_s: float = 0.05
    fail_fraction: float = 0.0
    expire_fraction: float = 0.0
    fail_status: int = 500
    sticky: bool = False

    def __post_init__(self) -> None:
        if self.completion_delay_s < 0 or self.finalizing_s < 0:
            raise UserError("BatchPlan delays must be >= 0")
        if not (
            0 <= self.fail_fraction <= 1
            and 0 <= self.expire_fraction <= 1
            and self.fail_fraction + self.expire_fraction <= 1
        ):
            raise UserError(
                "BatchPlan fail_fraction and expire_fraction must lie in [0, 1] and sum to at most 1"
            )


@dataclass
class _Batch:
    id: str
    index: int
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None
    created_at: float
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    finished_at: float | None = None


@dataclass
class BatchCounters:
    files_uploaded: int = 0
    batches_created: int = 0
    rows_executed: int = 0
    rows_failed: int = 0
    rows_expired: int = 0
    batches_cancelled: int = 0


class FakeBatches:
    """The state and handlers of the Files and Batches endpoints (thread-safe reads for tests)."""

    def __init__(
        self,
        reply: ReplyFn,
        plan: BatchPlan,
        seed: int = 0,
        on_row: Callable[[str, dict[str, Any], int, int], None] | None = None,
    ) -> None:
        self.reply = reply
        self.plan = plan
        self.seed = seed
        # Called for every row answered (model, body, prompt tokens, completion tokens): the chat stats.
        self.on_row = on_row
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._files: dict[str, tuple[dict[str, Any], bytes]] = {}
            self._batches: dict[str, _Batch] = {}
            self.counters = BatchCounters()
            # custom_id -> outcomes of its executions, in order: "ok", "failed", "expired".
            self.rows: dict[str, list[str]] = {}
            # batch id -> custom_ids of its input file, in order (what each batch asked for).
            self.batch_rows: dict[str, list[str]] = {}
            self.bodies: list[dict[str, Any]] = []

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            c = self.counters
            return {
                "files_uploaded": c.files_uploaded,
                "batches_created": c.batches_created,
                "batch_rows_executed": c.rows_executed,
                "batch_rows_failed": c.rows_failed,
                "batch_rows_expired": c.rows_expired,
                "batches_cancelled": c.batches_cancelled,
            }

    def routes(self, app: web.Application) -> None:
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/files", self._upload)
            app.router.add_get(f"{prefix}/files/{{id}}", self._file)
            app.router.add_get(f"{prefix}/files/{{id}}/content", self._content)
            app.router.add_post(f"{prefix}/batches", self._create)
            app.router.add_get(f"{prefix}/batches", self._list)
            app.router.add_get(f"{prefix}/batches/{{id}}", self._retrieve)
            app.router.add_post(f"{prefix}/batches/{{id}}/cancel", self._cancel)

    # --- files -------------------------------------------------------------------------------------

    def _store(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        with self._lock:
            file_id = f"file-fake-{len(self._files) + 1}"
            meta = {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
                "status_details": None,
            }
            self._files[file_id] = (meta, data)
            return meta

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _error(400, "multipart field 'file' is missing")
        meta = self._store(
            upload.file.read(), upload.filename or "upload.jsonl", str(form.get("purpose") or "")
        )
        with self._lock:
            self.counters.files_uploaded += 1
        return web.json_response(meta)

    async def _file(self, request: web.Request) -> web.Response:
        with self._lock:
            found = self._files.get(request.match_info["id"])
        return web.json_response(found[0]) if found else _error(404, "no such file")

    async def _content(self, request: web.Request) -> web.Response:
        with self._lock:
            found = self._files.get(request.match_info["id"])
        if found is None:
            return _error(404, "no such file")
        return web.Response(body=found[1], content_type="application/octet-stream")

    # --- batches -----------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON")
        file_id = body.get("input_file_id") if isinstance(body, dict) else None
        with self._lock:
            found = self._files.get(str(file_id))
        if found is None:
            return _error(400, f"input_file_id {file_id!r} is not an uploaded file")
        try:
            lines = [json.loads(line) for line in found[1].decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, ValueError):
            return _error(400, "the input file is not JSONL")
        with self._lock:
            index = self.counters.batches_created
            self.counters.batches_created += 1
            batch = _Batch(
                id=f"batch-fake-{index + 1}",
                index=index,
                input_file_id=str(file_id),
                endpoint=str(body.get("endpoint")),
                completion_window=str(body.get("completion_window")),
                metadata=body.get("metadata"),
                created_at=time.time(),
            )
            batch.counts["total"] = len(lines)
            self._batches[batch.id] = batch
            self.batch_rows[batch.id] = [str(line.get("custom_id")) for line in lines]
        return web.json_response(self._describe(batch))

    async def _list(self, request: web.Request) -> web.Response:
        with self._lock:
            batches = list(self._batches.values())
        return web.json_response(
            {"object": "list", "data": [self._describe(b) for b in batches], "has_more": False}
        )

    async def _retrieve(self, request: web.Request) -> web.Response:
        with self._lock:
            batch = self._batches.get(request.match_info["id"])
        if batch is None:
            return _error(404, "no such batch")
        self._advance(batch)
        return web.json_response(self._describe(batch))

    async def _cancel(self, request: web.Request) -> web.Response:
        with self._lock:
            batch = self._batches.get(request.match_info["id"])
            if batch is None:
                return _error(404, "no such batch")
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.status = "cancelled"
                batch.finished_at = time.time()
                self.counters.batches_cancelled += 1
        return web.json_response(self._describe(batch))

    def _advance(self, batch: _Batch) -> None:
        """Move the batch along its clock; execute its rows when it is due (once)."""
        with self._lock:
            if batch.status in ("completed", "expired", "failed", "cancelled"):
                return
            age = time.time() - batch.created_at
            if age < self.plan.completion_delay_s:
                batch.status = "in_progress"
                return
            if age < self.plan.completion_delay_s + self.plan.finalizing_s:
                batch.status = "finalizing"
                return
            batch.status = "finalizing"  # claimed: no other poll executes it
            data = self._files[batch.input_file_id][1]
        self._execute(batch, data)

    def _execute(self, batch: _Batch, data: bytes) -> None:
        lines = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        rng = random.Random(self.seed * 1_000_003 + batch.index)
        with self._lock:
            seen = {cid: list(outcomes) for cid, outcomes in self.rows.items()}
        fresh = [i for i, line in enumerate(lines) if str(line.get("custom_id")) not in seen]
        n_fail = round(len(fresh) * self.plan.fail_fraction)
        n_expire = round(len(fresh) * self.plan.expire_fraction)
        drawn = rng.sample(fresh, n_fail + n_expire)
        failing, expiring = set(drawn[:n_fail]), set(drawn[n_fail:])
        if self.plan.sticky:  # a row keeps the fate of its first execution
            for i, line in enumerate(lines):
                first = seen.get(str(line.get("custom_id")), ["ok"])[0]
                (failing if first == "failed" else expiring if first == "expired" else set()).add(i)
        out: list[str] = []
        errors: list[str] = []
        outcomes: list[tuple[str, str]] = []
        for i, line in enumerate(lines):
            custom_id = str(line.get("custom_id"))
            row_id = f"batch_req_{batch.index + 1}_{i}"
            if i in expiring:
                errors.append(
                    json.dumps(
                        {
                            "id": row_id,
                            "custom_id": custom_id,
                            "response": None,
                            "error": {
                                "code": "batch_expired",
                                "message": "This request could not be executed before the "
                                "completion window expired.",
                            },
                        }
                    )
                )
                outcomes.append((custom_id, "expired"))
                continue
            if i in failing:
                errors.append(
                    json.dumps(
                        {
                            "id": row_id,
                            "custom_id": custom_id,
                            "error": None,
                            "response": {
                                "status_code": self.plan.fail_status,
                                "request_id": row_id,
                                "body": {
                                    "error": {
                                        "message": "fake batch row failure",
                                        "type": "server_error",
                                        "code": "server_error",
                                        "param": None,
                                    }
                                },
                            },
                        }
                    )
                )
                outcomes.append((custom_id, "failed"))
                continue
            out.append(
                json.dumps(
                    {
                        "id": row_id,
                        "custom_id": custom_id,
                        "error": None,
                        "response": {
                            "status_code": 200,
                            "request_id": row_id,
                            "body": self._answer(line.get("body") or {}, row_id),
                        },
                    }
                )
            )
            outcomes.append((custom_id, "ok"))
        output = (
            self._store(("\n".join(out) + "\n").encode(), f"{batch.id}_output.jsonl", "batch_output")
            if out
            else None
        )
        error = (
            self._store(("\n".join(errors) + "\n").encode(), f"{batch.id}_error.jsonl", "batch_output")
            if errors
            else None
        )
        with self._lock:
            for custom_id, outcome in outcomes:
                self.rows.setdefault(custom_id, []).append(outcome)
            self.counters.rows_executed += sum(1 for _, o in outcomes if o != "expired")
            self.counters.rows_failed += sum(1 for _, o in outcomes if o == "failed")
            self.counters.rows_expired += sum(1 for _, o in outcomes if o == "expired")
            batch.output_file_id = output["id"] if output else None
            batch.error_file_id = error["id"] if error else None
            batch.counts = {
                "total": len(lines),
                "completed": sum(1 for _, o in outcomes if o == "ok"),
                "failed": sum(1 for _, o in outcomes if o != "ok"),
            }
            batch.status = "expired" if expiring else "completed"
            batch.finished_at = time.time()

    def _answer(self, body: dict[str, Any], row_id: str) -> dict[str, Any]:
        """The chat-completion body the chat endpoint would return for this request body."""
        model = str(body.get("model") or "fake")
        n = body.get("n")
        count = max(1, min(n, 16)) if isinstance(n, int) else 1
        texts = [self.reply(body, choice) for choice in range(count)]
        found = body.get("messages")
        messages: list[Any] = found if isinstance(found, list) else []
        prompt_tokens = sum(len(message_text(m).split()) for m in messages if isinstance(m, dict))
        completion_tokens = sum(len(t.split()) for t in texts)
        with self._lock:
            self.bodies.append(body)
        if self.on_row is not None:
            self.on_row(model, body, prompt_tokens, completion_tokens)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i, t in enumerate(texts)
        ]
        return {
            "id": f"chatcmpl-{row_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _describe(self, batch: _Batch) -> dict[str, Any]:
        finished = int(batch.finished_at) if batch.finished_at is not None else None
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created_at),
            "in_progress_at": int(batch.created_at),
            "expires_at": int(batch.created_at) + 86400,
            "finalizing_at": None,
            "completed_at": finished if batch.status == "completed" else None,
            "failed_at": None,
            "expired_at": finished if batch.status == "expired" else None,
            "cancelling_at": None,
            "cancelled_at": finished if batch.status == "cancelled" else None,
            "request_counts": dict(batch.counts),
            "metadata": batch.metadata,
        }


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": None, "param": None}},
        status=status,
    )
