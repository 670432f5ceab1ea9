"""Errors a user can act on.

Anything caused by the user's input (config, prompt files, paths, flags) raises `UserError` with a
one-line message that names the problem. The CLI prints it as `error: <message>` and exits 2,
without a traceback.
"""

from __future__ import annotations


class FactoryError(Exception):
    """Base class of the factory's own errors."""


class UserError(FactoryError):
    """A problem the user can fix; the message is one line that names it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
