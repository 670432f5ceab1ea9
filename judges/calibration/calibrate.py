"""Calibrate judge settings against a human-labelled set: expand, judge, score, rank, write agreement.json.

A `CalibrationConfig` names a human set and judge models. `expand_settings` turns it into judge
settings: every model x protocol (x scale for combined scoring) x order as a single judge, plus,
on request, a plurality jury over every subset of two or more of the models (the Fellowship
paper's 57 combinations of six judges) and a debate per model. `calibrate` judges the set with
each single judge once, reduces the jurors' verdicts per jury subset without a further call, and
scores every setting against the human labels (`judges.metrics.scoring.score_setting`). The run folder `<output_dir>/<run_id>/` receives `agreement.json`,
`judgments.parquet`, `report.html` and `report.md`; the request cache sits in `<output_dir>/cache.sqlite`,
shared by every run there, so a rerun (or a wider sweep over the same models) repeats no finished call.

Example:
    >>> config = CalibrationConfig(human_set="pandalm", human_set_limit=100,
    ...                            models=["openai/gpt-4o-mini"], orders=["fixed", "both"])
    >>> result = calibrate(config)
    >>> result.agreement["settings"][0]["kappa"]
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import polars as pl
import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory._util.errors import UserError
from factory.llm import Budget, Gateway, GatewaySettings, ModelSpec
from factory.llm.models import checked_api_base
from factory._util.run_ids import new_run_id
from factory._util.atomic_files import atomic_write_json, atomic_write_parquet, atomic_write_text
from factory._util.yaml_input import describe_validation_error, load_yaml_file
from judges.metrics.baselines import baseline_entries, best_baseline
from judges.calibration.decision import kappa_decision
from factory.records import Agreement, AgreementSetting, GateOutcome
from judges.engine.pairwise import JUDGMENT_SCHEMA
from judges.humans.human_sets import ColumnMapping, HumanSet, load_human_set
from judges.engine.jury import plurality
from judges.metrics.scoring import human_ceiling, order_verdicts, rank, read_judgments, score_judgments, score_setting
from judges.engine.settings import JudgeSetting, Order, Protocol
from judges.calibration.table import judge_table

Progress = Callable[[str, int, int], None]  # (setting_id, done, total)
SCHEMA_ID = "preference-factory/agreement@1"
T = TypeVar("T")


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
    seed: int = Field(0, description="Seed of the sample, the random order, answer shuffles and the bootstrap.")
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
    if not isinstance(data, dict):
        raise UserError(f"calibration config {path}: expected a mapping at the top level")
    for key in ("human_set", "judgments"):  # relative paths are relative to the config file
        value = data.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (path.parent / value).exists():
            data[key] = str((path.parent / value).resolve())
    return parse_calibration_config(data, str(path))


def parse_calibration_config(data: dict[str, Any], source: str = "<calibration>") -> CalibrationConfig:
    """Validate a mapping into a `CalibrationConfig` (one-line `UserError` on the first problem)."""
    try:
        return CalibrationConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, f"invalid calibration config {source}")) from None


# ---------------------------------------------------------------- settings


def expand_settings(config: CalibrationConfig) -> list[JudgeSetting]:
    """Every setting the config asks for, single judges first (juries are reduced from them).

    Scales multiply only combined scoring (the other protocols have a fixed scale of 10).
    """
    models = tuple(s.model for s in config.models)
    variants = list(
        dict.fromkeys((p, s if p == "combined" else 10) for p in config.protocols for s in config.scales)
    )
    singles: list[JudgeSetting] = []
    others: list[JudgeSetting] = []
    juries = [tuple(j) for j in config.juries]
    if config.jury_subsets:
        juries += [c for k in range(2, len(models) + 1) for c in itertools.combinations(models, k)]
    juries = list(dict.fromkeys(juries))

    def setting(**fields: Any) -> JudgeSetting:
        return JudgeSetting.model_validate({"structured": config.structured, "seed": config.seed, **fields})

    for order in config.orders:
        for protocol, scale in variants:
            common = {"protocol": protocol, "scale": scale, "order": order}
            singles += [setting(kind="judge", models=(m,), **common) for m in models]
            others += [setting(kind="jury", models=j, reducer="plurality", **common) for j in juries]
        if config.debate:
            # The debate's final scores are out of 10 whatever protocols the sweep lists.
            debate = {"rounds": config.debate_rounds}
            others += [
                setting(kind="debate", models=(m,), protocol="combined", scale=10, order=order, debate=debate)
                for m in models
            ]
    return singles + others


def _juror_setting(jury: JudgeSetting, model: str) -> JudgeSetting:
    # The engine's own juror settings, so a juror's id (and its rows) match the single judge's.
    return next(j for j in jury.juror_settings() if j.models == (model,))


# ---------------------------------------------------------------- judging


async def judge_items(
    gateway: Gateway,
    setting: JudgeSetting,
    frame: pl.DataFrame,
    *,
    concurrency: int = 16,
    progress: Progress | None = None,
    tag: str | None = None,
) -> list[dict[str, Any]]:
    """Judgment rows of `setting` over the human-set `frame`, one per item, in the frame's order.
    Usage is recorded under `tag` (default: the setting id)."""
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress(setting.setting_id, done, frame.height)

    table = await judge_table(
        gateway,
        setting,
        frame.select("id", "prompt", "response_a", "response_b"),
        concurrency=concurrency,
        progress=tick,
        tag=tag,
    )
    return table.to_dicts()


def reduce_jury(setting: JudgeSetting, juror_rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A plurality jury's rows from its jurors' own rows (same items, same order); no model call.

    The same rule as the engine's jury (`judges.engine.jury.plurality` over the scored jurors). Cost and
    tokens add up over jurors; latency is the slowest juror's, as jurors run in parallel.
    """
    columns = [juror_rows[_juror_setting(setting, m).setting_id] for m in setting.models]
    rows = []
    for per_item in zip(*columns, strict=True):
        verdicts = [r.get("verdict") for r in per_item]
        scored = [v for v in verdicts if v is not None]
        verdict = plurality(scored) if scored else None  # type: ignore[arg-type]
        orders = {r.get("order") for r in per_item}
        item_id = per_item[0]["item_id"]
        reasons = "; ".join(dict.fromkeys(str(r.get("unscored_reason")) for r in per_item))
        rows.append(
            {
                "judgment_id": f"{item_id}|{setting.setting_id}",
                "item_id": item_id,
                "judge_id": setting.setting_id,
                "kind": "jury",
                "models": list(setting.models),
                "protocol": setting.protocol,
                "scale": setting.scale,
                "order": orders.pop() if len(orders) == 1 else "mixed",
                "flipped": any(bool(r.get("flipped")) for r in per_item),
                "verdict": verdict,
                "score_a": None,
                "score_b": None,
                "unscored_reason": None if verdict is not None else f"all_jurors_unscored: {reasons}",
                "raw": json.dumps(
                    [raw for r in per_item for raw in json.loads(r.get("raw") or "[]")], ensure_ascii=False
                ),
                "latency_s": max(float(r.get("latency_s") or 0.0) for r in per_item),
                "prompt_tokens": sum(int(r.get("prompt_tokens") or 0) for r in per_item),
                "completion_tokens": sum(int(r.get("completion_tokens") or 0) for r in per_item),
                "cost_usd": sum(float(r.get("cost_usd") or 0.0) for r in per_item),
                "votes": json.dumps(verdicts),
                "injection_flags": per_item[0].get("injection_flags") or "[]",
            }
        )
    return rows


