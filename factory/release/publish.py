"""Publish a build's dataset folder to the Hugging Face Hub: the only module that speaks to the Hub.

The run's `dataset/` folder is already the repository (card + `dpo/` and `kto/` parquet shards,
agreement figures, report; see docs/architecture.md), so publishing is two calls:
`HfApi.create_repo` and `HfApi.upload_folder`. Before either, the build must have passed its
quality gate (`manifest.json` `gate.passed`), unless forced, and the card's YAML must declare
configs whose data files exist (and, where a config names its files' sha256, still have it).

The token comes only from the environment (`HF_TOKEN`) or the saved Hugging Face login; it is
passed to nothing but `huggingface_hub`, and never printed, logged or written. The endpoint is
`HF_ENDPOINT` when set (a mirror, an enterprise Hub, or a test stand-in).

Example::

    result = publish_run("outputs/demo-20261104-030000-1a2b", "my-org/demo-prefs", private=True)
    print(result.url, len(result.files))
    publish_run(run_dir, "my-org/demo-prefs", dry_run=Path("/tmp/repo"))   # the exact folder, locally
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory._util.errors import UserError
from factory.run.folder import RunFolder

# Hidden files are never part of the repository (atomic-write temporaries start with a dot).
IGNORE_PATTERNS = [".*", "*/.*"]
# Stale shards of an earlier upload would be read by the card's `train-*` globs: replace them.
DELETE_PATTERNS = ["*.parquet"]


@dataclass
class PublishResult:
    """What was (or, for a dry run, would be) pushed."""

    repo_id: str
    files: list[str]
    url: str | None = None
    commit_url: str | None = None
    dry_run_dir: Path | None = None
    splits: dict[str, dict[str, int]] = field(default_factory=dict)


def _read_manifest(run: RunFolder) -> dict[str, Any]:
    try:
        manifest = json.loads(run.manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"run {run.root} has no manifest.json: finish it first (factory build --resume {run.root})"
        ) from None
    except json.JSONDecodeError:
        raise UserError(f"{run.manifest_path} is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{run.manifest_path} is not a JSON object")
    return manifest


def check_gate(manifest: dict[str, Any], *, force: bool) -> None:
    """Refuse a build whose quality gate did not pass (or did not run) unless `force`."""
    gate = manifest.get("gate")
    if isinstance(gate, dict) and gate.get("passed") is True:
        return
    if force:
        return
    if not isinstance(gate, dict) or gate.get("passed") is None:
        why = "the quality gate did not run for this build"
    else:
        failed = [str(c.get("name") or c.get("check")) for c in _checks(gate) if c.get("passed") is False]
        # An undecided gate (the kappa interval straddles the threshold) approves nothing either.
        outcome = "could not decide" if gate.get("verdict") == "undecided" else "failed"
        why = f"the quality gate {outcome}" + (f" ({', '.join(failed)})" if failed else "")
    raise UserError(f"refusing to publish: {why}; pass --force to publish anyway")


def _checks(gate: dict[str, Any]) -> list[dict[str, Any]]:
    checks = gate.get("checks")
    if isinstance(checks, dict):
        return [{"name": k, **v} for k, v in checks.items() if isinstance(v, dict)]
    return [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []


def repository_files(folder: Path) -> list[str]:
    """The files `upload_folder` sends from `folder`, relative posix paths, sorted (same filter as the client)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    paths = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=IGNORE_PATTERNS + DEFAULT_IGNORE_PATTERNS))


def check_card(folder: Path, files: list[str]) -> dict[str, Any]:
    """Validate the dataset card's YAML: configs with data files that exist, and a license. Returns it."""
    from huggingface_hub import DatasetCard

    readme = folder / "README.md"
    if not readme.is_file():
        raise UserError(f"dataset card missing: {readme}")
    try:
        card = DatasetCard.load(readme)
    except Exception as exc:
        raise UserError(f"dataset card {readme} does not parse: {' '.join(str(exc).split())[:200]}") from None
    data = card.data.to_dict()
    configs = data.get("configs")
    if not isinstance(configs, list) or not configs:
        raise UserError(f"dataset card {readme} declares no 'configs' in its YAML metadata")
    for config in configs:
        name = config.get("config_name", "default") if isinstance(config, dict) else "?"
        data_files = config.get("data_files") if isinstance(config, dict) else None
        if isinstance(data_files, str):
            data_files = [{"split": "train", "path": data_files}]
        if not isinstance(data_files, list) or not data_files:
            raise UserError(f"dataset card config '{name}' lists no data_files")
        for entry in data_files:
            patterns = entry.get("path") if isinstance(entry, dict) else entry
            for pattern in [patterns] if isinstance(patterns, str) else list(patterns or []):
                if not any(fnmatch.fnmatchcase(f, pattern) for f in files):
                    raise UserError(
                        f"dataset card config '{name}' names '{pattern}', which matches no file in {folder}"
                    )
        _check_fingerprint(folder, config, data_files)
    if not data.get("license"):
        raise UserError(f"dataset card {readme} has no license in its YAML metadata")
    return data


