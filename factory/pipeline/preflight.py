"""Checks and adjustments before a build starts, so that mistakes surface as one-line errors at once:
before a run folder exists, before litellm is imported, before any model is called.

* `load_build_spec`: the config of a new build, or of the run folder being resumed;
* `with_budget`: budget caps overridden from the command line (how a stopped build resumes with more);
* `build_prompts`: the prompts, read once up front (a bad prompt file fails here; a resume reads the
  run's recorded ones);
* `check_human_set`: the quality gate's human-labelled set can be loaded;
* `check_api_keys`: every `api_key_env` a used model names is set;
* `check_shared_cache`: the shared request cache folder (`run.cache_dir`, `$FACTORY_CACHE_DIR`) is usable.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from factory._util.atomic_files import atomic_write_text
from factory._util.errors import UserError
from factory.config import BuildConfig, dump_config, load_config
from factory.inputs.prompt_sources import Prompt, RejectedPrompt
from factory.llm.shared_cache import SharedCache, shared_cache_dir
from factory.run.folder import RunFolder
from factory.run.output_location import refuse_storage_url
from factory.run.recorded_inputs import load_build_prompts, recorded_prompts


def load_build_spec(
    config_path: Path | None, resume: Path | None, output_dir: Path | None = None
) -> BuildConfig:
    """The config of a new build (CONFIG, optionally with another output folder) or of a run to resume."""
    if (config_path is None) == (resume is None):
        raise UserError("give a CONFIG file or --resume RUN_DIR (not both)")
    if resume is not None:
        if output_dir is not None:
            raise UserError("--output-dir is for new builds; a resumed build stays in its run folder")
        return load_config(RunFolder.open_for_resume(resume).config_path)
    assert config_path is not None
    spec = load_config(config_path)
    if output_dir is not None:
        spec = spec.model_copy(update={"run": spec.run.model_copy(update={"output_dir": str(output_dir)})})
    refuse_storage_url(spec.run.output_dir)
    return spec


def with_budget(
    config: BuildConfig,
    *,
    max_calls: int | None = None,
    max_tokens: int | None = None,
    max_cost_usd: float | None = None,
) -> BuildConfig:
    """`config` with the given budget caps replaced (None keeps the configured cap)."""
    caps = {
        k: v
        for k, v in (("max_calls", max_calls), ("max_tokens", max_tokens), ("max_cost_usd", max_cost_usd))
        if v is not None
    }
    for name, value in caps.items():
        if isinstance(value, float) and not math.isfinite(value):
            # nan compares false with everything: as a cap it would mean "no cap", silently.
            raise UserError(f"budget {name} must be a finite number, got {value}")
        if value < 0:
            raise UserError(f"budget {name} must be >= 0, got {value}")
    if not caps:
        return config
    return config.model_copy(update={"budget": config.budget.model_copy(update=caps)})


def save_resume_config(run_dir: Path, config: BuildConfig) -> None:
    """Write `config` back into a run folder, so this and later resumes use the raised caps."""
    atomic_write_text(RunFolder.open(run_dir).config_path, dump_config(config))


def build_prompts(
    config: BuildConfig, resume: Path | None = None
) -> tuple[list[Prompt], list[RejectedPrompt]]:
    """The prompts the build will run: a resumed run's recorded ones (the run folder owns its inputs,
    see `factory.run.recorded_inputs`), else the prompt source's; a source with no usable prompt is an error."""
    if resume is not None:
        recorded = recorded_prompts(RunFolder.open(resume))
        if recorded is not None:
            return recorded
    return load_build_prompts(config)


def check_human_set(config: BuildConfig) -> None:
    """The gate's human set is loaded now, not after every generation and judge call has been paid
    for: a misspelt name, a missing or malformed file, or a public set that cannot be fetched fails here."""
    gate = config.gate
    if not gate.enabled or gate.human_set is None:
        return
    from judges.humans.human_sets import load_human_set

    try:
        load_human_set(gate.human_set, limit=gate.human_set_limit, seed=config.run.seed)
    except UserError as exc:
        raise UserError(
            f"gate.human_set: {exc} (or set gate.human_set: null to skip the kappa check)"
        ) from None


def check_api_keys(config: BuildConfig) -> None:
    """Every model role that names an `api_key_env` must find that variable set (the key is never read here)."""
    for role, spec in config.models.items():
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            raise UserError(f"models.{role}.api_key_env: environment variable {spec.api_key_env} is not set")


def check_shared_cache(config: BuildConfig) -> None:
    """The shared request cache opens (created if new): a folder that is a file, or a damaged cache
    file, fails here, not when the first call comes back."""
    folder = shared_cache_dir(config.run.cache_dir)
    if folder is not None:
        SharedCache(folder).close()