def _jury_order_verdicts(
    jury: JudgeSetting, rows: dict[str, list[dict[str, Any]]]
) -> tuple[list[str | None], list[str | None]] | None:
    """A plurality jury's verdicts per order: the plurality of its jurors' verdicts in each order."""
    per_juror = [order_verdicts(rows[_juror_setting(jury, m).setting_id]) for m in jury.models]
    if any(p is None for p in per_juror):
        return None

    def vote(column: tuple[str | None, ...]) -> str | None:
        scored = [v for v in column if v is not None]
        return plurality(scored) if scored else None  # type: ignore[arg-type]

    ab = [vote(col) for col in zip(*(p[0] for p in per_juror), strict=True)]  # type: ignore[index]
    ba = [vote(col) for col in zip(*(p[1] for p in per_juror), strict=True)]  # type: ignore[index]
    return ab, ba


async def judge_settings(
    gateway: Gateway,
    settings: list[JudgeSetting],
    frame: pl.DataFrame,
    *,
    concurrency: int = 16,
    progress: Progress | None = None,
    tag_prefix: str = "",
) -> dict[str, list[dict[str, Any]]]:
    """Rows per setting id (jurors' own settings included). Single judges and debates call models, all
    settings at once so several models work in parallel; a plurality jury is reduced from its jurors'
    rows, so a sweep over every subset of six jurors costs six judges' calls, not 63 settings'."""
    needed = {s.setting_id: s for s in judged_settings(settings)}
    rows: dict[str, list[dict[str, Any]]] = {}
    # Fixed order first: an order=both or random run then finds its A-first calls in the cache
    # instead of racing the fixed run to make the same call twice.
    for wave in (
        [i for i, s in needed.items() if s.order == "fixed"],
        [i for i, s in needed.items() if s.order != "fixed"],
    ):
        results = await asyncio.gather(
            *(
                judge_items(
                    gateway,
                    needed[i],
                    frame,
                    concurrency=concurrency,
                    progress=progress,
                    tag=f"{tag_prefix}{i}" if tag_prefix else None,
                )
                for i in wave
            )
        )
        rows.update(zip(wave, results, strict=True))
    for jury in filter(_reducible, settings):
        rows[jury.setting_id] = reduce_jury(jury, rows)
    return rows


