#!/usr/bin/env python3
"""Client-side ceilings at one concurrency against the fixed-latency fake server, one process each:
raw aiohttp, the openai SDK (httpx), litellm.acompletion. Prints calls/s and CPU ms per call.

Usage: client_ceiling.py PORT CALLS CONCURRENCY [CLIENTS]   (server: fake_latency_server.py PORT LATENCY_MS)
CLIENTS: a comma-separated subset of aiohttp,openai-sdk,litellm (default all three).
Needs a venv with aiohttp, openai and litellm (e.g. Curator's).
"""

import asyncio
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
port, n, c = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
clients = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else {"aiohttp", "openai-sdk", "litellm"}
base = f"http://127.0.0.1:{port}/v1"
msgs = [{"role": "user", "content": "Question: explain item 1."}]


async def bounded(call):
    sem = asyncio.Semaphore(c)

    async def one(i):
        async with sem:
            await call(i)

    t, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t, time.process_time() - cpu


async def main():
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:

        async def raw(i):
            async with s.post(
                base + "/chat/completions", json={"model": "m", "messages": msgs, "seed": i}
            ) as r:
                (await r.json())["choices"][0]["message"]["content"]

        if "aiohttp" in clients:
            yield "aiohttp", await bounded(raw)
    if not clients & {"openai-sdk", "litellm"}:
        return
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base, api_key="x", max_retries=0)

    async def sdk(i):
        _ = (
            (await client.chat.completions.create(model="m", messages=msgs, seed=i))
            .choices[0]
            .message.content
        )

    if "openai-sdk" in clients:
        yield "openai-sdk", await bounded(sdk)
    if "litellm" not in clients:
        return
    import litellm

    async def ll(i):
        _ = (
            (
                await litellm.acompletion(
                    model="openai/m", api_base=base, api_key="x", messages=msgs, seed=i, num_retries=0
                )
            )
            .choices[0]
            .message.content
        )

    yield "litellm", await bounded(ll)


async def run():
    async for name, (wall, cpu) in main():
        print(f"{name:11s} C={c}: {n / wall:7.1f} calls/s, {1000 * cpu / n:5.2f} ms CPU/call")


asyncio.run(run())