def _check_fingerprint(folder: Path, config: dict[str, Any], data_files: list[Any]) -> None:
    """A config whose card declares its files' sha256 (cards the factory writes) must match them: the
    fingerprint is what keeps `datasets`' cache key for this data apart from every other build's
    (`factory.dataset.card.data_fingerprint`), so a stale one would serve another version's rows."""
    from factory.dataset.card import data_fingerprint, declared_fingerprint

    declared = declared_fingerprint(config.get("description"))
    if declared is None:
        return
    patterns = {
        str(e.get("split", "train")): e["path"]
        for e in data_files
        if isinstance(e, dict) and isinstance(e.get("path"), str)
    }
    if len(patterns) == len(data_files) and data_fingerprint(folder, patterns) == declared:
        return
    raise UserError(
        f"dataset card config '{config.get('config_name')}' declares a sha256 its data files in "
        f"{folder} do not have: they changed after the card was written; rewrite the dataset "
        f"with `factory build --resume {folder.parent}`"
    )


def _dry_run(folder: Path, files: list[str], target: Path, configs: list[str]) -> dict[str, dict[str, int]]:
    """Copy the repository folder to `target` and check that `datasets` loads every config from it."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"--dry-run folder must be new or empty: {target}")
    if target.resolve().is_relative_to(folder.resolve()):
        raise UserError(f"--dry-run folder must be outside the dataset folder: {target}")
    for rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / rel, dest)
    import datasets

    splits: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="factory-publish-cache-") as cache:
        for name in configs:
            try:
                loaded = datasets.load_dataset(str(target), name, cache_dir=cache)
            except Exception as exc:
                raise UserError(
                    f"dry-run folder {target} does not load with datasets (config '{name}'): "
                    f"{' '.join(str(exc).split())[:200]}"
                ) from None
            splits[name] = {split: ds.num_rows for split, ds in loaded.items()}
    return splits


def _hub_error(step: str, exc: Exception, token: str | None) -> UserError:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        message = f"the Hub refused {step} (HTTP {status}): {str(exc).splitlines()[0]}"
    else:
        message = f"{step} failed: {type(exc).__name__}: {exc}"
    message = " ".join(message.split())[:300]
    if token:
        message = message.replace(token, "***")
    return UserError(message)


def publish_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: Path | None = None,
    force: bool = False,
    commit_message: str | None = None,
) -> PublishResult:
    """Push `run_dir/dataset/` to the dataset repository `repo_id` (or, with `dry_run`, write it locally).

    Raises `UserError` for a failed gate (unless `force`), a missing or invalid card, no token,
    or a Hub error.
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserError(f"--repo-id must look like ORG/NAME, got '{repo_id}'")
    run = RunFolder.open(run_dir)
    manifest = _read_manifest(run)
    check_gate(manifest, force=force)
    folder = run.root / "dataset"
    if not folder.is_dir():
        raise UserError(f"run {run.root} has no dataset/ folder to publish")
    files = repository_files(folder)
    card = check_card(folder, files)
    config_names = [str(c.get("config_name", "default")) for c in card["configs"]]
    if dry_run is not None:
        splits = _dry_run(folder, files, Path(dry_run), config_names)
        return PublishResult(repo_id=repo_id, files=files, dry_run_dir=Path(dry_run), splits=splits)

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.constants import is_offline_mode

    if is_offline_mode():
        raise UserError("HF_HUB_OFFLINE is set: unset it to publish (or use --dry-run DIR)")
    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
    # Token left to the client (it reads the same sources): it is never held in our own objects.
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    try:
        repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    except Exception as exc:
        raise _hub_error("create_repo", exc, token) from None
    try:
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            ignore_patterns=list(IGNORE_PATTERNS),
            delete_patterns=list(DELETE_PATTERNS),
            commit_message=commit_message or f"factory build {run.run_id}",
        )
    except Exception as exc:
        raise _hub_error("upload_folder", exc, token) from None
    return PublishResult(
        repo_id=repo_id, files=files, url=str(repo_url), commit_url=getattr(commit, "commit_url", None)
    )