def judged_settings(settings: list[JudgeSetting]) -> list[JudgeSetting]:
    """The settings `judge_settings` judges item by item (each reports progress): the settings
    themselves, a plurality jury replaced by its jurors, each once."""
    needed = {s.setting_id: s for s in settings if not _reducible(s)}
    for jury in filter(_reducible, settings):
        for model in jury.models:
            juror = _juror_setting(jury, model)
            needed.setdefault(juror.setting_id, juror)
    return list(needed.values())


def _reducible(setting: JudgeSetting) -> bool:
    # Weighted and mean-score juries, and juries of mixed jurors, are judged as a whole by the engine.
    return setting.kind == "jury" and setting.reducer == "plurality" and setting.jurors is None


async def evaluate(
    gateway: Gateway,
    settings: list[JudgeSetting],
    human: HumanSet,
    *,
    concurrency: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
    tag_prefix: str = "",
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Judge `human` with every setting and score each: (ranked agreement entries, rows per setting).

    `tag_prefix` files the calls' usage apart (the quality gate's under `gate/<setting id>`)."""
    rows = await judge_settings(
        gateway, settings, human.frame, concurrency=concurrency, progress=progress, tag_prefix=tag_prefix
    )
    usage = gateway.usage.snapshot().get("by_tag", {})
    entries = []
    for setting in settings:
        per_order = None
        if setting.order == "both":
            per_order = (
                _jury_order_verdicts(setting, rows)
                if _reducible(setting)
                else order_verdicts(rows[setting.setting_id])
                if setting.kind != "jury"
                else None
            )
        entries.append(
            score_setting(
                _describe(setting),
                rows[setting.setting_id],
                human,
                per_order=per_order,
                usage=usage.get(f"{tag_prefix}{setting.setting_id}"),
                n_boot=n_boot,
                seed=seed,
            )
        )
    return rank(entries), {s.setting_id: rows[s.setting_id] for s in settings}


def _describe(setting: JudgeSetting) -> dict[str, Any]:
    return {
        "setting_id": setting.setting_id,
        "kind": setting.kind,
        "models": list(setting.models),
        "protocol": setting.protocol,
        "scale": setting.scale,
        "order": setting.order,
        "structured": setting.structured,
        "reducer": setting.reducer if setting.kind == "jury" else None,
    }


# ---------------------------------------------------------------- the whole run


@dataclass
class CalibrationResult:
    run_dir: Path
    agreement: Agreement


def read_against(
    entry: dict[str, Any], baselines: list[dict[str, Any]], min_kappa: float
) -> dict[str, Any]:
    """A setting's kappa read against `min_kappa` through its interval, and against the best baseline."""
    best = best_baseline(baselines)
    margin = None if best is None or entry["kappa"] is None else entry["kappa"] - best["kappa"]
    return {
        "decision": kappa_decision(entry["kappa"], entry["ci95"], entry["n"], min_kappa, se=entry.get("kappa_se")),
        "vs_baselines": {
            "best": best["name"] if best else None,
            "best_kappa": best["kappa"] if best else None,
            "margin": margin,
            "beaten": margin is not None and margin > 0,
        },
    }


