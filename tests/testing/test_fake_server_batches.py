"""The fake server's Files and Batches endpoints, over real HTTP: uploaded through litellm's batch API
(`factory.llm.batch_client`), read back raw; rows answered as the chat endpoint answers the same body;
the batch's clock, exact shares of failed and expired rows, cancel, and the counters in /stats."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from factory.llm import ModelSpec
from factory.llm.batch_client import BatchClient
from factory.testing import FakeLLMServer
from factory.testing.fake_batches import BatchPlan


def _http(server: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _lines(n: int) -> bytes:
    rows = [
        {
            "custom_id": f"row-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "fake",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Say {i}."}],
            },
        }
        for i in range(n)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _submit(server: FakeLLMServer, n: int) -> str:
    client = BatchClient(ModelSpec(model="openai/fake", api_base=server.base_url))

    async def go() -> str:
        file_id = await client.upload(_lines(n))
        return await client.create(file_id, "24h", {"test": "yes"})

    return asyncio.run(go())


def _jsonl(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def test_rows_are_answered_as_the_chat_endpoint_answers_them_on_the_batch_clock() -> None:
    with FakeLLMServer(
        batch=BatchPlan(completion_delay_s=0.4, finalizing_s=0.3),
        default=lambda body: f"echo: {body['messages'][-1]['content']}",
    ) as server:
        batch_id = _submit(server, 5)
        seen = []
        while not seen or seen[-1] not in ("completed", "expired", "failed"):
            seen.append(_http(server, "GET", f"/v1/batches/{batch_id}")["status"])
        batch = _http(server, "GET", f"/v1/batches/{batch_id}")
        assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == [
            "in_progress",
            "finalizing",
            "completed",
        ]
        assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
        assert batch["error_file_id"] is None
        output = _jsonl(_http(server, "GET", f"/v1/files/{batch['output_file_id']}/content"))
        for line in output:
            body = next(r["body"] for r in _jsonl(_lines(5)) if r["custom_id"] == line["custom_id"])
            online = _http(server, "POST", "/v1/chat/completions", body)
            assert line["response"]["status_code"] == 200
            assert line["response"]["body"]["choices"][0]["message"] == online["choices"][0]["message"]
            assert line["response"]["body"]["usage"] == online["usage"]
        stats = _http(server, "GET", "/stats")
        assert (stats["files_uploaded"], stats["batches_created"], stats["batch_rows_executed"]) == (1, 1, 5)
        assert server.stats.calls == 5  # the chat calls above; batch rows are counted apart


def test_exact_shares_of_rows_fail_and_expire_and_a_batch_can_be_cancelled() -> None:
    with FakeLLMServer(
        batch=BatchPlan(completion_delay_s=0.0, finalizing_s=0.0, fail_fraction=0.1, expire_fraction=0.05)
    ) as server:
        batch_id = _submit(server, 40)
        batch = _http(server, "GET", f"/v1/batches/{batch_id}")
        assert batch["status"] == "expired"  # some rows did not run in the window
        output = _jsonl(_http(server, "GET", f"/v1/files/{batch['output_file_id']}/content"))
        errors = _jsonl(_http(server, "GET", f"/v1/files/{batch['error_file_id']}/content"))
        assert len(output) == 34
        assert sorted(
            (e["error"] or {}).get("code") or e["response"]["status_code"] for e in errors if e["error"]
        ) == ["batch_expired", "batch_expired"]
        assert [e["response"]["status_code"] for e in errors if not e["error"]] == [500] * 4
        assert {line["custom_id"] for line in output + errors} == {f"row-{i}" for i in range(40)}
        assert server.stats.batch_rows_failed == 4 and server.stats.batch_rows_expired == 2

        server.batches.plan = BatchPlan(completion_delay_s=60)
        slow = _submit(server, 3)
        assert _http(server, "POST", f"/v1/batches/{slow}/cancel", {})["status"] == "cancelled"
        assert _http(server, "GET", f"/v1/batches/{slow}")["status"] == "cancelled"
        assert server.stats.batches_cancelled == 1 and server.stats.batch_rows_executed == 38


def test_a_spawned_server_takes_a_batch_plan() -> None:
    with FakeLLMServer.spawn(batch=BatchPlan(completion_delay_s=0.0, finalizing_s=0.0)) as server:
        batch_id = _submit(server, 2)  # type: ignore[arg-type]
        assert _http(server, "GET", f"/v1/batches/{batch_id}")["status"] == "completed"
        assert server.stats().batch_rows_executed == 2
