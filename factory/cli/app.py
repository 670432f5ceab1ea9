"""The typer application that every sub-command registers itself on."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="factory",
    help="Synthetic preference dataset factory: prompts in, judged and verified DPO/KTO pairs out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's own help layout: typer's rich panels print a `<bool>` type after every flag (even
    # --help), which reads as if the flag took a value.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from factory import __version__

        print(f"factory {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show the traceback of an error instead of one line "
            "(also FACTORY_DEBUG=1; accepted before or after the command).",
        ),
    ] = False,
) -> None:
    """Synthetic preference dataset factory: prompts in, judged and verified DPO/KTO pairs out."""
    # `--debug` is read by `factory.cli.main` before click parses anything (so that it works after the
    # command name too); it is declared here so that the help shows it.
