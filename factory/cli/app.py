"""The typer application that every sub-command registers itself on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="factory",
    help="Synthetic preference dataset factory: prompts in, judged and verified DPO/KTO pairs out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
