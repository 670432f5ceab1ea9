"""The build spec: a typed, frozen description of one dataset build, loaded from YAML.

Every field is documented; unknown keys are errors (a typo must not silently fall back to a
default). The resolved copy is written into each run folder as `config.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import UserError
from factory.llm.limits import Budget, GatewaySettings
from factory.llm.models import ModelSpec
from factory.yaml_input import describe_validation_error, load_yaml_file
from judges.settings import JudgeSetting


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class RunSettings(_Section):
    """Where and how the build runs."""

    name: str = Field("build", pattern=r"^[A-Za-z0-9_.-]+$", description="Dataset name; prefixes the run id.")
    output_dir: str = Field("outputs", description="Parent folder of run folders (outputs/<run_id>/).")
    seed: int = Field(0, description="Seed of every random choice in the build.")
    shard_size: int = Field(64, ge=1, description="Prompts per shard: the unit of progress, resume and Prefect tasks.")
    concurrency: int = Field(32, ge=1, description="Prompts in flight at once within a shard run.")
    salvage_rounds: int = Field(2, ge=0, le=10, description="Rounds, after the last shard, that retry the "
                                "prompts that failed only for transient reasons (rate limit, 5xx, timeout, "
                                "empty reply); the cache answers every call that had finished.")
    salvage_backoff_s: float = Field(5.0, ge=0.0, le=600.0, description="Wait before the first salvage round; "
                                     "doubles each round, so a provider's burst of errors can pass.")


class PromptSource(_Section):
    """Where prompts come from: a local file (jsonl, json, csv, parquet) or a public set by name."""

    path: str | None = Field(None, description="Local prompt file, relative to the config file's folder.")
    name: str | None = Field(None, description="Public prompt set: mt_bench, alpaca_eval, ifeval, gsm8k.")
    id_field: str | None = Field(None, description="Column holding a stable prompt id (default: id, row number).")
    text_field: str | None = Field(None, description="Column holding the prompt text (default: prompt/instruction/"
                                   "question; a list column of turns is read as a multi-turn prompt).")
    limit: int | None = Field(None, ge=1, description="Use only the first N prompts.")
    max_chars: int = Field(20000, ge=1, description="Prompts longer than this go to the failures table.")

    @model_validator(mode="after")
    def _one_source(self) -> "PromptSource":
        if (self.path is None) == (self.name is None):
            raise ValueError("prompts: give exactly one of 'path' or 'name'")
        return self


class SingleAgentWorkflow(_Section):
    """Each generator role answers each prompt `samples` times."""

    kind: Literal["single"] = "single"
    name: str = Field("single", description="Workflow name, recorded on every candidate.")
    generators: tuple[str, ...] = Field(("generator",), min_length=1, description="Generator model roles.")
    samples: int = Field(1, ge=1, le=16, description="Answers per generator and prompt.")


class FeedbackLoopWorkflow(_Section):
    """The Fellowship paper's generator-reviewer loop: answer, review, revise."""

    kind: Literal["feedback_loop"] = "feedback_loop"
    name: str = Field("feedback_loop", description="Workflow name, recorded on every candidate.")
    generator: str = Field("generator", description="Generator model role.")
    reviewers: tuple[str, ...] = Field(("reviewer",), min_length=1, max_length=2,
                                       description="One reviewer, or two whose feedback is combined.")
    n_responses: int = Field(3, ge=1, le=10, description="Responses in all (3 = answer + 2 revisions).")
    stop_score: float | None = Field(None, ge=0, le=10, description="Stop early once the review score reaches this.")
    review_last: bool = Field(False, description="Also review the final response (one more reviewer call each; "
                              "the paper reviews only responses that get revised).")


Workflow = Annotated[SingleAgentWorkflow | FeedbackLoopWorkflow, Field(discriminator="kind")]


class GenerationSettings(_Section):
    """Which workflows produce candidates."""

    workflows: tuple[Workflow, ...] = Field(
        (SingleAgentWorkflow(samples=2),), min_length=1, description="Candidate-producing workflows.")


class JudgingSettings(_Section):
    """The judge setting that picks the preferred candidate."""

    setting: JudgeSetting = Field(default_factory=JudgeSetting, description="Judge, jury or debate.")
    select: Literal["knockout", "round_robin"] = Field(
        "knockout", description="knockout (paper: r1 vs r2, winner vs r3) or round_robin (every pair once; "
        "the best answer has the most wins, a tie counting half).")


