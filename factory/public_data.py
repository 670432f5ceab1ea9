"""Public data files known by name: canonical URL, checksum, local copy, download cache.

Resolution order: a folder laid out like the project's shared data (`FACTORY_DATA_DIR`, e.g.
`prompts/gsm8k_test.jsonl`), then the download cache (`FACTORY_CACHE_DIR`, default
`~/.cache/preference-factory`), then a download from the canonical URL, verified against its
sha256 when one is known and written atomically into the cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from factory.errors import UserError

DATA_DIR_ENV = "FACTORY_DATA_DIR"
CACHE_DIR_ENV = "FACTORY_CACHE_DIR"


@dataclass(frozen=True)
class PublicFile:
    """One public file: where it lives canonically and where a local copy sits in a data folder."""

    name: str
    relative_path: str
    url: str
    sha256: str | None
    license: str


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "preference-factory")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None, *, timeout_s: float = 60.0) -> Path:
    """Download `url` to `target` atomically; a checksum mismatch leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        if sha256 is not None:
            got = sha256_of(tmp)
            if got != sha256:
                raise UserError(f"checksum mismatch for {url}: expected sha256 {sha256[:16]}..., got {got[:16]}...")
        os.replace(tmp, target)
        return target
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise UserError(f"cannot download {url} ({exc}); pass a local copy with {DATA_DIR_ENV}=FOLDER "
                        "or a file path") from None
    finally:
        tmp.unlink(missing_ok=True)


def resolve_public_file(entry: PublicFile, *, data_dir: str | Path | None = None, url: str | None = None) -> Path:
    """A local path to `entry`: a data folder copy, the cache, or a fresh verified download."""
    for folder in (data_dir, os.environ.get(DATA_DIR_ENV)):
        if folder:
            candidate = Path(folder) / entry.relative_path
            if candidate.is_file():
                return candidate
    cached = cache_dir() / entry.relative_path
    if cached.is_file():
        return cached
    return download(url or entry.url, cached, entry.sha256)
