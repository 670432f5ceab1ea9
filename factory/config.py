"""The build spec: a typed, frozen description of one dataset build, loaded from YAML.

Every field is documented; unknown keys are errors (a typo must not silently fall back to a
default). The resolved copy is written into each run folder as `config.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from factory._util.errors import UserError
from factory._util.yaml_input import dump_model_yaml, load_yaml_file, validate_model
from factory.inputs.row_filter import parse_where
from factory.llm.limits import Budget, GatewaySettings
from factory.llm.models import ModelSpec
from judges.engine.settings import JudgeSetting


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class RunSettings(_Section):
    """Where and how the build runs."""

    name: str = Field("build", pattern=r"^[A-Za-z0-9_.-]+$", description="Dataset name; prefixes the run id.")
    output_dir: str = Field("outputs", description="Parent folder of run folders (outputs/<run_id>/).")
    seed: int = Field(0, description="Seed of every random choice in the build.")
    shard_size: int = Field(
        64, ge=1, description="Prompts per shard: the unit of progress, resume and Prefect tasks."
    )
    concurrency: int = Field(32, ge=1, description="Prompts in flight at once within a shard run.")
    salvage_rounds: int = Field(
        2,
        ge=0,
        le=10,
        description="Rounds, after the last shard, that retry the "
        "prompts that failed only for transient reasons (rate limit, 5xx, timeout, "
        "empty reply); the cache answers every call that had finished.",
    )
    salvage_backoff_s: float = Field(
        5.0,
        ge=0.0,
        le=600.0,
        description="Wait before the first salvage round; "
        "doubles each round, so a provider's burst of errors can pass.",
    )
    cache_dir: str | None = Field(
        None,
        min_length=1,
        description="Folder of a request cache shared between "
        "builds (opt-in; $FACTORY_CACHE_DIR overrides it): a call any build over it "
        "already paid for is answered from it, whatever else changed (pair rules, "
        "thresholds, prompt subset). On a local filesystem; see docs/cost.md.",
    )


HUB_PREFIX = "hf://"


class HubPrompts(_Section):
    """A Hugging Face dataset as prompts: `datasets.load_dataset(dataset, name=config, split=split,
    revision=revision)`, the same call for the Hub and for a local folder in Hub layout."""

    dataset: str = Field(
        min_length=1,
        description="hf://ORG/NAME (or ORG/NAME) on the Hub, or a local folder in "
        "Hub layout (a README.md card with `configs:` and its data files), relative to the config "
        "file's folder.",
    )
    config: str | None = Field(
        None, description="Dataset config (subset); default: the dataset's default one."
    )
    split: str = Field("train", min_length=1, description="Split to read.")
    revision: str | None = Field(
        None, description="Hub branch, tag or commit; pin a commit for a reproducible build."
    )
    streaming: bool = Field(
        False,
        description="Stream rows instead of downloading the split first: with "
        "`limit` and `where`, only the rows up to the limit are read.",
    )


class PromptSource(_Section):
    """Where prompts come from: a local file (jsonl, json, csv, parquet, txt), a public set by name, or a
    Hugging Face dataset (`hf`, or `path: hf://ORG/NAME`). See docs/prompt-sources.md."""

    path: str | None = Field(
        None,
        description="Local prompt file, relative to the config file's folder; "
        "`hf://ORG/NAME` is short for `hf: {dataset: hf://ORG/NAME}`.",
    )
    name: str | None = Field(None, description="Public prompt set: mt_bench, alpaca_eval, ifeval, gsm8k.")
    hf: HubPrompts | None = Field(
        None, description="Hugging Face dataset (a string is short for `{dataset: ...}`)."
    )
    id_field: str | None = Field(
        None, description="Column holding a stable prompt id (default: id, row number)."
    )
    text_field: str | None = Field(
        None,
        description="Column holding the prompt: a string, a list of strings (the "
        "user turns) or a chat `messages` list (default: prompt/instruction/question/"
        "turns/text/input/messages/conversations).",
    )
    where: dict[str, Any] | None = Field(
        None,
        description="Keep only rows where every column matches: "
        "`{col: value}`, `{col: [v1, v2]}` (one of), `{col: {ne|in|not_in: ...}}`.",
    )
    limit: int | None = Field(None, ge=1, description="Use only the first N prompts (after `where`).")
    max_chars: int = Field(20000, ge=1, description="Prompts longer than this go to the failures table.")
    max_file_bytes: int | None = Field(
        None,
        ge=1,
        description="Refuse a prompt file larger than this (default: $FACTORY_MAX_INPUT_BYTES, else 1 GiB).",
    )

    @model_validator(mode="before")
    @classmethod
    def _hub_shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("path"), str) and data["path"].startswith(HUB_PREFIX):
            if data.get("hf") is not None:
                raise ValueError("give 'path: hf://...' or 'hf', not both")
            data = {**{k: v for k, v in data.items() if k != "path"}, "hf": {"dataset": data["path"]}}
        if isinstance(data.get("hf"), str):
            data = {**data, "hf": {"dataset": data["hf"]}}
        return data

    @field_validator("where")
    @classmethod
    def _where_parses(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        parse_where(value)  # raises ValueError naming the column
        return value

    @model_validator(mode="after")
    def _one_source(self) -> PromptSource:
        if sum(x is not None for x in (self.path, self.name, self.hf)) != 1:
            raise ValueError("give exactly one of 'path', 'name' or 'hf'")
        return self

    def describe(self) -> str:
        """The source in words, for the dataset card (no local folder, which may name a home directory)."""
        if self.name:
            return f"the public prompt set `{self.name}`"
        if self.hf is not None:
            dataset = self.hf.dataset.removeprefix(HUB_PREFIX)
            on_hub = self.hf.dataset.startswith(HUB_PREFIX) or not Path(dataset).is_absolute()
            what = (
                f"the Hugging Face dataset `{dataset}`"
                if on_hub
                else f"the local dataset `{Path(dataset).name}`"
            )
            details = [f"config `{self.hf.config}`"] if self.hf.config else []
            details += [f"split `{self.hf.split}`"] + (
                [f"revision `{self.hf.revision}`"] if self.hf.revision else []
            )
            return f"{what} ({', '.join(details)})"
        return f"the prompt file `{Path(self.path or '').name}`"


def resolve_prompt_paths(prompts: Any, base: Path) -> Any:
    """The `prompts` mapping with local paths made absolute against the config's folder.

    A Hub name (`hf://ORG/NAME`, or `ORG/NAME` where no such folder exists) is left as written.
    """
    if not isinstance(prompts, dict):
        return prompts
    path = prompts.get("path")
    if isinstance(path, str) and path and not path.startswith(HUB_PREFIX) and not Path(path).is_absolute():
        prompts = {**prompts, "path": str((base / path).resolve())}
    hub = prompts.get("hf")
    dataset = hub.get("dataset") if isinstance(hub, dict) else hub
    if isinstance(dataset, str) and dataset and not dataset.startswith(HUB_PREFIX):
        local = Path(dataset).expanduser()
        if not local.is_absolute() and (dataset.startswith((".", "~")) or (base / local).is_dir()):
            local = (base / local).resolve()
        if local.is_absolute():
            prompts = {
                **prompts,
                "hf": {**hub, "dataset": str(local)} if isinstance(hub, dict) else str(local),
            }
    return prompts


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
    reviewers: tuple[str, ...] = Field(
        ("reviewer",),
        min_length=1,
        max_length=2,
        description="One reviewer, or two whose feedback is combined.",
    )
    n_responses: int = Field(3, ge=1, le=10, description="Responses in all (3 = answer + 2 revisions).")
    stop_score: float | None = Field(
        None, ge=0, le=10, description="Stop early once the review score reaches this."
    )
    review_last: bool = Field(
        False,
        description="Also review the final response (one more reviewer call each; "
        "the paper reviews only responses that get revised).",
    )


Workflow = Annotated[SingleAgentWorkflow | FeedbackLoopWorkflow, Field(discriminator="kind")]


class GenerationSettings(_Section):
    """Which workflows produce candidates."""

    workflows: tuple[Workflow, ...] = Field(
        (SingleAgentWorkflow(samples=2),), min_length=1, description="Candidate-producing workflows."
    )


class RankingSettings(_Section):
    """N-way judging (`select: listwise` or `bradley_terry`): strengths, and the pairs cut from them."""

    calls: int = Field(
        3,
        ge=1,
        le=16,
        description="listwise: ranking calls per prompt and judge model, each "
        "showing the candidates in another order (a seeded shuffle, then rotations of it).",
    )
    min_gap: float = Field(
        0.5,
        ge=0,
        description="Smallest Bradley-Terry log-strength gap a pair needs "
        "(1.0 = odds of e to 1 that the chosen answer is preferred).",
    )
    max_pairs: int = Field(3, ge=1, le=28, description="Most pairs cut per prompt, widest gaps first.")
    prior: float = Field(
        0.1,
        gt=0,
        le=5,
        description="Virtual wins and losses per candidate against a "
        "reference answer: keeps a clean sweep's strength finite.",
    )


class JudgingSettings(_Section):
    """The judge setting that picks the preferred candidate."""

    setting: JudgeSetting = Field(default_factory=JudgeSetting, description="Judge, jury or debate.")
    select: Literal["knockout", "round_robin", "listwise", "bradley_terry"] = Field(
        "knockout",
        description="knockout (paper: r1 vs r2, winner vs r3), round_robin (every pair once; "
        "the best answer has the most wins, a tie counting half), listwise (each call ranks all candidates, "
        "`ranking.calls` orders) or bradley_terry (the round robin's comparisons); the last two fit "
        "Bradley-Terry strengths and cut pairs by strength gap (see `ranking`).",
    )
    ranking: RankingSettings = Field(
        default_factory=RankingSettings,
        description="N-way judging: listwise calls, strength gaps, pairs per prompt.",
    )

    @model_validator(mode="after")
    def _listwise_judge(self) -> JudgingSettings:
        if self.select == "listwise" and self.setting.kind == "debate":
            raise ValueError("select: listwise ranks with judge models: use kind judge or jury, not debate")
        return self


class PairSettings(_Section):
    """How preference pairs are cut from judgments (see factory/pipeline/stages/pairs.py)."""

    rule: Literal["paper", "best_vs_worst", "all_pairs"] = Field(
        "paper", description="paper: best accepted, every other rejected; best_vs_worst; all_pairs by score."
    )
    min_margin: float = Field(
        0.0, ge=0, description="Minimum score margin (judge points; scored protocols) to keep a pair."
    )
    keep_ties: bool = Field(False, description="Keep items the judge called a tie (as weak pairs).")
    keep_inconsistent: bool = Field(False, description="Keep items whose verdict flipped under order swap.")
    keep_injection_flagged: bool = Field(
        False,
        description="Keep pairs whose chosen answer contains judge-format "
        "markers (a fake '### Answer:' or score line): such a win may be an "
        "injection that fooled the judge, so by default the pair is dropped.",
    )
    max_longer_chosen_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Length balance: at most this share of a prompt's pairs (hence of the "
        "dataset's) may have a chosen answer longer than the rejected one; the longer-chosen pairs with the "
        "smallest margins are dropped (reason length_balance). None: no limit.",
    )
    target_pairs: int | None = Field(
        None,
        ge=1,
        description="Stop once this many judged pairs are accepted: "
        "shards run in order and no new shard starts after the target is reached "
        "(shards in flight finish, so it may overshoot a little).",
    )


class RationaleSettings(_Section):
    """Rationales (arXiv 2407.14477): why chosen beats rejected."""

    enabled: bool = Field(True, description="Write a rationale for every pair.")
    role: str = Field("rationale_writer", description="Model role of the rationale writer.")
    verify: bool = Field(
        False, description="A second agent checks the rationale argues for the chosen answer."
    )
    verifier_role: str | None = Field(None, description="Model role of the verifier (default: the judge's).")
    max_rewrites: int = Field(
        1,
        ge=0,
        le=5,
        description="Rewrites of a rationale the verifier rejects; "
        "after that the pair goes to the failures table (every pair keeps a rationale).",
    )


class VariantSettings(_Section):
    """MAPL prompt variants (arXiv 2505.12845) with code-verified labels."""

    enabled: bool = Field(True, description="Add MAPL rows.")
    intra: bool = Field(
        True, description="Intra-sample rows: one response, a satisfied and a violated prompt."
    )
    inter: bool = Field(
        True, description="Inter-sample pairs: constraints chosen satisfies and rejected violates."
    )
    constraints: int = Field(2, ge=1, le=6, description="Constraints added per variant prompt.")
    fresh: bool = Field(
        False,
        description="Also answer a multi-instruction prompt per prompt afresh and pair "
        "the answers by the checkers alone (costs `fresh_samples` calls per prompt).",
    )
    fresh_role: str = Field("generator", description="Model role that writes the fresh answers.")
    fresh_samples: int = Field(4, ge=2, le=16, description="Fresh answers per multi-instruction prompt.")


class ReviewSettings(_Section):
    """Contested pairs sent to people first by `factory annotate RUN` (see factory/dataset/review_queue.py)."""

    split: bool = Field(
        True,
        description="Queue pairs whose votes differ (jurors, the two orders of "
        "order: both, or a listwise judge's calls).",
    )
    flipped: bool = Field(
        True,
        description="Queue pairs whose verdict flipped when the answers swapped places "
        "(they reach the pairs only with pairs.keep_inconsistent).",
    )
    max_margin: float | None = Field(
        None,
        ge=0,
        description="Queue pairs whose margin is at most this (judge points; None: margins send nothing).",
    )


class DatasetSettings(_Section):
    """The dataset written at the end of the build."""

    test_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of prompts (not rows) in the test split."
    )
    near_duplicate_threshold: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Jaccard similarity of word shingles above which two pairs count as near duplicates.",
    )
    license: str = Field("apache-2.0", description="License written into the dataset card.")
    language: list[str] = Field(
        ["en"],
        min_length=1,
        description="Languages of the prompts and answers (ISO 639 "
        "codes such as en, fr), written into the dataset card's `language`.",
    )


class GateSettings(_Section):
    """Quality gate checked before the data may reach a trainer or the Hub (see `factory/pipeline/finalize/gate.py`).

    A threshold left at None is not checked; a check that cannot be measured fails. The outcome is
    pass, fail or undecided (the kappa interval straddles min_kappa); only pass approves the build.
    """

    enabled: bool = Field(
        True, description="Run the gate (false: nothing is checked and the build is approved)."
    )
    human_set: str | None = Field(
        "pandalm",
        description="Human-labelled set (name or path) the build's judge "
        "setting is checked on; None skips the human-set checks.",
    )
    human_set_limit: int = Field(
        50,
        ge=1,
        description="Items of the human set used for the check: a sample "
        "seeded by run.seed, stratified by label and spread over prompts.",
    )
    min_kappa: float = Field(
        0.4,
        ge=-1,
        le=1,
        description="Minimum 3-class Cohen's kappa (ties kept) of the "
        "build's judge setting vs the human labels.",
    )
    kappa_bound: Literal["interval", "point"] = Field(
        "interval",
        description="interval: the 95% interval's lower bound must reach min_kappa (its upper bound "
        "below fails; between is undecided, with the n that would decide); point: the point estimate alone.",
    )
    beat_baselines: bool = Field(
        True,
        description="The judge's kappa must exceed the best trivial baseline's on "
        "the same items (by more than baseline_margin).",
    )
    baselines: tuple[Literal["longer", "first", "list"], ...] = Field(
        ("longer", "first", "list"),
        min_length=1,
        description="Trivial judges to beat: always the longer answer, "
        "always the first position, always the answer with more markdown list lines.",
    )
    baseline_margin: float = Field(
        0.0, ge=0, le=2, description="Kappa the judge must beat the best baseline by."
    )
    min_class_recall: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Minimum recall of every human label "
        "present (A, B, tie): catches a judge that never says tie.",
    )
    min_human_z: float | None = Field(
        None,
        description="Minimum Judge's Verdict z-score: the judge's mean kappa "
        "with each annotator against the annotators' pairwise kappas (-1: at least "
        "human-like; needs a set with >= 3 annotators, such as PandaLM).",
    )
    min_inter_juror_kappa: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Minimum mean pairwise Cohen's kappa between jurors "
        "on the build's own judgments (needs a jury setting).",
    )
    max_flip_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Maximum share of items whose winner reverses when the answer "
        "order is swapped (from the build's order-both judgments, else measured "
        "on the human set).",
    )


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
    review: ReviewSettings = Field(default_factory=ReviewSettings, description="Contested pairs to people.")

    @model_validator(mode="after")
    def _roles_exist(self) -> BuildConfig:
        used: list[tuple[str, str]] = []
        for i, wf in enumerate(self.generation.workflows):
            where = f"generation.workflows[{i}]"
            if isinstance(wf, SingleAgentWorkflow):
                used += [(f"{where}.generators", r) for r in wf.generators]
            else:
                used += [(f"{where}.generator", wf.generator)] + [
                    (f"{where}.reviewers", r) for r in wf.reviewers
                ]
        used += _setting_roles(self.judging.setting, "judging.setting")
        if self.rationales.enabled:
            used.append(("rationales.role", self.rationales.role))
            if self.rationales.verify:
                # Without a verifier_role the judge's first model verifies (see pipeline/stages.py).
                verifier = self.rationales.verifier_role or self.judging.setting.models[0]
                where = (
                    "rationales.verifier_role"
                    if self.rationales.verifier_role
                    else "rationales.verifier_role (default: judging.setting.models[0])"
                )
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
        if self.judging.select == "listwise" and candidates_per_prompt(self.generation) > 8:
            raise ValueError(
                f"select: listwise ranks at most 8 candidates in a call; the workflows make "
                f"{candidates_per_prompt(self.generation)} per prompt (use bradley_terry)"
            )
        return self


def candidates_per_prompt(generation: GenerationSettings) -> int:
    """Candidates each prompt gets from the workflows (before identical texts are merged)."""
    return sum(
        wf.samples * len(wf.generators) if isinstance(wf, SingleAgentWorkflow) else wf.n_responses
        for wf in generation.workflows
    )


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
    return validate_model(BuildConfig, data, f"invalid config {source}")


def load_config(path: str | Path) -> BuildConfig:
    """Read a YAML build spec. Relative prompt paths are resolved against the config's folder."""
    path = Path(path)
    data = load_yaml_file(path, "config file")
    if data is None:
        raise UserError(f"config file is empty: {path}")
    if isinstance(data, dict) and "prompts" in data:
        data["prompts"] = resolve_prompt_paths(data["prompts"], path.parent)
    _resolve_human_set_path(data, path.parent)
    return parse_config(data, str(path))


def _resolve_human_set_path(data: Any, folder: Path) -> None:
    """A `gate.human_set` file named relative to the config is resolved against the config's folder
    (as prompt paths are), so the run folder's saved config finds it from anywhere."""
    gate = data.get("gate") if isinstance(data, dict) else None
    value = gate.get("human_set") if isinstance(gate, dict) else None
    if not isinstance(gate, dict) or not isinstance(value, str):
        return
    if value.startswith("hf://") or Path(value).is_absolute():
        return
    from judges.humans.public_sets import known_set_names

    if value.strip().lower() not in known_set_names() and (folder / value).exists():
        data["gate"] = {**gate, "human_set": str((folder / value).resolve())}


def dump_config(config: BuildConfig) -> str:
    """The resolved config as YAML (every default written out), for the run folder."""
    return dump_model_yaml(config)
