"""Where a scheduled build's versions go, decided when the deployment is registered.

A Prefect process worker runs every flow run in a temporary working folder that it deletes when
the run ends. A deployment that stored `run.output_dir: outputs` therefore built into that
temporary folder and lost the run (and the next run, finding no earlier version, built everything
again), while Prefect said "Completed". So `factory schedule` stores one of:

* an absolute folder: a relative `run.output_dir` (or `--output-dir`) is resolved against the
  folder `factory schedule` runs in, which is what `factory build` would have used, and the CLI
  says so. On a worker on another machine the folder must exist there (a shared mount);
* a storage URL that fsspec opens (`s3://bucket/datasets`, `gs://...`, `file:///srv/datasets`):
  each run then builds into a local staging folder that holds a copy of the dataset's version
  index, and copies its run folder and the updated `versions.json` to the URL when it ends
  (`factory.run.remote_output`). The URL's fsspec implementation (`s3fs` for s3://) must be installed
  where the worker runs; it is checked here, on the deploying machine, too.

Other paths that a worker reads (`gate.human_set` when it names a file) are made absolute as well.

    resolved = resolve_for_schedule(config, Path.cwd())
    resolved.config.run.output_dir   # "/home/me/project/outputs"
    resolved.notes                   # ["run.output_dir 'outputs' is relative: ..."]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from factory._util.errors import UserError
from factory.config import BuildConfig

_URL = re.compile(r"^(?P<protocol>[A-Za-z][A-Za-z0-9+.-]*)://")


def url_protocol(location: str) -> str | None:
    """The fsspec protocol of a storage URL (`s3` of `s3://b/x`), None for a local path."""
    match = _URL.match(location)
    return match.group("protocol").lower() if match else None


def check_storage_url(url: str) -> None:
    """Raise a one-line `UserError` unless fsspec has an importable filesystem for `url`'s protocol."""
    protocol = url_protocol(url)
    assert protocol is not None
    try:
        import fsspec
    except ImportError:
        raise UserError(f"output '{url}' is a storage URL, which needs fsspec: pip install fsspec") from None
    if protocol in ("http", "https"):
        raise UserError(
            f"output '{url}': http(s) URLs are read-only in fsspec; give a folder or a writable "
            "storage URL such as s3://bucket/datasets"
        )
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise UserError(f"output '{url}': fsspec knows no storage protocol '{protocol}://'") from None
    except ImportError as exc:
        # fsspec's message names the package (e.g. "Install s3fs to access S3").
        raise UserError(
            f"output '{url}': {' '.join(str(exc).split())}; it is needed on the workers too"
        ) from None


@dataclass(frozen=True)
class ScheduledOutput:
    """The config a deployment stores, and what was changed to get it (one line each, for the user)."""

    config: BuildConfig
    notes: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        return self.config.run.output_dir


def resolve_for_schedule(config: BuildConfig, base: Path, output: str | None = None) -> ScheduledOutput:
    """`config` with `run.output_dir` (or `output`, when given) made absolute or checked as a storage URL,
    and a `gate.human_set` that names a file relative to `base` made absolute."""
    notes: list[str] = []
    location = output if output is not None else config.run.output_dir
    if url_protocol(location) is not None:
        check_storage_url(location)
        resolved = location.rstrip("/")
    else:
        path = Path(location).expanduser()
        resolved = str(path if path.is_absolute() else (base / path).resolve())
        if not path.is_absolute():
            notes.append(
                f"output folder '{location}' is relative: the deployment stores {resolved} (a worker "
                f"runs each build in a temporary folder; on another machine that path must exist there)"
            )
    run = config.run.model_copy(update={"output_dir": resolved})
    gate = config.gate
    human_set = gate.human_set
    if (
        human_set is not None
        and url_protocol(human_set) is None
        and not Path(human_set).is_absolute()
        and (base / human_set).is_file()
    ):
        gate = gate.model_copy(update={"human_set": str((base / human_set).resolve())})
        notes.append(
            f"gate.human_set '{human_set}' is a relative file: the deployment stores {gate.human_set}"
        )
    return ScheduledOutput(config.model_copy(update={"run": run, "gate": gate}), notes)


def refuse_storage_url(output_dir: str) -> None:
    """`factory build` writes a local run folder (it can be resumed, annotated, published); a storage URL
    is for scheduled builds, which sync each finished run to it."""
    if url_protocol(output_dir) is not None:
        raise UserError(
            f"run.output_dir '{output_dir}' is a storage URL; factory build writes a local run folder "
            "(give --output-dir DIR). Storage URLs are for scheduled builds: factory schedule "
            "CONFIG --cron ... --output-dir URL"
        )
