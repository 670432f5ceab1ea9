"""The build pipeline: stages over shards of prompts, writing tables into the run folder.

`run_build` is imported on first use: the pipeline's light modules (`inputs`, `outcome`) are read
by the CLI's pre-flight checks, which must not pay for importing the gateway (litellm) first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from factory.pipeline.runner import BuildResult, run_build

__all__ = ["BuildResult", "run_build"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from factory.pipeline import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'factory.pipeline' has no attribute {name!r}")
