"""A build whose `run.output_dir` is a storage URL: built locally, then copied to the URL.

The pipeline writes run folders with atomic renames, SQLite caches and parquet appends, which an
object store cannot do, so a run builds into a local staging folder and its finished run folder is
copied to `<url>/<name>/<run_id>/` at the end. Before the build, the staging folder receives what
the incremental selection reads of each earlier version (`config.yaml`, `manifest.json`,
`prompts.parquet`) and `versions.json`, so a scheduled run finds the versions that earlier runs
(on any worker) stored at the URL. `versions.json` is copied last: a version is listed only once
its files are all there.

    with StagedOutput.open("s3://bucket/datasets", "demo") as staged:
        config = config.model_copy(update={"run": config.run.model_copy(update={"output_dir": str(staged.local_root)})})
        ...  # build into staged.local_root/demo/<run_id>/
        staged.push(run_dir)          # -> s3://bucket/datasets/demo/<run_id>/ and versions.json
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from factory.run.incremental import VERSIONS_FILE
from factory.run.lock import LOCK_NAME

# What the incremental selection reads of an earlier run (`factory.run.incremental.built_fingerprints`).
INDEX_FILES = ("config.yaml", "manifest.json", "prompts.parquet")


class StagedOutput:
    """A local staging folder standing for the storage URL `url` while one build of dataset `name` runs."""

    def __init__(self, url: str, name: str, fs: Any, remote_root: str, local_root: Path) -> None:
        self.url = url.rstrip("/")
        self.name = name
        self.fs = fs
        self.remote_home = f"{remote_root.rstrip('/')}/{name}"
        self.local_root = local_root

    @classmethod
    def open(cls, url: str, name: str) -> StagedOutput:
        """Make the staging folder and copy the dataset's version index into it."""
        from fsspec.core import url_to_fs

        fs, remote_root = url_to_fs(url)
        staged = cls(url, name, fs, remote_root, Path(tempfile.mkdtemp(prefix=f"factory-staging-{name}-")))
        staged.pull_index()
        return staged

    @property
    def local_home(self) -> Path:
        return self.local_root / self.name

    def remote_url(self, run_dir: str | Path) -> str:
        """The URL a local run folder of this staging area is copied to."""
        return f"{self.url}/{self.name}/{Path(run_dir).name}"

    def pull_index(self) -> None:
        if not self.fs.isdir(self.remote_home):
            return
        self.local_home.mkdir(parents=True, exist_ok=True)
        for entry in self.fs.ls(self.remote_home, detail=True):
            remote = entry["name"].rstrip("/")
            base = remote.rsplit("/", 1)[-1]
            if entry["type"] == "file" and base == VERSIONS_FILE:
                self.fs.get_file(remote, str(self.local_home / VERSIONS_FILE))
            elif entry["type"] == "directory":
                for file in INDEX_FILES:
                    if self.fs.isfile(f"{remote}/{file}"):
                        (self.local_home / base).mkdir(exist_ok=True)
                        self.fs.get_file(f"{remote}/{file}", str(self.local_home / base / file))

    def push(self, run_dir: str | Path) -> str:
        """Copy a run folder, then `versions.json`, to the URL; returns the run folder's URL."""
        run_dir = Path(run_dir)
        target = f"{self.remote_home}/{run_dir.name}"
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
            if path.name == LOCK_NAME or path.name.endswith(".tmp"):
                continue
            remote = f"{target}/{path.relative_to(run_dir).as_posix()}"
            self.fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(path), remote)
        versions = self.local_home / VERSIONS_FILE
        if versions.is_file():
            self.fs.put_file(str(versions), f"{self.remote_home}/{VERSIONS_FILE}")
        return self.remote_url(run_dir)

    def close(self) -> None:
        shutil.rmtree(self.local_root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
