"""The gateway of a build process: the run's cache, the shared cache when configured, the cost ledger.

Both engines build theirs here (`runner.run_build`; `flows.build` once per process and flow run),
so a Dask worker writes the same ledger rows as the local engine.
"""

from __future__ import annotations

from pathlib import Path

from factory.config import BuildConfig
from factory.llm import Gateway
from factory.llm.cost_ledger import CostLedger
from factory.llm.rate_limit import LimitsHub
from factory.llm.shared_cache import shared_cache_dir
from factory.pipeline.cost_report import classifier


def build_gateway(
    config: BuildConfig, cache_path: Path, attempt: str, limits_hub: LimitsHub | None = None
) -> Gateway:
    """The gateway of one invocation (`attempt`: the plan's token) of a build, caching into `cache_path`.

    The budget counts the run's own cache (every earlier invocation's calls), never the shared cache,
    whose calls other builds paid for. `limits_hub`: rate limits shared by the build's processes (Dask).
    """
    return Gateway(
        config.models,
        config.gateway,
        cache_path=cache_path,
        budget=config.budget,
        seed=config.run.seed,
        budget_includes_cache=True,
        shared_cache_dir=shared_cache_dir(config.run.cache_dir),
        ledger=CostLedger(attempt=attempt, classify=classifier(config)),
        limits_hub=limits_hub,
    )


def with_shared_cache_dir(config: BuildConfig) -> BuildConfig:
    """`config` with its shared cache folder (`$FACTORY_CACHE_DIR`, else `run.cache_dir`) made absolute, as
    saved in a new run's `config.yaml`: its resumes use the same cache from any working directory."""
    folder = shared_cache_dir(config.run.cache_dir)
    if folder is None or config.run.cache_dir == str(folder):
        return config
    return config.model_copy(update={"run": config.run.model_copy(update={"cache_dir": str(folder)})})
