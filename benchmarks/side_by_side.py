"""Side by side with Bespoke Curator and distilabel, and the client ceilings, in one run.

The same 3-call graph per prompt (2 generations + 1 pairwise judge) against one OpenAI-compatible
endpoint with a fixed latency L that costs the client nothing (`peers/fake_latency_server.py`, about
0.1 ms of its own CPU per request), at equal concurrency C, rounds alternating factory, Curator,
distilabel. Wall times are whole processes (start-up included): `factory build --engine local`
against each peer's script (`peers/`). Each peer runs in its own virtual environment, created here
on first use: benchmarks/.venv-curator (Curator, pinned) and distilabel's (`vs_distilabel`).

Also, against the same server: what raw aiohttp, the openai SDK and litellm reach alone at C = 64
(`peers/client_ceiling.py`), and the factory's `Gateway.complete` alone (the lean transport); and for
each factory build, the calling window (first request to last request + L) and the delay from the
process start to its first model call.
"""

from __future__ import annotations

import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from benchmarks._common import REPO, Options, child_env, load_average, ratio, run_child

NAME = "side_by_side"
CURATOR = "bespokelabs-curator==0.1.31"
CURATOR_VENV = REPO / "benchmarks" / ".venv-curator"
PEERS = REPO / "benchmarks" / "peers"
LATENCY_MS = 100
SIZES = ((1500, 64), (600, 8))  # (prompts, concurrency): the two targets
CEILING_CALLS, CEILING_C = 3000, 64
ROUNDS = 3  # alternating; medians reported


@dataclass(frozen=True)
class LatencyStats:
    calls: int  # requests arrived
    ok: int  # requests answered
    peak_in_flight: int


class LatencyServer:
    """`peers/fake_latency_server.py` in its own process; `requests()` counts what arrived."""

    def __init__(self, latency_ms: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.latency_ms = latency_ms
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None

    def requests(self) -> int:
        return self.stats().calls

    def stats(self) -> LatencyStats:
        """What arrived since the start or the last `reset()` (the shape `ServerWatch` reads)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as reply:
            raw = json.loads(reply.read())
        return LatencyStats(int(raw["requests"]), int(raw["answered"]), int(raw["peak_in_flight"]))

    def reset(self) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, str(PEERS / "fake_latency_server.py"), str(self.port), str(self.latency_ms)]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.requests()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)


class ArrivalWatch:
    """Polls the server's request count every `interval_s` while a client runs: when its first and
    last requests arrived, relative to `started` (the client's launch)."""

    def __init__(self, server: LatencyServer, interval_s: float = 0.02) -> None:
        self.server, self.interval_s = server, interval_s
        self.before = server.requests()
        self.started = time.perf_counter()
        self.first_s: float | None = None
        self.last_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        seen = self.before
        while not self._stop.wait(self.interval_s):
            now, count = time.perf_counter() - self.started, self.server.requests()
            if count > seen:
                self.first_s = now if self.first_s is None else self.first_s
                self.last_s, seen = now, count

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def curator_python(install: bool, log: Any = None) -> Path | None:
    """Curator's interpreter; created and installed when missing and `install` is true."""
    python = CURATOR_VENV / "bin" / "python"
    if python.exists() and _imports(python, "bespokelabs.curator"):
        return python
    if not install:
        return None
    if log:
        log(f"{NAME}: creating {CURATOR_VENV.relative_to(REPO)} and installing {CURATOR} (a few minutes)")
    venv.EnvBuilder(with_pip=True, clear=True).create(CURATOR_VENV)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", CURATOR], check=True, stdout=subprocess.DEVNULL
    )
    return python if _imports(python, "bespokelabs.curator") else None


def _imports(python: Path, module: str) -> bool:
    return (
        subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, timeout=300, check=False
        ).returncode
        == 0
    )


def _peer_env(curator: Path | None) -> dict[str, str]:
    env = child_env()
    env.pop("PYTHONPATH", None)  # a peer must not see the factory
    env.update({"OPENAI_API_KEY": "x", "TELEMETRY_ENABLED": "false", "CURATOR_DISABLE_RICH_DISPLAY": "1"})
    if curator is not None:  # litellm's bundled tokenizer files serve tiktoken offline
        found = next(
            curator.parent.parent.glob("lib/python3*/site-packages/litellm/litellm_core_utils/tokenizers"),
            None,
        )
        if found:
            env["TIKTOKEN_CACHE_DIR"] = str(found)
    return env


