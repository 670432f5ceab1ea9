"""The calibration config: which human set, which judge models and which settings to sweep, read from YAML.

`CalibrationConfig` is what `factory calibrate CONFIG` (and the calibration flow) runs;
`load_calibration_config` reads it from a file (relative paths against the file's folder) and
`parse_calibration_config` from a mapping, each problem a one-line `UserError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from factory._util.yaml_input import load_yaml_file, validate_model
from factory.llm import Budget, GatewaySettings, ModelSpec
from factory.llm.models import checked_api_base
from judges.engine.settings import Order, Protocol
from judges.humans.human_sets import ColumnMapping


class CalibrationConfig(BaseModel):
    """What `factory calibrate CONFIG` runs. Every list multiplies the settings tried.

    Example YAML::

        human_set: pandalm
        human_set_limit: 200
        models: [openai/gpt-4o-mini, {model: openai/llama3, api_base: "http://localhost:8000/v1"}]
        protocols: [combined, direct]
        orders: [fixed, both]
        jury_subsets: true
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    human_set: str = Field(
        description="Human-labelled set: a public name (pandalm, llmbar-natural, ...) or a path."
    )
    human_set_limit: int | None = Field(
        None,
        ge=1,
        description="Use N items of the set: a seeded sample stratified by label and spread over prompts.",
    )
    data_dir: str | None = Field(
        None, description="Folder holding the public sets (else FACTORY_DATA_DIR, cache)."
    )
    mapping: ColumnMapping | None = Field(None, description="Column mapping for a foreign table layout.")
    seed: int = Field(
        0, description="Seed of the sample, the random order, answer shuffles and the bootstrap."
    )
    min_kappa: float = Field(
        0.4,
        ge=-1,
        le=1,
        description="Threshold each setting's kappa interval is read against, as the quality gate's "
        "min_kappa: pass, fail or undecided (with the n that would decide).",
    )
    models: tuple[ModelSpec, ...] = Field(
        (), description="Judge models: litellm model strings or full model specs."
    )
    api_base: str | None = Field(None, description="Default endpoint for models given as plain strings.")
    protocols: tuple[Protocol, ...] = Field(
        ("combined",), min_length=1, description="Judge prompting strategies."
    )
    scales: tuple[Literal[5, 10, 100], ...] = Field(
        (10,), min_length=1, description="Scales of combined scoring."
    )
    orders: tuple[Order, ...] = Field(
        ("fixed",), min_length=1, description="Answer orders: fixed, random, both."
    )
    structured: bool = Field(False, description="Ask judges for JSON-schema output instead of '###' lines.")
    jury_subsets: bool = Field(False, description="Add a plurality jury for every subset of >= 2 models.")
    juries: tuple[tuple[str, ...], ...] = Field((), description="Explicit juries (lists of model strings).")
    debate: bool = Field(False, description="Add a ChatEval-style debate for every model.")
    debate_rounds: int = Field(2, ge=1, le=10, description="Debate rounds.")
    judgments: str | None = Field(
        None, description="Score this judgments file (parquet/jsonl) instead of calling models."
    )
    output_dir: str = Field(
        "outputs", description="Parent of the run folder; holds the shared request cache."
    )
    concurrency: int = Field(16, ge=1, description="Items judged at once per setting.")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples behind each 95% interval (0: none).")
    gateway: GatewaySettings = Field(default_factory=GatewaySettings, description="Retries and concurrency.")
    budget: Budget = Field(default_factory=Budget, description="Caps on calls, tokens and cost.")

    @field_validator("models", mode="before")
    @classmethod
    def _specs(cls, value: Any) -> Any:
        # A plain string is a litellm model string; judges default to greedy decoding so that a
        # rerun reproduces a verdict (and the cache can answer it).
        if isinstance(value, list | tuple):
            return [{"model": v, "temperature": 0.0} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("api_base")
    @classmethod
    def _no_secret_in_url(cls, url: str | None) -> str | None:
        return checked_api_base(url)

    @model_validator(mode="after")
    def _check(self) -> CalibrationConfig:
        if self.api_base:
            specs = tuple(
                s if s.api_base else s.model_copy(update={"api_base": self.api_base}) for s in self.models
            )
            object.__setattr__(self, "models", specs)
        names = [s.model for s in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models must be distinct model strings, got {names}")
        if not self.models and self.judgments is None:
            raise ValueError("give judge models (models: [...]) or a judgments file to score")
        for jury in self.juries:
            unknown = [m for m in jury if m not in names]
            if unknown or len(jury) < 2:
                raise ValueError(f"jury {list(jury)} needs >= 2 of the listed models (unknown: {unknown})")
        return self


def load_calibration_config(path: str | Path) -> CalibrationConfig:
    """Read a calibration YAML file; any problem is a one-line `UserError`."""
    path = Path(path)
    data = load_yaml_file(path, "calibration config")
    if isinstance(data, dict):
        for key in ("human_set", "judgments"):  # relative paths are relative to the config file
            value = data.get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and (path.parent / value).exists():
                data[key] = str((path.parent / value).resolve())
    return parse_calibration_config(data, str(path))


def parse_calibration_config(data: Any, source: str = "<calibration>") -> CalibrationConfig:
    """Validate a mapping into a `CalibrationConfig` (one-line `UserError` on the first problem)."""
    return validate_model(CalibrationConfig, data, f"invalid calibration config {source}")