def build_agreement(
    human: HumanSet,
    entries: list[dict[str, Any]],
    *,
    run_id: str,
    source: str,
    llm: dict[str, Any] | None = None,
    human_set_spec: str | None = None,
    min_kappa: float = 0.4,
    n_boot: int = 1000,
    seed: int = 0,
) -> Agreement:
    """The agreement.json document (schema `preference-factory/agreement@1`).

    Top level: `run_id`, `created_at`, `source`, `human_set` {name, spec, n_items, annotators,
    label_counts}, `sample` (how the items were drawn from the set: method, seed, ids and their hash,
    label shares of set and sample; `judges.humans.sampling`), `human_ceiling` (pairwise human kappas +
    Fleiss on the sample, or None with one label per item), `baselines` (trivial judges on the same
    items; `judges.metrics.baselines`), `min_kappa` (the threshold every `decision` reads), `best` (setting
    id), `llm` (usage totals) and `settings`, ranked by kappa. Each setting: `decision` (pass / fail
    / undecided through the kappa interval, `need_n`), `vs_baselines`, `class_recall`,
    `human_likeness` (Judge's Verdict z), `length_control`, `kappa_se`, and
    `rank`, `setting_id`, `kind`, `models`, `protocol`, `scale`, `order`, `structured`, `reducer`,
    `kappa`, `kappa_no_ties`, `accuracy`, `n`, `n_unscored`, `ci95`, `confusion`, `label_counts`,
    `unscored_reasons`, `bias` {position, length, self_preference}, `jurors` (juries: Krippendorff's
    alpha, inter-juror kappas), `disagreements` (examples) and `cost` {cost_usd, tokens, latency, calls}.
    The quality gate adds `gate` and `focus` (the id of the setting it checked).
    """
    counts = human.frame["label"].value_counts()
    label_counts = {str(r["label"]): int(r["count"]) for r in counts.to_dicts()}
    baselines = baseline_entries(human, n_boot=n_boot, seed=seed)
    entries = [{**e, **read_against(e, baselines, min_kappa)} for e in entries]
    return {
        "schema": SCHEMA_ID,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "human_set": {
            "name": human.name,
            "spec": human_set_spec or human.name,
            "n_items": len(human),
            "annotators": list(human.annotators),
            "label_counts": {k: label_counts.get(k, 0) for k in ("A", "B", "tie")},
        },
        "sample": human.sample,
        "human_ceiling": human_ceiling(human),
        "baselines": baselines,
        "min_kappa": min_kappa,
        "best": entries[0]["setting_id"] if entries and entries[0]["kappa"] is not None else None,
        "settings": cast(list[AgreementSetting], entries),  # `evaluate`'s entries, read against the baselines
        "llm": {k: v for k, v in (llm or {}).items() if not k.startswith("by_")} or None,
    }


