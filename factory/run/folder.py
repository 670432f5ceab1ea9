"""The run folder `outputs/<run_id>/`: paths and shard files (written atomically, `factory._util.atomic_files`).

Every file is written to a temporary name in the same folder and renamed into place, so a killed
build never leaves a partial file that a reader could mistake for a finished one. Stage outputs
are written per shard (`stages/<stage>/shard-00003.parquet`); a shard file that exists is done.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.atomic_files import atomic_write_json, atomic_write_parquet
from factory._util.errors import UserError
from factory._util.json_columns import rows_frame
from factory._util.run_ids import new_run_id
from factory.records import Failure
from factory.run.integrity import MARKER_NAME, check_resumable, marker_content
from factory.run.lock import RunLock, lock_run_folder

# A failure's typed `stop` is not a column: a stop ends the shard before its stage files are written, so no
# failures file ever holds one (and shard files of every earlier version read the same).
FAILURE_SCHEMA = {"item_id": pl.Utf8, "stage": pl.Utf8, "reason": pl.Utf8, "raw": pl.Utf8}


class RunFolder:
    """Paths of one run. `RunFolder.create` makes a new one; `RunFolder.open` resumes one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, output_dir: str | Path, name: str) -> RunFolder:
        root = Path(output_dir) / new_run_id(name)
        try:
            root.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise UserError(f"cannot create run folder {root}: {exc.strerror}") from None
        # The marker first: only a folder that has it can be resumed (see factory.run.integrity).
        atomic_write_json(root / MARKER_NAME, marker_content())
        return cls(root)

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        root = Path(path)
        if not (root / "config.yaml").is_file():
            raise UserError(f"not a run folder (no config.yaml): {root}")
        return cls(root)

    @classmethod
    def open_for_resume(cls, path: str | Path) -> RunFolder:
        """A run folder to continue: one this factory wrote, intact enough to resume (a one-line
        `UserError` names what is wrong; see `factory.run.integrity`)."""
        root = Path(path)
        check_resumable(root)
        return cls(root)

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def cache_path(self) -> Path:
        return self.root / "cache.sqlite"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def table(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def shard_path(self, stage: str, shard: int, kind: str = "rows") -> Path:
        suffix = "" if kind == "rows" else f".{kind}"
        return self.root / "stages" / stage / f"shard-{shard:05d}{suffix}.parquet"

    def shard_done(self, stage: str, shard: int) -> bool:
        return self.shard_path(stage, shard).is_file()

    def stage_files(self, stage: str, kind: str = "rows") -> list[Path]:
        """The finished shard files of a stage, in shard order."""
        folder = self.root / "stages" / stage
        suffix = "" if kind == "rows" else f".{kind}"
        pattern = re.compile(rf"^shard-\d{{5}}{re.escape(suffix)}\.parquet$")
        files = (
            sorted(p for p in folder.glob("shard-*.parquet") if pattern.match(p.name))
            if folder.is_dir()
            else []
        )
        if kind != "rows":
            # Only finished shards count: a failures file is written just before its rows file.
            files = [p for p in files if (folder / (p.name[:11] + ".parquet")).is_file()]
        return files

    def scan_stage(self, stage: str, kind: str = "rows") -> pl.LazyFrame | None:
        """All non-empty shard files of a stage as one lazy frame (columns unioned, types widened, as
        `read_stage`), or None when there are none: a merge can stream it instead of holding it."""
        scans = [pl.scan_parquet(p) for p in self.stage_files(stage, kind) if _parquet_rows(p) > 0]
        return pl.concat(scans, how="diagonal_relaxed") if scans else None

    def read_stage(self, stage: str, kind: str = "rows") -> pl.DataFrame | None:
        """All shard files of a stage concatenated in shard order, or None when there are none."""
        scan = self.scan_stage(stage, kind)
        return None if scan is None else scan.collect()

    def lock(self) -> RunLock:
        """Hold this run folder for this process (see `factory.run.lock`); raises `UserError` when
        another process holds it."""
        return lock_run_folder(self.root)

    def drop_temporary_files(self) -> None:
        """Temporary files left by a writer that was killed mid-write."""
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def reopen_shards(self, retry_markers: tuple[str, ...], only: set[int] | None = None) -> list[int]:
        """Reopen every shard (of `only`, when given) whose stage files record a failure that may pass
        (any reason or unscored reason containing one of `retry_markers`), so that running it again
        redoes it. Returns the reopened shards.

        A reopened shard loses all its stage files and is redone from the first stage; the request
        cache answers every call that had finished, so redoing it costs only the calls that failed.
        """
        stages = self.root / "stages"
        files_by_shard: dict[int, list[Path]] = {}
        for path in stages.glob("*/shard-*.parquet") if stages.is_dir() else []:
            match = re.match(r"^shard-(\d{5})(?:\.[a-z_]+)?\.parquet$", path.name)
            if match and (only is None or int(match.group(1)) in only):
                files_by_shard.setdefault(int(match.group(1)), []).append(path)
        reopened = []
        for shard, files in sorted(files_by_shard.items()):
            marked = [p for p in files if not _sound_shard_file(p) or _records_marker(p, retry_markers)]
            if not marked:
                continue
            # Unmarked files go first: if this is interrupted, the marker survives for the next resume.
            for path in [p for p in files if p not in marked] + marked:
                path.unlink(missing_ok=True)
            reopened.append(shard)
        return reopened

    def write_shard(
        self, stage: str, shard: int, rows: Sequence[Mapping[str, Any]], failures: Sequence[Failure]
    ) -> None:
        # Failures first: the rows file is the "shard done" marker, so it must be the last write.
        atomic_write_parquet(self.shard_path(stage, shard, "failures"), failures_frame(failures))
        atomic_write_parquet(self.shard_path(stage, shard), rows_frame(rows))


def _records_marker(path: Path, markers: tuple[str, ...]) -> bool:
    """Whether a stage file's `reason` or `unscored_reason` column mentions one of `markers`."""
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError):
        return True  # unreadable: redo the shard rather than trust it
    for column in ("reason", "unscored_reason"):
        if column in frame.columns and frame.schema[column] == pl.Utf8:
            values = frame[column].drop_nulls()
            if any(values.str.contains(m, literal=True).any() for m in markers):
                return True
    return False


def _sound_shard_file(path: Path) -> bool:
    """Whether a shard file is one this factory wrote: parquet, with the key column its kind must have
    (`prompt_id` in stage rows, the failure columns in a failures file). Anything else is redone."""
    try:
        schema = pl.read_parquet_schema(path)
        rows = _parquet_rows(path)
    except Exception:
        return False
    if path.name.endswith(".failures.parquet"):
        return all(schema.get(name) == dtype for name, dtype in FAILURE_SCHEMA.items())
    return rows == 0 or "prompt_id" in schema


def _parquet_rows(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item()


def failures_frame(failures: Sequence[Failure]) -> pl.DataFrame:
    return pl.DataFrame(
        [{k: (None if f.get(k) is None else str(f.get(k))) for k in FAILURE_SCHEMA} for f in failures],
        schema=FAILURE_SCHEMA,
    )
