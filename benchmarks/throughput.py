"""Efficiency against the physical limit: a full build against a 100 ms endpoint at concurrency C.

The endpoint is the side-by-side's (`peers/fake_latency_server.py`, in its own process): a fixed
latency L at about 0.1 ms of its own CPU per request, so a client with C requests in flight can
reach at most C / L calls per second and the server costs the client nothing. Each build
(2 generations + judge + rationale per prompt) runs in a child process sized to last `target_s`; we report calls/s, the limit C / L, their
ratio, the requests in flight seen by the server, and the factory's CPU seconds per call. Bare
`litellm.acompletion` at concurrency 64 against the same server, in the same run, is the ceiling
that litellm's own CPU cost sets on this machine (the target is >= 0.9 of it at C = 64);
`Gateway.complete` alone (no workflow graphs) splits the factory's overhead into gateway and graphs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from benchmarks._common import (
    Options,
    ServerWatch,
    build_config,
    load_average,
    ratio,
    run_child,
    write_prompts,
)

NAME = "throughput"
LATENCY_S = 0.1
CONCURRENCIES = (8, 64, 256)
CALLS_PER_PROMPT = 4  # 2 generations + 1 judge + 1 rationale


def _bare_litellm(server: Any, opts: Options, calls: int, concurrency: int) -> dict[str, Any]:
    """`litellm.acompletion` alone, in a child process, against the running fake server."""
    opts.log(f"{NAME}: bare litellm.acompletion, {calls} calls at concurrency {concurrency}")
    server.reset()
    figures = run_child(
        ["litellm", "--base-url", server.base_url, "--calls", str(calls), "--concurrency", str(concurrency)]
    )
    figures["peak_in_flight"] = server.stats().peak_in_flight
    return figures


def run(opts: Options) -> dict[str, Any]:
    from benchmarks.side_by_side import LatencyServer

    work = opts.work_dir / NAME
    target_s = 3.0 if opts.quick else 22.0
    concurrencies = (8,) if opts.quick else CONCURRENCIES
    rows: list[dict[str, Any]] = []
    with LatencyServer(round(LATENCY_S * 1000)) as server:
        baseline_calls = 64 if opts.quick else 2500
        baseline = _bare_litellm(server, opts, baseline_calls, 64)
        ceiling = baseline["calls_per_s"]
        # Bare litellm at C = 8 too: how close litellm alone gets to C / L when latency, not CPU, should
        # bound it (each call holds its slot for litellm's client-side work on top of the server's L).
        baseline_c8 = _bare_litellm(server, opts, 64 if opts.quick else 800, 8)
        baseline_c8["ratio_to_limit"] = ratio(baseline_c8["calls_per_s"], 8 / LATENCY_S)
        opts.log(
            f"{NAME}: Gateway.complete alone (no workflow graphs), {baseline_calls} calls at concurrency 64"
        )
        server.reset()
        gateway = run_child(
            [
                "gateway",
                "--base-url",
                server.base_url,
                "--calls",
                str(baseline_calls),
                "--concurrency",
                "64",
                "--cache-dir",
                str(work / "gateway"),
            ]
        )
        gateway["peak_in_flight"] = server.stats().peak_in_flight
        gateway["ratio_to_bare_litellm"] = ratio(gateway["calls_per_s"], ceiling)
        for c in concurrencies:
            limit = c / LATENCY_S
            expected = min(limit, ceiling)
            n_prompts = max(16, math.ceil(target_s * expected / CALLS_PER_PROMPT))
            prompts = write_prompts(work / f"prompts-{n_prompts}.jsonl", n_prompts)
            config_path = work / f"config-c{c}.json"
            config_path.write_text(
                json.dumps(build_config(server.base_url, work / "runs", prompts, concurrency=c))
            )
            opts.log(f"{NAME}: build of {n_prompts} prompts at concurrency {c} (limit {limit:g} calls/s)")
            server.reset()
            load = load_average()
            with ServerWatch(server) as watch:
                child = run_child(["build", str(config_path)])
            stats = server.stats()
            calls_per_s = stats.calls / child["wall_s"]
            active = stats.calls / watch.active_s if watch.active_s else None
            rows.append(
                {
                    "concurrency": c,
                    "prompts": n_prompts,
                    "server_calls": stats.calls,
                    "gateway_calls": child["llm"].get("calls"),
                    "peak_in_flight": stats.peak_in_flight,
                    "wall_s": child["wall_s"],
                    "calls_per_s": round(calls_per_s, 2),
                    "limit_calls_per_s": limit,
                    "ratio_to_limit": ratio(calls_per_s, limit),
                    "active_calls_per_s": round(active, 2) if active else None,
                    "active_ratio_to_limit": ratio(active, limit),
                    # Bare litellm's figure has no start-up in it: compare the build's calling window.
                    "ratio_to_bare_litellm": ratio(active, ceiling),
                    "cpu_ratio_to_bare_litellm": ratio(
                        baseline["cpu_ms_per_call"],
                        1000 * child.get("shards_cpu_s", child["cpu_s"]) / max(stats.calls, 1),
                    ),
                    "cpu_s": child["cpu_s"],
                    "cpu_ms_per_call": round(1000 * child["cpu_s"] / max(stats.calls, 1), 3),
                    "shards_wall_s": child.get("shards_wall_s"),
                    "shards_cpu_ms_per_call": round(1000 * child["shards_cpu_s"] / max(stats.calls, 1), 3)
                    if child.get("shards_cpu_s")
                    else None,
                    "calls_by_role": child["calls_by_role"],
                    "pairs": child["counts"].get("pairs"),
                    "status": child["status"],
                    "load_average": load,
                }
            )
            opts.log(
                f"{NAME}: C={c}: {calls_per_s:.1f} calls/s end to end, {active or 0:.1f} calling "
                f"= {(active or 0) / limit:.2f} of C/L, "
                f"{1000 * child.get('shards_cpu_s', child['cpu_s']) / max(stats.calls, 1):.2f} ms CPU/call "
                "(shard phase), "
                f"peak in flight {stats.peak_in_flight}"
            )
    at64 = next((r for r in rows if r["concurrency"] == 64), None)
    at8 = next((r for r in rows if r["concurrency"] == 8), None)
    return {
        "latency_s": LATENCY_S,
        "baseline_bare_litellm": baseline,
        "baseline_bare_litellm_c8": baseline_c8,
        "gateway_only": gateway,
        "builds": rows,
        "targets": {
            "c8_calling_ratio_to_limit": {
                "target": 0.95,
                "measured": at8["active_ratio_to_limit"] if at8 else None,
            },
            "c8_calling_ratio_to_bare_litellm_c8": {
                "target": None,
                "measured": ratio(at8["active_calls_per_s"], baseline_c8["calls_per_s"]) if at8 else None,
            },
            "c64_calling_ratio_to_bare_litellm": {
                "target": 0.9,
                "measured": at64["ratio_to_bare_litellm"] if at64 else None,
            },
            "c64_cpu_ratio_to_bare_litellm": {
                "target": 0.9,
                "measured": at64["cpu_ratio_to_bare_litellm"] if at64 else None,
            },
        },
    }