def judging_outcome(
    llm: dict[str, Any], rows: list[dict[str, Any]], models: tuple[ModelSpec, ...]
) -> dict[str, Any]:
    """`complete`, or `failed` with its cause when the calibration measured nothing: every model call
    failed (no key, a dead endpoint) or no item got a verdict. An empty table is never a result."""
    scored = sum(1 for r in rows if r.get("verdict") is not None)
    answered = llm.get("calls", 0) + llm.get("cache_hits", 0)
    if scored and answered:
        return {"status": "complete", "cause": None}
    reasons = [str(r["unscored_reason"]) for r in rows if r.get("unscored_reason")]
    last = " ".join(reasons[-1].split())[:240] if reasons else "(none recorded)"
    where = ", ".join(dict.fromkeys(s.api_base or s.model for s in models))
    what = (
        f"every model call failed ({llm.get('errors', 0)} errors)"
        if not answered
        else f"no item of {len(rows)} judgments got a verdict"
    )
    return {"status": "failed", "cause": f"{what} at {where}; last error: {last}"}


def write_outputs(
    run_dir: Path, agreement: Agreement, *, gate: GateOutcome | None = None
) -> dict[str, Path]:
    """agreement.json plus the report (HTML + markdown) in `run_dir`; returns their paths."""
    from judges.report import render_report

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "agreement.json", agreement)
    # The report reads the document as generic JSON (its many sections are rendered field by field).
    paths = render_report(cast(dict[str, Any], agreement), run_dir, gate=cast(dict[str, Any] | None, gate))
    return {"agreement": run_dir / "agreement.json", **paths}


async def calibrate_async(
    config: CalibrationConfig, *, progress: Progress | None = None
) -> CalibrationResult:
    """`calibrate` for callers that already run an event loop."""
    human = load_human_set(
        config.human_set,
        mapping=config.mapping,
        data_dir=config.data_dir,
        limit=config.human_set_limit,
        seed=config.seed,
    )
    out = Path(config.output_dir)
    run_id = new_run_id("calibrate")
    run_dir = out / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise UserError(f"cannot create run folder {run_dir}: {exc.strerror}") from None
    atomic_write_text(
        run_dir / "calibration.yaml",
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
    )
    if config.judgments is not None:
        entries = score_judgments(
            read_judgments(config.judgments),
            human,
            n_boot=config.bootstrap,
            seed=config.seed,
            source=Path(config.judgments).stem,
        )
        agreement = build_agreement(
            human,
            entries,
            run_id=run_id,
            source=f"judgments file {config.judgments}",
            human_set_spec=config.human_set,
            min_kappa=config.min_kappa,
            n_boot=config.bootstrap,
            seed=config.seed,
        )
    else:
        roles = {spec.model: spec for spec in config.models}
        gateway = Gateway(
            roles, config.gateway, cache_path=out / "cache.sqlite", budget=config.budget, seed=config.seed
        )
        try:
            entries, rows = await evaluate(
                gateway,
                expand_settings(config),
                human,
                concurrency=config.concurrency,
                n_boot=config.bootstrap,
                seed=config.seed,
                progress=progress,
            )
            llm = gateway.usage.snapshot()
        finally:
            gateway.close()
        all_rows = [row for setting_rows in rows.values() for row in setting_rows]
        atomic_write_parquet(run_dir / "judgments.parquet", pl.DataFrame(all_rows, schema=JUDGMENT_SCHEMA))
        agreement = build_agreement(
            human,
            entries,
            run_id=run_id,
            source="models",
            llm=llm,
            human_set_spec=config.human_set,
            min_kappa=config.min_kappa,
            n_boot=config.bootstrap,
            seed=config.seed,
        )
        agreement["outcome"] = judging_outcome(llm, all_rows, config.models)
    write_outputs(run_dir, agreement)
    return CalibrationResult(run_dir, agreement)


def calibrate(config: CalibrationConfig, *, progress: Progress | None = None) -> CalibrationResult:
    """Run a calibration: judge the human set with every setting, rank by kappa, write the run folder."""
    return run_sync(lambda: calibrate_async(config, progress=progress))


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, also where an event loop is already
    running in this thread (a notebook, an async flow, Playwright's sync API): there it runs on a
    fresh loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="run-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
