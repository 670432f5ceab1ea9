"""The run folder and what it owns: layout and shard files, its lock and integrity marker, the
recorded prompts of a run, merged tables, incremental versions and remote output locations.

Modules:
- `folder`: the run folder `outputs/<run_id>/`: paths and shard files (written atomically, `factory._util.atomic_files`).
- `incremental`: incremental builds: new prompts only, one run folder per version, a `versions.json` index.
- `integrity`: whether a folder may be resumed: it must be a run folder this factory wrote, in a shape it can use.
- `lock`: one process at a time per run folder.
- `output_location`: where a scheduled build's versions go, decided when the deployment is registered.
- `recorded_inputs`: a run's prompts: read from the prompt source once, when the run starts, and recorded in `prompts.parquet`;
- `remote_output`: a build whose `run.output_dir` is a storage URL: built locally, then copied to the URL.
- `tables`: the run's tables (`candidates`, `judgments`, `pairs`, `mapl_intra`, `failures`), merged from its shard files and streamed to disk.
"""

__all__ = [
    "folder",
    "incremental",
    "integrity",
    "lock",
    "output_location",
    "recorded_inputs",
    "remote_output",
    "tables",
]
