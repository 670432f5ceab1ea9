"""`factory fake-llm`: serve the scripted OpenAI-compatible fake endpoint (tests, benchmarks, demos)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factory.cli.options import finite

# Not `factory annotate`'s port (8765): a demo runs both at once.
DEFAULT_PORT = 8766


def fake_llm(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on the bind address (0 = any free port).")
    ] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    script: Annotated[
        Path | None, typer.Option(help="YAML/JSON script of rules, latency and faults.")
    ] = None,
    latency: Annotated[
        float, typer.Option(callback=finite(0), help="Fixed latency per request, seconds.")
    ] = 0.0,
) -> None:
    """Serve a fake OpenAI-compatible /v1/chat/completions until interrupted.

    Prints its base URL (the `api_base` to give a model) on stdout once it accepts connections, so a
    script that started it with `--port 0` can read where it is.
    """
    from factory.testing import serve_forever

    def ready(bound: int) -> None:
        print(f"http://{host}:{bound}/v1", flush=True)

    serve_forever(
        host=host, port=port, script_path=str(script) if script else None, latency_s=latency, on_ready=ready
    )


def register(app: typer.Typer) -> None:
    app.command("fake-llm")(fake_llm)
