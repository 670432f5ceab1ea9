"""The publish flow: push a build's dataset folder to the Hugging Face Hub (`factory.release.publish`).

Refuses a build whose quality gate failed unless `force`; the token comes from the worker's
environment (`HF_TOKEN`) or its Hugging Face login, never from flow parameters (they are stored
in Prefect's database and shown in its UI).

Example::

    publish_flow(run_dir="outputs/demo-20261104-030000-1a2b", repo_id="my-org/demo-prefs", private=True)
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE

from factory.release.publish import publish_run


@task(name="publish", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def push(run_dir: str, repo_id: str, private: bool, force: bool) -> dict[str, Any]:
    """create_repo + upload_folder; a retry re-sends only files the Hub does not have yet."""
    result = publish_run(run_dir, repo_id, private=private, force=force)
    return {
        "repo_id": result.repo_id,
        "url": result.url,
        "commit_url": result.commit_url,
        "files": result.files,
    }


@flow(name="factory-publish", validate_parameters=True)
def publish_flow(run_dir: str, repo_id: str, private: bool = False, force: bool = False) -> dict[str, Any]:
    """Publish `run_dir/dataset/` as the dataset repository `repo_id`; returns its URL and files."""
    result = push(run_dir, repo_id, private, force)
    if result["url"]:
        create_link_artifact(
            link=result["url"],
            link_text=f"{repo_id} on the Hub",
            key="published-dataset",
            description=f"{len(result['files'])} files from {run_dir}",
        )
    return result
