"""The `factory` command. Each sub-command lives in its own module and registers on `app`.

User mistakes surface as `error: <one line>` with exit code 2; `--debug` (or FACTORY_DEBUG=1)
shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from factory._util.errors import UserError
from factory.cli.app import app


def _register_commands() -> None:
    """Every `factory/cli/*_cmd.py` module registers its command; adding a command is adding a file."""
    import importlib
    import pkgutil

    import factory.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"factory.cli.{info.name}").register(app)


def _quiet_environment() -> None:
    # Offline and quiet by default: no telemetry, no price-list fetch, no Hub look-ups.
    for key, value in (
        ("DO_NOT_TRACK", "1"),
        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    _quiet_environment()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FACTORY_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        _register_commands()
        returned = app(args=args, standalone_mode=False)
        if returned == 130:
            # Typer turns a Ctrl-C into Exit(130), which click hands back (not raises) without
            # standalone mode; `factory build` says more itself (factory._util.interrupts).
            print("interrupted", file=sys.stderr)
            sys.exit(130)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        from factory.cli.usage import exit_code, is_abort, usage_error_line

        code = exit_code(exc)
        if code is not None:
            sys.exit(code)
        usage = usage_error_line(exc)
        if usage is not None:
            if debug:
                raise
            print(f"error: {usage}", file=sys.stderr)
            sys.exit(2)
        if is_abort(exc):
            sys.exit(1)
        if debug:
            raise
        print(
            f"error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} (rerun with --debug for details)",
            file=sys.stderr,
        )
        sys.exit(1)


def console_entry() -> NoReturn:
    """The `factory` console script and `python -m factory`: `main()`, then the process ends without
    the interpreter's teardown (`factory._util.process_exit`), which after a large build is a
    noticeable wait with nothing left to do. Tests and library callers call `main()` instead."""
    from factory._util.process_exit import exit_code, exit_now

    try:
        main()
    except SystemExit as exc:
        exit_now(exit_code(exc.code))
    exit_now(0)


__all__ = ["app", "console_entry", "main"]
