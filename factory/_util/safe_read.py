"""Reading a user's input file without hanging or running out of memory.

A path a user names can be anything: a FIFO (opening it blocks until a writer comes, which is
never), a link to `/dev/zero` or `/dev/urandom` (reading never ends), a socket, or a file of many
gigabytes. So an input file is read only when it is a regular file once symlinks are resolved, and
only up to a size cap: `FACTORY_MAX_INPUT_BYTES` (default 1 GiB) unless the caller passes its own
(prompt files: `prompts.max_file_bytes`).

This module is low-level on purpose (it imports only `factory._util.errors`), so `judges` can use it too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from factory._util.errors import UserError

MAX_INPUT_BYTES_ENV = "FACTORY_MAX_INPUT_BYTES"
DEFAULT_MAX_INPUT_BYTES = 1 << 30  # 1 GiB: far above any prompt or human set, far below a machine's memory
UTF8_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


def max_input_bytes(configured: int | None = None) -> int:
    """The size cap: the caller's, else `$FACTORY_MAX_INPUT_BYTES`, else 1 GiB."""
    if configured is not None:
        return configured
    raw = os.environ.get(MAX_INPUT_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{MAX_INPUT_BYTES_ENV} must be a whole number of bytes, got {raw[:40]!r}") from None
    if value < 1:
        raise UserError(f"{MAX_INPUT_BYTES_ENV} must be at least 1, got {value}")
    return value


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB': sizes in messages a person reads."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_kind(mode: int, path: Path, what: str) -> None:
    if stat.S_ISDIR(mode):
        raise UserError(f"{what} is a directory, not a file: {path}")
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} is {_kind(mode)}, not a regular file: {path}")


def _too_big(how: str, cap: int, path: Path, what: str, limit_hint: str) -> UserError:
    return UserError(f"{what} {how} the {human_bytes(cap)} limit: {path} (raise {limit_hint})")


def regular_file_size(path: str | Path, *, what: str = "input file") -> int:
    """The size of a regular file (symlinks followed); a missing path or any other kind is a `UserError`."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows symlinks: a link to /dev/zero is judged by what it points to
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except PermissionError:
        raise UserError(f"{what} not readable (permission denied): {path}") from None
    except OSError as exc:
        raise UserError(f"{what} cannot be read: {path} ({exc.strerror or exc})") from None
    _refuse_kind(info.st_mode, path, what)
    return info.st_size


def read_bytes(
    path: str | Path,
    *,
    what: str = "input file",
    max_bytes: int | None = None,
    limit_hint: str = MAX_INPUT_BYTES_ENV,
) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; anything else is a one-line `UserError`.

    `what` names the file in messages ("prompt file"); `limit_hint` says which setting raises the cap.
    """
    path = Path(path)
    cap = max_input_bytes(max_bytes)
    size = regular_file_size(path, what=what)
    if size > cap:
        raise _too_big(f"is {human_bytes(size)}, over", cap, path, what, limit_hint)
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open() still returns at once,
        # and the fstat below refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        raise UserError(f"{what} not readable (permission denied): {path}") from None
    except OSError as exc:
        raise UserError(f"{what} cannot be read: {path} ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb", buffering=0) as handle:
        _refuse_kind(os.fstat(fd).st_mode, path, what)
        chunks: list[bytes] = []
        total = 0
        # Read at most cap + 1 bytes: a file that grows while being read cannot take more than the cap.
        while chunk := handle.read(min(_CHUNK, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise _too_big("grew while being read, past", cap, path, what, limit_hint)
    return b"".join(chunks)


def decode_text(data: bytes, *, path: str | Path, what: str = "input file") -> str:
    """UTF-8 text of a file's bytes, without the byte-order mark some editors write at the start."""
    try:
        return data.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{what} is not valid UTF-8: {path} (byte {exc.start + (3 if data.startswith(UTF8_BOM) else 0)})"
        ) from None


def read_text(
    path: str | Path,
    *,
    what: str = "input file",
    max_bytes: int | None = None,
    limit_hint: str = MAX_INPUT_BYTES_ENV,
) -> str:
    """`read_bytes` decoded as UTF-8 (a leading BOM is dropped)."""
    return decode_text(
        read_bytes(path, what=what, max_bytes=max_bytes, limit_hint=limit_hint), path=path, what=what
    )