def _factory_config(server: LatencyServer, work: Path, n: int, c: int) -> Path:
    prompts = work / f"prompts-{n}.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "prompt": f"Question {i}: explain item {i}."}) + "\n" for i in range(n)
        ),
        encoding="utf-8",
    )
    spec = {"model": "openai/fake", "api_base": server.base_url, "max_concurrency": c, "max_tokens": 64}
    config = {
        "run": {
            "name": "sbs",
            "output_dir": str(work / "runs"),
            "seed": 0,
            "shard_size": max(64, 4 * c),
            "concurrency": c,
        },
        "models": {"generator": spec, "judge": {**spec, "temperature": 0.0}},
        "gateway": {"max_concurrency": c},
        "prompts": {"path": str(prompts)},
        "generation": {
            "workflows": [{"kind": "single", "name": "single", "generators": ["generator"], "samples": 2}]
        },
        "judging": {
            "setting": {
                "kind": "judge",
                "models": ["judge"],
                "protocol": "combined",
                "scale": 10,
                "order": "fixed",
            }
        },
        "rationales": {"enabled": False},
        "variants": {"enabled": False},
        "gate": {"enabled": False},
    }
    path = work / f"config-{n}-{c}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def _run(
    who: str, command: list[str], env: dict[str, str], server: LatencyServer, judged: Any
) -> dict[str, Any]:
    with ArrivalWatch(server) as watch:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, timeout=3600, cwd=REPO
        )
        wall = time.perf_counter() - watch.started
    calls = server.requests() - watch.before
    pairs = judged(done) if done.returncode == 0 else None
    if pairs is None:
        return {"who": who, "failed": (done.stdout + done.stderr)[-400:]}
    window = (
        (watch.last_s - watch.first_s + server.latency_ms / 1000) if watch.first_s and watch.last_s else None
    )
    return {
        "who": who,
        "wall_s": round(wall, 2),
        "judged": pairs,
        "calls": calls,
        "pairs_per_s": round(pairs / wall, 2),
        "first_call_s": round(watch.first_s, 2) if watch.first_s else None,
        "calling_calls_per_s": round(calls / window, 1) if window else None,
    }


