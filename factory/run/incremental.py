"""Incremental builds: new prompts only, one run folder per version, a `versions.json` index.

A scheduled build of a dataset (say `demo`) reads its prompt source again every time; only the
prompts whose content fingerprint (`factory.inputs.prompt_sources.prompt_fingerprint`) is not in an earlier
finished build of the same dataset name are built. Each such build is a new version:

```
outputs/demo/versions.json           # the index, newest last
outputs/demo/demo-20261104-030000-1a2b/   # version 1: a normal run folder
outputs/demo/demo-20261105-030000-9f0e/   # version 2: only prompts not in version 1
```

"Earlier builds" are the run folders of the same `run.name` that finished (their manifest says
`complete`), found under `outputs/<name>/` and directly under `outputs/` (plain `factory build`
runs count too). A prompt that failed inside an earlier build still counts as built: it is in that
build's failures table, and rebuilding it every night would not change the answer.

Example::

    seen = built_fingerprints(Path("outputs"), "demo")
    fresh, skipped = select_new_prompts(prompts, seen)
    ...  # build `fresh` into a run folder under dataset_home(Path("outputs"), "demo")
    append_version(dataset_home(Path("outputs"), "demo"), run_dir, manifest, new_prompts=len(fresh), skipped=skipped)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from factory._util.atomic_files import atomic_write_json
from factory._util.errors import UserError
from factory._util.json_columns import load_json
from factory._util.yaml_input import load_yaml_file
from factory.inputs.prompt_sources import Prompt, prompt_fingerprint
from factory.records import Manifest

VERSIONS_FILE = "versions.json"


def dataset_home(output_dir: str | Path, name: str) -> Path:
    """The folder that holds a dataset's versions: `<output_dir>/<name>/`."""
    return Path(output_dir) / name


def _run_name(run_dir: Path) -> str | None:
    try:
        config = load_yaml_file(
            run_dir / "config.yaml", "run config"
        )  # any folder under output_dir is scanned
    except UserError:
        return None
    run = config.get("run") if isinstance(config, dict) else None
    return run.get("name") if isinstance(run, dict) else None


def _finished(run_dir: Path) -> bool:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("status") == "complete"


def earlier_runs(output_dir: str | Path, name: str, *, exclude: Path | None = None) -> list[Path]:
    """Finished run folders of dataset `name` (under `output_dir/name/` and `output_dir/`), oldest first."""
    root = Path(output_dir)
    candidates = [*root.glob("*/config.yaml"), *dataset_home(root, name).glob("*/config.yaml")]
    excluded = exclude.resolve() if exclude is not None else None
    runs = {c.parent.resolve() for c in candidates}
    found = [r for r in runs if r != excluded and _run_name(r) == name and _finished(r)]
    # Run ids start with the name and a UTC timestamp, so the folder name orders them in time.
    return sorted(found, key=lambda r: r.name)


def built_fingerprints(output_dir: str | Path, name: str, *, exclude: Path | None = None) -> set[str]:
    """Fingerprints of every usable prompt in the earlier finished builds of dataset `name`."""
    seen: set[str] = set()
    for run_dir in earlier_runs(output_dir, name, exclude=exclude):
        table = run_dir / "prompts.parquet"
        if not table.is_file():
            continue
        frame = pl.read_parquet(table)
        if "rejected_reason" in frame.columns:
            frame = frame.filter(pl.col("rejected_reason").is_null())
        for row in frame.select("prompt_id", "turns").to_dicts():
            turns = load_json(row["turns"])
            seen.add(prompt_fingerprint(Prompt(str(row["prompt_id"]), tuple(turns), "")))
    return seen


def select_new_prompts(prompts: list[Prompt], seen: set[str]) -> tuple[list[Prompt], int]:
    """The prompts whose fingerprint is not in `seen`, in order, and how many were skipped.

    Ids are not compared: a source that renumbers its rows still skips prompts already built,
    and an edited prompt under an old id counts as new.
    """
    fresh = [p for p in prompts if prompt_fingerprint(p) not in seen]
    return fresh, len(prompts) - len(fresh)


def read_versions(home: str | Path) -> list[dict[str, Any]]:
    """The versions recorded in `<home>/versions.json`, oldest first (empty when there are none)."""
    path = Path(home) / VERSIONS_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}); fix or remove it") from None
    versions = data.get("versions") if isinstance(data, dict) else None
    if not isinstance(versions, list):
        raise UserError(f"{path} has no 'versions' list; fix or remove it")
    return versions


def append_version(
    home: str | Path, run_dir: str | Path, manifest: Manifest, *, new_prompts: int, skipped: int | None
) -> dict[str, Any]:
    """Record a finished build as the next version in `<home>/versions.json`; returns the entry.

    A run already recorded (a resumed run finishing again) keeps its version number and entry
    position. One scheduled build runs at a time per dataset (a deployment's runs are sequential
    unless configured otherwise), so the read-append-write needs no lock.
    """
    home = Path(home)
    run_dir = Path(run_dir)
    versions = read_versions(home)
    run_id = manifest.get("run_id", run_dir.name)
    earlier = next((v for v in versions if v.get("run_id") == run_id), None)
    gate = manifest.get("gate") if isinstance(manifest.get("gate"), dict) else None
    try:
        location = str(run_dir.resolve().relative_to(home.resolve()))
    except ValueError:
        location = str(run_dir.resolve())
    entry = {
        "version": earlier["version"] if earlier else len(versions) + 1,
        "run_id": run_id,
        "path": location,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": manifest.get("status"),
        "new_prompts": new_prompts,
        "skipped_prompts": skipped
        if skipped is not None or earlier is None
        else earlier.get("skipped_prompts"),
        "counts": manifest.get("counts", {}),
        "gate_passed": gate.get("passed") if gate else None,
    }
    versions = [entry if v is earlier else v for v in versions] if earlier else [*versions, entry]
    atomic_write_json(home / VERSIONS_FILE, {"dataset": home.name, "versions": versions})
    return entry