class PairSettings(_Section):
    """How preference pairs are cut from judgments (see factory/pairs.py)."""

    rule: Literal["paper", "best_vs_worst", "all_pairs"] = Field(
        "paper", description="paper: best accepted, every other rejected; best_vs_worst; all_pairs by score.")
    min_margin: float = Field(0.0, ge=0, description="Minimum score margin (judge points; scored protocols) "
                              "to keep a pair.")
    keep_ties: bool = Field(False, description="Keep items the judge called a tie (as weak pairs).")
    keep_inconsistent: bool = Field(False, description="Keep items whose verdict flipped under order swap.")
    keep_injection_flagged: bool = Field(False, description="Keep pairs whose chosen answer contains judge-format "
                                         "markers (a fake '### Answer:' or score line): such a win may be an "
                                         "injection that fooled the judge, so by default the pair is dropped.")
    target_pairs: int | None = Field(None, ge=1, description="Stop once this many judged pairs are accepted: "
                                     "shards run in order and no new shard starts after the target is reached "
                                     "(shards in flight finish, so it may overshoot a little).")


class RationaleSettings(_Section):
    """Rationales (arXiv 2407.14477): why chosen beats rejected."""

    enabled: bool = Field(True, description="Write a rationale for every pair.")
    role: str = Field("rationale_writer", description="Model role of the rationale writer.")
    verify: bool = Field(False, description="A second agent checks the rationale argues for the chosen answer.")
    verifier_role: str | None = Field(None, description="Model role of the verifier (default: the judge's).")
    max_rewrites: int = Field(1, ge=0, le=5, description="Rewrites of a rationale the verifier rejects; "
                              "after that the pair goes to the failures table (every pair keeps a rationale).")


class VariantSettings(_Section):
    """MAPL prompt variants (arXiv 2505.12845) with code-verified labels."""

    enabled: bool = Field(True, description="Add MAPL rows.")
    intra: bool = Field(True, description="Intra-sample rows: one response, a satisfied and a violated prompt.")
    inter: bool = Field(True, description="Inter-sample pairs: constraints chosen satisfies and rejected violates.")
    constraints: int = Field(2, ge=1, le=6, description="Constraints added per variant prompt.")
    fresh: bool = Field(False, description="Also answer a multi-instruction prompt per prompt afresh and pair "
                        "the answers by the checkers alone (costs `fresh_samples` calls per prompt).")
    fresh_role: str = Field("generator", description="Model role that writes the fresh answers.")
    fresh_samples: int = Field(4, ge=2, le=16, description="Fresh answers per multi-instruction prompt.")


class DatasetSettings(_Section):
    """The dataset written at the end of the build."""

    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of prompts (not rows) in the test split.")
    near_duplicate_threshold: float = Field(0.9, gt=0.0, le=1.0,
                                            description="Jaccard similarity of word shingles above which "
                                            "two pairs count as near duplicates.")
    license: str = Field("apache-2.0", description="License written into the dataset card.")


class GateSettings(_Section):
    """Quality gate checked before the data may reach a trainer or the Hub (see `factory/gate.py`).

    A threshold left at None is not checked; a check that cannot be measured fails.
    """

    enabled: bool = Field(True, description="Run the gate (false: nothing is checked and the build is approved).")
    human_set: str | None = Field("pandalm", description="Human-labelled set (name or path) the build's judge "
                                  "setting is checked on; None skips the kappa check.")
    human_set_limit: int = Field(50, ge=1, description="Items of the human set used for the check (first N).")
    min_kappa: float = Field(0.4, ge=-1, le=1, description="Minimum 3-class Cohen's kappa (ties kept) of the "
                             "build's judge setting vs the human labels.")
    min_inter_juror_kappa: float | None = Field(None, ge=-1, le=1,
                                                description="Minimum mean pairwise Cohen's kappa between jurors "
                                                "on the build's own judgments (needs a jury setting).")
    max_flip_rate: float | None = Field(None, ge=0, le=1,
                                        description="Maximum share of items whose winner reverses when the answer "
                                        "order is swapped (from the build's order-both judgments, else measured "
                                        "on the human set).")