def _manifest_judged(done: subprocess.CompletedProcess[str]) -> int | None:
    run_dir = Path(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    if run_dir is None or not (run_dir / "manifest.json").is_file():
        return None
    return int(json.loads((run_dir / "manifest.json").read_text())["counts"].get("judgments", 0))


def _printed_judged(done: subprocess.CompletedProcess[str]) -> int | None:
    found = re.search(r"(\d+)/\d+ judged pairs", done.stdout + done.stderr)
    return int(found.group(1)) if found else None


def _client_ceilings(server: LatencyServer, calls: int, c: int, clients: str | None = None) -> dict[str, Any]:
    """`peers/client_ceiling.py` at `c` in flight: client name -> calls/s and CPU ms per call
    (`clients`: a comma-separated subset, default all)."""
    done = subprocess.run(
        [sys.executable, str(PEERS / "client_ceiling.py"), str(server.port), str(calls), str(c)]
        + ([clients] if clients else []),
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return {
        name: {"calls_per_s": float(rate), "cpu_ms_per_call": float(cpu)}
        for name, rate, cpu in re.findall(
            r"^(\S+)\s+C=\d+:\s+([\d.]+) calls/s,\s+([\d.]+) ms CPU/call", done.stdout, re.MULTILINE
        )
    }


def _ceilings(server: LatencyServer, calls: int, c: int, opts: Options) -> dict[str, Any]:
    opts.log(f"{NAME}: client ceilings, {calls} calls at C={c}")
    out = _client_ceilings(server, calls, c)
    gateway = run_child(
        [
            "gateway",
            "--base-url",
            server.base_url,
            "--calls",
            str(calls),
            "--concurrency",
            str(c),
            "--cache-dir",
            str(opts.work_dir / NAME / "gateway"),
        ]
    )
    out["factory-gateway"] = {
        "calls_per_s": gateway["calls_per_s"],
        "cpu_ms_per_call": gateway["cpu_ms_per_call"],
    }
    return out


def _wire_rate(server: LatencyServer, calls: int, c: int) -> float | None:
    """Raw aiohttp's calls/s at `c` in flight over `calls` calls: what the wire and this server allow
    a client with no work of its own at a size's concurrency."""
    return _client_ceilings(server, calls, c, "aiohttp").get("aiohttp", {}).get("calls_per_s")


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def run(opts: Options) -> dict[str, Any]:
    from benchmarks.vs_distilabel import venv_python as distilabel_python

    sizes = ((48, 8),) if opts.quick else SIZES
    rounds = 1 if opts.quick else ROUNDS
    curator = curator_python(install=not opts.quick, log=opts.log)
    distilabel = distilabel_python(install=not opts.quick, log=opts.log)
    peer_env = _peer_env(curator)
    factory_env = {**child_env(), "OPENAI_API_KEY": "x"}
    results: list[dict[str, Any]] = []
    with LatencyServer(LATENCY_MS) as server:
        ceilings = _ceilings(server, 200 if opts.quick else CEILING_CALLS, CEILING_C, opts)
        for n, c in sizes:
            (opts.work_dir / NAME).mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f"{n}-{c}-", dir=opts.work_dir / NAME))
            config = _factory_config(server, work, n, c)
            runs: list[dict[str, Any]] = []
            load = load_average()
            wire = _wire_rate(server, 3 * n, c)
            for r in range(rounds):
                sides = [
                    (
                        "factory",
                        [
                            sys.executable,
                            "-m",
                            "factory",
                            "build",
                            str(config),
                            "--engine",
                            "local",
                            "--quiet",
                        ],
                        factory_env,
                        _manifest_judged,
                    )
                ]
                if curator is not None:
                    sides.append(
                        (
                            "curator",
                            [str(curator), str(PEERS / "curator_pairs.py"), server.base_url, str(n), str(c)],
                            {**peer_env, "CURATOR_CACHE_DIR": tempfile.mkdtemp()},
                            _printed_judged,
                        )
                    )
                if distilabel is not None:
                    sides.append(
                        (
                            "distilabel",
                            [
                                str(distilabel),
                                str(PEERS / "distilabel_pairs.py"),
                                server.base_url,
                                str(n),
                                str(c),
                            ],
                            peer_env,
                            _printed_judged,
                        )
                    )
                for who, command, env, judged in sides:
                    row = _run(who, command, env, server, judged)
                    runs.append({**row, "round": r})
                    opts.log(
                        f"{NAME}: n={n} C={c} round {r}: {who} {row.get('pairs_per_s')} pairs/s "
                        f"({row.get('wall_s')} s, first call {row.get('first_call_s')} s)"
                    )
            by = {
                who: [x for x in runs if x["who"] == who and "failed" not in x]
                for who in ("factory", "curator", "distilabel")
            }
            entry = {
                "prompts": n,
                "concurrency": c,
                "latency_ms": LATENCY_MS,
                "limit_pairs_per_s": round(c / (LATENCY_MS / 1000) / 3, 1),
                "limit_calls_per_s": c / (LATENCY_MS / 1000),
                "load_average": load,
                "runs": runs,
                "failures": [x for x in runs if "failed" in x],
            }
            for who, rows in by.items():
                entry[who] = {
                    "pairs_per_s": _median(rows, "pairs_per_s"),
                    "wall_s": _median(rows, "wall_s"),
                    "first_call_s": _median(rows, "first_call_s"),
                    "calling_calls_per_s": _median(rows, "calling_calls_per_s"),
                    "runs": len(rows),
                }
            entry["factory_over_curator"] = ratio(
                entry["factory"]["pairs_per_s"], entry["curator"]["pairs_per_s"]
            )
            # The best ratio any client could reach: all 3n calls at raw aiohttp's rate, with no
            # start-up and no finalize, against Curator's measured wall time.
            entry["wire_calls_per_s"] = wire
            entry["bound_over_curator"] = (
                ratio(entry["curator"]["wall_s"], 3 * n / wire)
                if wire and entry["curator"]["wall_s"]
                else None
            )
            entry["factory_over_distilabel"] = ratio(
                entry["factory"]["pairs_per_s"], entry["distilabel"]["pairs_per_s"]
            )
            results.append(entry)
    at = {r["concurrency"]: r for r in results}
    raw = ceilings.get("aiohttp", {}).get("calls_per_s")
    c64, c8 = at.get(64), at.get(8)
    targets = {
        "c64_factory_over_curator": {
            "target": 1.5,
            "measured": c64 and c64["factory_over_curator"],
            "bound": c64 and c64["bound_over_curator"],
        },
        "c8_factory_over_curator": {
            "target": 1.2,
            "measured": c8 and c8["factory_over_curator"],
            "bound": c8 and c8["bound_over_curator"],
        },
        "c64_calling_over_raw_aiohttp": {
            "target": 0.8,
            "measured": c64 and ratio(c64["factory"]["calling_calls_per_s"], raw),
        },
        "c8_calling_over_limit": {
            "target": 0.9,
            "measured": c8 and ratio(c8["factory"]["calling_calls_per_s"], c8["limit_calls_per_s"]),
        },
        "first_call_s": {
            "target": 2.0,
            "measured": max((r["factory"]["first_call_s"] or 0) for r in results) if results else None,
        },
    }
    return {
        "latency_ms": LATENCY_MS,
        "curator": CURATOR if curator else None,
        "distilabel": bool(distilabel),
        "ceilings_c64": ceilings,
        "sizes": results,
        "targets": targets,
        "load_average_at_end": load_average(),
    }
