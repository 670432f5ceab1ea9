"""Command-line usage errors as the CLI reports them: `error: <one line>`, exit 2.

The CLI runs typer without standalone mode, so the usage errors come back as exceptions. Typer
raises its own vendored copy of click's exception classes (`typer.TyperException` and subclasses),
which are *not* `click.ClickException`; both families are handled here, as is click's own
(`click` may still raise from a plain click command or parameter type).
"""

from __future__ import annotations

import click
import typer


def usage_error_line(exc: BaseException) -> str | None:
    """The one-line message of a click/typer usage error (an unknown option or command, a missing
    argument, a value of the wrong type), or None when `exc` is not one."""
    if not isinstance(exc, click.ClickException | typer.TyperException):
        return None
    if type(exc).__name__ == "NoArgsIsHelpError":
        return "no command given; the commands are listed above (factory --help)"
    message = " ".join(exc.format_message().split())
    return message[:300] + ("..." if len(message) > 300 else "") or type(exc).__name__


def is_abort(exc: BaseException) -> bool:
    """click's or typer's Abort (an EOF at a prompt): exit 1 without a message."""
    return isinstance(exc, click.exceptions.Abort | typer.Abort)


def exit_code(exc: BaseException) -> int | None:
    """The code of a click or typer `Exit` raised outside a command's normal return, else None."""
    if isinstance(exc, click.exceptions.Exit | typer.Exit):
        return int(exc.exit_code)
    return None