class BuildConfig(_Section):
    """One dataset build. See `examples/demo.yaml`."""

    run: RunSettings = Field(default_factory=RunSettings, description="Run folder, seed, sharding.")
    models: dict[str, ModelSpec] = Field(description="Model roles: role name -> model spec.")
    gateway: GatewaySettings = Field(default_factory=GatewaySettings, description="Concurrency, retries.")
    budget: Budget = Field(default_factory=Budget, description="Caps on calls, tokens and cost.")
    prompts: PromptSource = Field(description="Prompt source.")
    generation: GenerationSettings = Field(default_factory=GenerationSettings, description="Workflows.")
    judging: JudgingSettings = Field(default_factory=JudgingSettings, description="Judge setting.")
    pairs: PairSettings = Field(default_factory=PairSettings, description="Pair selection.")
    rationales: RationaleSettings = Field(default_factory=RationaleSettings, description="Rationale writer.")
    variants: VariantSettings = Field(default_factory=VariantSettings, description="MAPL variants.")
    dataset: DatasetSettings = Field(default_factory=DatasetSettings, description="Output dataset.")
    gate: GateSettings = Field(default_factory=GateSettings, description="Quality gate.")

    @model_validator(mode="after")
    def _roles_exist(self) -> "BuildConfig":
        used: list[tuple[str, str]] = []
        for i, wf in enumerate(self.generation.workflows):
            where = f"generation.workflows[{i}]"
            if isinstance(wf, SingleAgentWorkflow):
                used += [(f"{where}.generators", r) for r in wf.generators]
            else:
                used += [(f"{where}.generator", wf.generator)] + [(f"{where}.reviewers", r) for r in wf.reviewers]
        used += _setting_roles(self.judging.setting, "judging.setting")
        if self.rationales.enabled:
            used.append(("rationales.role", self.rationales.role))
            if self.rationales.verify:
                # Without a verifier_role the judge's first model verifies (see pipeline/stages.py).
                verifier = self.rationales.verifier_role or self.judging.setting.models[0]
                where = "rationales.verifier_role" if self.rationales.verifier_role else \
                    "rationales.verifier_role (default: judging.setting.models[0])"
                used.append((where, verifier))
        if self.variants.enabled and self.variants.fresh:
            used.append(("variants.fresh_role", self.variants.fresh_role))
        for where, role in used:
            if role not in self.models:
                known = ", ".join(sorted(self.models)) or "none"
                raise ValueError(f"unknown model role '{role}' in {where} (known roles: {known})")
        names = [wf.name for wf in self.generation.workflows]
        if len(set(names)) != len(names):
            raise ValueError(f"workflow names must be unique, got {names}")
        return self


def _setting_roles(setting: JudgeSetting, where: str) -> list[tuple[str, str]]:
    """(where, role) of every model role a judge setting calls, its jurors' (at any depth) included."""
    if setting.jurors is None:
        return [(f"{where}.models", role) for role in setting.models]
    used: list[tuple[str, str]] = []  # a heterogeneous jury calls its jurors' models, not `models`
    for i, juror in enumerate(setting.jurors):
        used += _setting_roles(juror, f"{where}.jurors[{i}]")
    return used


def parse_config(data: Any, source: str = "<config>") -> BuildConfig:
    """Validate a mapping into a `BuildConfig`, raising a one-line `UserError` on any problem."""
    if not isinstance(data, dict):
        raise UserError(f"invalid config {source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, f"invalid config {source}")) from None


def load_config(path: str | Path) -> BuildConfig:
    """Read a YAML build spec. Relative prompt paths are resolved against the config's folder."""
    path = Path(path)
    data = load_yaml_file(path, "config file")
    if data is None:
        raise UserError(f"config file is empty: {path}")
    if isinstance(data, dict) and isinstance(data.get("prompts"), dict) and data["prompts"].get("path"):
        prompt_path = Path(data["prompts"]["path"])
        if not prompt_path.is_absolute():
            data["prompts"] = {**data["prompts"], "path": str((path.parent / prompt_path).resolve())}
    _resolve_human_set_path(data, path.parent)
    return parse_config(data, str(path))


def _resolve_human_set_path(data: Any, folder: Path) -> None:
    """A `gate.human_set` file named relative to the config is resolved against the config's folder
    (as prompt paths are), so the run folder's saved config finds it from anywhere."""
    gate = data.get("gate") if isinstance(data, dict) else None
    value = gate.get("human_set") if isinstance(gate, dict) else None
    if not isinstance(value, str) or value.startswith("hf://") or Path(value).is_absolute():
        return
    from judges.public_sets import known_set_names

    if value.strip().lower() not in known_set_names() and (folder / value).exists():
        data["gate"] = {**gate, "human_set": str((folder / value).resolve())}


def dump_config(config: BuildConfig) -> str:
    """The resolved config as YAML (every default written out), for the run folder."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
