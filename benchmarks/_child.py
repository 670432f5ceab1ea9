"""The measured side of each benchmark, run as a child process; prints one JSON line on stdout.

    python -m benchmarks._child build CONFIG.json [--resume RUN_DIR]
    python -m benchmarks._child litellm --base-url URL --calls N --concurrency C
    python -m benchmarks._child gateway --base-url URL --calls N --concurrency C [--cache-dir DIR]
    python -m benchmarks._child finalize RUN_DIR
    python -m benchmarks._child embedded --prompts N --max-tokens T --rounds R

CPU time (`time.process_time`, all threads of this process) and peak RSS (`ru_maxrss`) are read
here, so they count the factory alone: the fake server and the driver are other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

for _key, _value in (("LITELLM_LOCAL_MODEL_COST_MAP", "True"), ("LITELLM_LOG", "ERROR")):
    os.environ.setdefault(_key, _value)


def _rss_mib() -> dict[str, float]:
    """Current and peak resident set size of this process, MiB (Linux /proc and ru_maxrss in KiB)."""
    current = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {
        "rss_mib": round(current, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# --- build -----------------------------------------------------------------------------------------


def _trace_memory(into: dict[str, Any]) -> None:
    """Record RSS after every finished shard (prompts done so far, MiB), and the peak reached by the
    shards alone, i.e. before `finalize` merges the tables."""
    from factory.pipeline import runner

    plain_shard, plain_finalize = runner.process_shard, runner.finalize
    samples: list[tuple[int, float]] = []
    into["rss_by_prompts_done"] = samples
    done = 0

    async def traced_shard(ctx: Any, shard: int, prompts: list[Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal done
        result = await plain_shard(
            ctx, shard, prompts, *args, **kwargs
        )  # run_shards also passes the prompt slots
        done += len(prompts)
        samples.append((done, _rss_mib()["rss_mib"]))
        return result

    def traced_finalize(*args: Any, **kwargs: Any) -> Any:
        into["peak_rss_before_finalize_mib"] = _rss_mib()["peak_rss_mib"]
        return plain_finalize(*args, **kwargs)

    runner.process_shard = traced_shard  # type: ignore[assignment]
    runner.finalize = traced_finalize  # type: ignore[assignment]


def _time_shards(into: dict[str, Any]) -> None:
    """CPU and wall time of the shard phase alone (every model call and the stage work, without the
    start-up before it and `finalize` after it), so that per-call CPU is not diluted by fixed costs."""
    from factory.pipeline import runner

    plain = runner.run_shards

    async def timed(*args: Any, **kwargs: Any) -> Any:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            return await plain(*args, **kwargs)
        finally:
            into["shards_cpu_s"] = round(time.process_time() - cpu0, 3)
            into["shards_wall_s"] = round(time.perf_counter() - wall0, 3)

    runner.run_shards = timed  # type: ignore[assignment]


def build(config_path: Path | None, resume: Path | None, memory_trace: bool = False) -> dict[str, Any]:
    from factory.config import parse_config
    from factory.pipeline import run_build

    config = None
    if config_path is not None:
        config = parse_config(json.loads(config_path.read_text()), str(config_path))
    trace: dict[str, Any] = {}
    _time_shards(trace)
    if memory_trace:
        _trace_memory(trace)
    before = _rss_mib()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = run_build(config, resume_dir=resume)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    manifest = result.manifest
    return {
        "run_dir": str(result.run_dir),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "rss_before_build_mib": before["rss_mib"],
        **_rss_mib(),
        "counts": manifest.get("counts", {}),
        "llm": {k: v for k, v in manifest.get("llm", {}).items() if not k.startswith("by_")},
        "status": manifest.get("status"),
        "calls_by_role": {
            role: v.get("calls", 0) for role, v in manifest.get("llm", {}).get("by_role", {}).items()
        },
        **trace,
    }


def finalize(run_dir: Path) -> dict[str, Any]:
    """`finalize` alone on a run folder whose shards are done (see benchmarks/_tile.py)."""
    from benchmarks._tile import finalize_only
    from factory.pipeline import runner  # noqa: F401  (imports outside the measured part)

    before = _rss_mib()
    wall0 = time.perf_counter()
    result = finalize_only(run_dir)
    return {
        "wall_s": round(time.perf_counter() - wall0, 3),
        "rss_before_mib": before["rss_mib"],
        **_rss_mib(),
        **result,
    }


# --- bare litellm ------------------------------------------------------------------------------------


async def _bare_litellm(base_url: str, calls: int, concurrency: int) -> dict[str, Any]:
    import litellm

    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            await litellm.acompletion(
                model="openai/fake",
                api_base=base_url,
                api_key="no-key",
                messages=[{"role": "user", "content": f"Explain topic {i} briefly."}],
                temperature=0.7,
                max_tokens=256,
                seed=i,
                num_retries=0,
                max_retries=0,
                timeout=120.0,
                drop_params=True,
            )  # what the gateway passes

    await asyncio.gather(*(one(-1 - i) for i in range(min(calls, 2 * concurrency))))  # warm connections
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "calls": calls,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "calls_per_s": round(calls / wall, 2),
        "cpu_ms_per_call": round(1000 * cpu / calls, 3),
        **_rss_mib(),
    }


async def _gateway_only(base_url: str, calls: int, concurrency: int, cache_dir: Path) -> dict[str, Any]:
    """The same calls as `_bare_litellm`, through `Gateway.complete` (request cache in SQLite, usage,
    retries, semaphores) but without any workflow graph: the gateway's own cost per call."""
    from factory.llm import Gateway, GatewaySettings, ModelSpec

    spec = ModelSpec(model="openai/fake", api_base=base_url, max_concurrency=concurrency, max_tokens=256)
    cache_dir.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(
        {"m": spec},
        GatewaySettings(max_concurrency=concurrency),
        cache_path=cache_dir / f"gateway-{os.getpid()}.sqlite",
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            await gateway.complete("m", [{"role": "user", "content": f"Explain topic {i} briefly."}])

    try:
        await asyncio.gather(*(one(-1 - i) for i in range(min(calls, 2 * concurrency))))  # warm connections
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        gateway.close()
    return {
        "calls": calls,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "calls_per_s": round(calls / wall, 2),
        "cpu_ms_per_call": round(1000 * cpu / calls, 3),
        **_rss_mib(),
    }


# --- embedded model ----------------------------------------------------------------------------------


def embedded(n_prompts: int, max_tokens: int, rounds: int, threads: list[int]) -> dict[str, Any]:
    """Completion tokens/s: the factory (gateway -> litellm -> local provider -> llama.cpp) against
    llama-cpp-python called directly, same prompts and sampling parameters, rounds interleaved so that
    both see the same machine load."""
    from llama_cpp import Llama

    from factory.llm import Gateway, ModelSpec
    from factory.llm.local import ensure_registered, local_model_path

    prompts = [
        f"Explain {topic} in three sentences."
        for topic in (
            "photosynthesis",
            "compound interest",
            "binary search",
            "the water cycle",
            "plate tectonics",
            "vaccines",
            "inflation",
            "recursion",
        )
    ][:n_prompts]
    params = {"temperature": 0.0, "max_tokens": max_tokens, "seed": 0, "repeat_penalty": 1.1}
    provider = ensure_registered()
    provider.engine._model()  # load once, outside the timings
    factory_threads = provider.engine._llama.context_params.n_threads
    direct = {
        n: Llama(
            model_path=str(local_model_path()),
            n_ctx=provider.engine.n_ctx,
            n_threads=n,
            verbose=False,
            seed=0,
        )
        for n in threads
    }
    spec = ModelSpec(model="local/smollm2", temperature=0.0, max_tokens=max_tokens, seed=0, max_concurrency=1)

    def run_direct(llama: Any) -> tuple[int, float]:
        tokens, started = 0, time.perf_counter()
        for text in prompts:
            out = llama.create_chat_completion(messages=[{"role": "user", "content": text}], **params)
            tokens += out["usage"]["completion_tokens"]
        return tokens, time.perf_counter() - started

    async def run_factory() -> tuple[int, float]:
        gateway = Gateway({"m": spec})  # a fresh in-memory cache each round: every call reaches llama.cpp
        tokens, started = 0, time.perf_counter()
        for text in prompts:
            reply = await gateway.complete("m", [{"role": "user", "content": text}])
            tokens += reply.completion_tokens
        return tokens, time.perf_counter() - started

    run_direct(direct[threads[0]])  # warm-up (first-call allocations)
    asyncio.run(run_factory())
    totals: dict[str, list[float]] = {"factory": [0, 0.0], **{f"direct_t{n}": [0, 0.0] for n in threads}}
    for _ in range(rounds):
        for n, llama in direct.items():
            tokens, seconds = run_direct(llama)
            totals[f"direct_t{n}"][0] += tokens
            totals[f"direct_t{n}"][1] += seconds
        tokens, seconds = asyncio.run(run_factory())
        totals["factory"][0] += tokens
        totals["factory"][1] += seconds
    out = {
        name: {"completion_tokens": int(t), "seconds": round(s, 3), "tokens_per_s": round(t / s, 2)}
        for name, (t, s) in totals.items()
    }
    return {
        "factory_threads": factory_threads,
        "prompts": len(prompts),
        "rounds": rounds,
        "params": params,
        "paths": out,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._child")
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("build")
    b.add_argument("config", nargs="?", type=Path)
    b.add_argument("--resume", type=Path)
    b.add_argument(
        "--memory-trace", action="store_true", help="also report RSS after each shard and before finalize"
    )
    for mode in ("litellm", "gateway"):
        calls = sub.add_parser(mode)
        calls.add_argument("--base-url", required=True)
        calls.add_argument("--calls", type=int, required=True)
        calls.add_argument("--concurrency", type=int, required=True)
        calls.add_argument("--cache-dir", type=Path, default=Path("outputs/benchmarks/gateway"))
    fin = sub.add_parser("finalize")
    fin.add_argument("run_dir", type=Path)
    emb = sub.add_parser("embedded")
    emb.add_argument("--prompts", type=int, default=8)
    emb.add_argument("--max-tokens", type=int, default=64)
    emb.add_argument("--rounds", type=int, default=2)
    emb.add_argument("--threads", default="1,2", help="llama.cpp thread counts of the direct path")
    ns = parser.parse_args(argv)
    if ns.mode == "build":
        result = build(ns.config, ns.resume, ns.memory_trace)
    elif ns.mode == "litellm":
        result = asyncio.run(_bare_litellm(ns.base_url, ns.calls, ns.concurrency))
    elif ns.mode == "finalize":
        result = finalize(ns.run_dir)
    elif ns.mode == "gateway":
        result = asyncio.run(_gateway_only(ns.base_url, ns.calls, ns.concurrency, ns.cache_dir))
    else:
        result = embedded(ns.prompts, ns.max_tokens, ns.rounds, [int(t) for t in ns.threads.split(",")])
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
