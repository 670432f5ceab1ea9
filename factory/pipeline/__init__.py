"""The build pipeline: stages over shards of prompts, writing tables into the run folder."""

from factory.pipeline.runner import BuildResult, run_build

__all__ = ["BuildResult", "run_build"]
