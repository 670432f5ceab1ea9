"""A fake OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks.

Three ways to run it:

* in-process, on a background thread with its own event loop: `with FakeLLMServer(...) as server:`;
* in a separate process, so a benchmark's server does not share the client's GIL:
  `FakeLLMServer.spawn(...)` (runs `python -m factory.testing.fake_server --port 0`, which prints
  its port as stdout's first line);
* blocking, for the CLI: `serve_forever(host, port, script_path, latency_s)`.

What it answers, and how faults, latency and rate limits behave: `factory.testing.fake_app`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Self

from aiohttp import web

from factory._util.errors import UserError
from factory.testing._process import ServerStats, SpawnedServer, spawn_server
from factory.testing.fake_app import FakeLLMApp
from factory.testing.fake_batches import BatchPlan, FakeBatches
from factory.testing.script import Fault, Rule, Script, fault_from_dict, load_script


async def _open(app: FakeLLMApp, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app.application(), access_log=None)
    await runner.setup()
    # A deep backlog so benchmark bursts of new connections are not refused.
    await web.TCPSite(runner, host, port, backlog=1024).start()
    return runner, int(runner.addresses[0][1])


class FakeLLMServer:
    """The fake server on a background thread; use as a context manager or call start()/stop().

    Example::

        with FakeLLMServer(rules=[Rule("capital", reply="Paris")], faults=Fault(rate_429=0.1)) as server:
            ModelSpec(model="openai/fake", api_base=server.base_url, api_key_env=None)
            ...
            assert server.stats.calls == len(server.requests)
    """

    def __init__(
        self,
        rules: Sequence[Rule] = (),
        default: str | Callable[[dict[str, Any]], str] | None = None,
        *,
        latency_s: float = 0.0,
        latency_jitter_s: float = 0.0,
        faults: Fault | None = None,
        seed: int = 0,
        strict: bool = True,
        keep_requests: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        batch: BatchPlan | None = None,
        request_limit: tuple[int, float] | None = None,
    ) -> None:
        self._app = FakeLLMApp(
            Script(rules, default, strict),
            faults or Fault(),
            latency_s,
            latency_jitter_s,
            seed,
            keep_requests,
            batch=batch,
            request_limit=request_limit,
        )
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. "http://127.0.0.1:PORT/v1"."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the JSON bodies received so far (chat completions only), in arrival order."""
        return self._app.recorded_requests()

    def arrival_times(self, model: str | None = None) -> list[float]:
        """`time.monotonic()` at each chat request's arrival (of `model` as sent, e.g. "fake"), in order."""
        return self._app.arrival_times(model)

    @property
    def batches(self) -> FakeBatches:
        """The Files and Batches endpoints' state: `rows` (custom_id -> outcomes), `batch_rows`, `bodies`."""
        return self._app.batches

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters (calls, ok, status_counts, peak_in_flight, tokens, ...)."""
        return self._app.snapshot()

    def reset(self) -> None:
        """Forget requests and stats, and restart rule counts and the fault sequence."""
        self._app.reset()

    def set_outage(self, on: bool) -> None:
        """Start (True) or end (False) a sustained outage: every request gets 503 meanwhile."""
        self._app.outage = on

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeLLMServer is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                runner, self.port = loop.run_until_complete(_open(self._app, self.host, self.port))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            self._app.cancel_pending()
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-llm-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving; requests still waiting (latency, timeout faults) are dropped."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def spawn(
        script_path: str | None = None,
        *,
        latency_s: float | None = None,
        latency_jitter_s: float | None = None,
        faults: Fault | None = None,
        seed: int | None = None,
        startup_timeout_s: float = 30.0,
        batch: BatchPlan | None = None,
    ) -> SpawnedServer:
        """Run the server in a separate process (see `SpawnedServer`); settings given here override
        the script file's. Example: `with FakeLLMServer.spawn(latency_s=0.1) as server: server.stats()`."""
        args = ["--script", str(script_path)] if script_path else []
        for flag, value in (("--latency", latency_s), ("--jitter", latency_jitter_s), ("--seed", seed)):
            if value is not None:
                args += [flag, str(value)]
        if faults is not None:
            args += ["--faults", json.dumps(asdict(faults))]
        if batch is not None:
            args += ["--batch", json.dumps(asdict(batch))]
        return spawn_server(args, startup_timeout_s)


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    script_path: str | None = None,
    latency_s: float | None = None,
    latency_jitter_s: float | None = None,
    faults: Fault | None = None,
    seed: int | None = None,
    on_ready: Callable[[int], None] | None = None,
    batch: BatchPlan | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. Arguments given here override the script file's settings;
    `on_ready` gets the bound port once the server accepts connections."""
    file = load_script(script_path) if script_path else None
    app = FakeLLMApp(
        Script(file.rules if file else [], file.default if file else None, file.strict if file else True),
        faults if faults is not None else (file.faults if file else Fault()),
        latency_s if latency_s is not None else (file.latency_s if file else 0.0),
        latency_jitter_s if latency_jitter_s is not None else (file.latency_jitter_s if file else 0.0),
        seed if seed is not None else (file.seed if file else 0),
        # A long-running server would otherwise grow without bound.
        keep_requests=False,
        batch=batch,
    )
    asyncio.run(_serve(app, host, port, on_ready))


async def _serve(app: FakeLLMApp, host: str, port: int, on_ready: Callable[[int], None] | None) -> None:
    runner, bound = await _open(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            pass
    if on_ready is not None:
        on_ready(bound)
    try:
        await stop.wait()
    finally:
        app.cancel_pending()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """`python -m factory.testing.fake_server --port 0 [--script F] ...`: prints the port, then serves."""
    parser = argparse.ArgumentParser(prog="python -m factory.testing.fake_server", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", help="YAML or JSON script file (rules, latency, faults)")
    parser.add_argument("--latency", type=float, help="seconds added to every request")
    parser.add_argument("--jitter", type=float, help="extra random latency, up to this many seconds")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--faults", help="JSON object of Fault settings, e.g. '{\"rate_429\": 0.1}'")
    parser.add_argument("--batch", help="JSON object of BatchPlan settings, e.g. '{\"fail_fraction\": 0.1}'")
    ns = parser.parse_args(argv)
    try:
        faults = fault_from_dict(json.loads(ns.faults)) if ns.faults else None
        batch = BatchPlan(**json.loads(ns.batch)) if ns.batch else None
        serve_forever(
            ns.host,
            ns.port,
            ns.script,
            ns.latency,
            ns.jitter,
            faults,
            ns.seed,
            on_ready=lambda port: print(port, flush=True),
            batch=batch,
        )
    except (UserError, json.JSONDecodeError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
