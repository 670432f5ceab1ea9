#!/usr/bin/env python3
"""OpenAI-compatible endpoint with a fixed latency, for side-by-side throughput runs.

Usage: fake_latency_server.py PORT LATENCY_MS [empty]
Answers every chat completion after LATENCY_MS with text in whichever format the request asks for:
UltraFeedback-style ratings when the prompt lists "Text 1"/"Text 2"; the Fellowship combined-score
format when it mentions "Score Assistant A"; a short answer otherwise. Counts requests and the
peak number in flight (GET /stats: requests, answered, in_flight, peak_in_flight; POST /reset zeroes
them). Needs aiohttp.
"""

import asyncio
import sys

from aiohttp import web

port, latency = int(sys.argv[1]), float(sys.argv[2]) / 1000
empty_mode = len(sys.argv) > 3 and sys.argv[3] == "empty"  # every 4th plain answer is "" (HTTP 200)
stats = {"requests": 0, "answered": 0, "in_flight": 0, "peak_in_flight": 0}

ULTRA = "#### Output for Text 1\nRating: 4\nRationale: clear and correct.\n\n#### Output for Text 2\nRating: 2\nRationale: vague.\n"
COMBINED = "### Evaluation Evidence:\nA is more complete.\n\n### Score Assistant A:\n8/10\n\n### Score Assistant B:\n6/10"
ANSWER = "Here is a concise, helpful answer with a few concrete steps and an example."


async def chat(request):
    body = await request.json()
    text = " ".join(
        m.get("content") or "" for m in body.get("messages", []) if isinstance(m.get("content"), str)
    )
    stats["requests"] += 1
    stats["in_flight"] += 1
    serial = stats["requests"]
    stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
    try:
        await asyncio.sleep(latency)
    finally:
        stats["in_flight"] -= 1
    # Each answer differs (a counter), so two samples of one prompt are two candidates to judge.
    content = (
        ULTRA if "Text 1" in text else COMBINED if "Score Assistant A" in text else f"{ANSWER} ({serial})"
    )
    if empty_mode and content.startswith(ANSWER) and serial % 4 == 0:
        content = ""
    stats["answered"] += 1
    return web.json_response(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "m"),
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
            ],
            "usage": {
                "prompt_tokens": len(text) // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": (len(text) + len(content)) // 4,
            },
        }
    )


async def get_stats(request):
    return web.json_response(stats)


async def reset(request):
    stats.update(requests=0, answered=0, peak_in_flight=stats["in_flight"])
    return web.json_response(stats)


app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/v1/chat/completions", chat)
app.router.add_get("/stats", get_stats)
app.router.add_post("/reset", reset)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)
