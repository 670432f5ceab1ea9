"""`factory fake-llm`: serve the scripted OpenAI-compatible fake endpoint (tests, benchmarks, demos)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.cli.options import finite


def fake_llm(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 = any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    script: Annotated[Optional[Path], typer.Option(help="YAML/JSON script of rules, latency and faults.")] = None,
    latency: Annotated[float, typer.Option(callback=finite(0), help="Fixed latency per request, seconds.")] = 0.0,
) -> None:
    """Serve a fake OpenAI-compatible /v1/chat/completions until interrupted."""
    from factory.testing import serve_forever

    serve_forever(host=host, port=port, script_path=str(script) if script else None, latency_s=latency)


def register(app: typer.Typer) -> None:
    app.command("fake-llm")(fake_llm)
