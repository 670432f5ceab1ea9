"""Where a build's CPU goes: py-spy samples of `factory build --engine local`, by component.

The same 3-call build as `side_by_side` (2 generations + pairwise judge, 600 prompts at C = 64,
against the zero-cost latency server), once on the lean transport and once forced through litellm.
Each sample is given to one component, walking its stack from the running frame outwards and
taking the first component that matches (an import anywhere in the stack counts as import), so the
shares add up to 100% of the samples in which the process was running Python code.
py-spy (the dev extra) must be installed; without it the benchmark is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, Options, child_env, load_average
from benchmarks.side_by_side import LATENCY_MS, LatencyServer, _factory_config

NAME = "profile"
RATE_HZ = 250
# (component, pattern on "function (file:line)" frames), matched from the running frame outwards.
COMPONENTS = (
    ("SQLite request cache", re.compile(r"factory/llm/cache\.py|sqlite3")),
    ("JSON encode/decode", re.compile(r"json/(encoder|decoder|__init__)\.py")),
    ("pydantic validation/schemas", re.compile(r"pydantic")),
    ("logging", re.compile(r"logging/__init__\.py")),
    ("litellm", re.compile(r"litellm/")),
    ("HTTP client (aiohttp, httpx, openai SDK)", re.compile(r"aiohttp/|httpx/|httpcore|openai/")),
    ("LangGraph / langchain_core", re.compile(r"langgraph/|langchain_core/")),
    (
        "finalize (tables, HF dataset, card)",
        re.compile(r"factory/pipeline/finalize/|factory/dataset/|factory/run/tables"),
    ),
    ("gateway (limits, retries, budget, usage)", re.compile(r"factory/llm/")),
    ("stages, workflows, judges", re.compile(r"factory/|judges/")),
    ("asyncio event loop", re.compile(r"asyncio/")),
)
IMPORT = re.compile(r"_find_and_load|_call_with_frames_removed")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def shares(raw: str) -> dict[str, Any]:
    """Component -> share of the non-idle samples in py-spy's raw (collapsed) output."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        if len(frames) <= 1 or frames[-1].startswith("_worker (") or "(threading.py" in frames[-1]:
            continue  # an idle worker thread waiting for work
        if any(IMPORT.search(f) for f in frames):
            counts["imports (start-up)"] += int(n)
            continue
        component = next((name for f in reversed(frames) for name, p in COMPONENTS if p.search(f)), "other")
        counts[component] += int(n)
    total = sum(counts.values())
    return {
        "samples": total,
        "shares": {k: round(v / total, 4) for k, v in counts.most_common()} if total else {},
    }


def _profile(spy: str, server: LatencyServer, work: Path, transport: str, n: int, c: int) -> dict[str, Any]:
    config_path = _factory_config(server, work, n, c)
    config = json.loads(config_path.read_text())
    for role in config["models"].values():
        role["transport"] = transport
    config_path.write_text(json.dumps(config))
    out = work / f"profile-{transport}.txt"
    env = {**child_env(), "OPENAI_API_KEY": "x"}
    subprocess.run(
        [
            spy,
            "record",
            "-r",
            str(RATE_HZ),
            "-f",
            "raw",
            "-o",
            str(out),
            "--",
            sys.executable,
            "-m",
            "factory",
            "build",
            str(config_path),
            "--engine",
            "local",
            "--quiet",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=1800,
    )
    return {"transport": transport, "prompts": n, "concurrency": c, **shares(out.read_text())}


def _collector(server: LatencyServer, work: Path, settings: str, n: int, c: int) -> dict[str, Any]:
    """The garbage collections of one whole build, on the build's collector settings or CPython's
    defaults (`_gc_probe.py`); the last stderr line is the probe's JSON."""
    config_path = _factory_config(server, work, n, c)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_gc_probe.py")), "build", str(config_path)]
        + ["--engine", "local", "--quiet"],
        env={**child_env(), "OPENAI_API_KEY": "x", "FACTORY_BENCH_GC": settings},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return {"settings": settings, "prompts": n, "concurrency": c, **json.loads(done.stderr.splitlines()[-1])}


def run(opts: Options) -> dict[str, Any]:
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy not installed (pip install -e '.[dev]')"}
    n, c = (48, 8) if opts.quick else (600, 64)
    work = opts.work_dir / NAME
    work.mkdir(parents=True, exist_ok=True)
    with LatencyServer(LATENCY_MS) as server:
        load = load_average()
        profiles = [_profile(spy, server, work, t, n, c) for t in ("lean", "litellm")]
        # The collector's own time is invisible to py-spy's Python frames: timed separately, at the
        # side-by-side's C=64 size, on the build's settings and on CPython's defaults.
        gc_n, gc_c = (48, 8) if opts.quick else (1500, 64)
        collector = [_collector(server, work, s, gc_n, gc_c) for s in ("build", "default")]
    return {
        "rate_hz": RATE_HZ,
        "latency_ms": LATENCY_MS,
        "load_average": load,
        "profiles": profiles,
        "collector": collector,
    }
