"""The typed records of a build: the rows of its tables and the JSON documents it writes.

Rows stay plain dicts (they flow into polars frames and parquet files with stable schemas, and the
shards build thousands of them), so the records are `TypedDict`s: no runtime cost, and mypy checks
every key a stage writes or reads. The fields are those of docs/architecture.md, "Tables"; a key
that only some rows carry is `NotRequired`. Nested columns (lists, dicts) hold Python values in
fresh rows and JSON strings in parquet; `factory._util.json_columns` is the one codec between them.

Where each record is produced and read:

* `Candidate`: `factory.workflows.candidates.candidate_row` (generate stage) -> judge and pairs stages,
  rationales (earlier answers), `candidates.parquet`.
* `Judgment`: `judges.engine.pairwise.judgment_row` (one judged item; tournaments add the prompt's ids
  and standings) and `factory.workflows.ranking` (listwise rows) -> pairs, rationales, the gate,
  `judgments.parquet`.
* `Pair`: `factory.pipeline.stages.pairs` / `strength_pairs` -> rationales (`rationale*` added) ->
  variants (MAPL inter-sample pairs are pairs too) -> the dataset (`factory.dataset`), `pairs.parquet`.
* `MaplIntraRow`: `factory.pipeline.stages.mapl_variants` -> `mapl_intra.parquet` -> the dataset.
* `Failure`: every stage, where a prompt drops out -> the shard's stop check, salvage, the outcome,
  `failures.parquet`.
* `GateOutcome` (+ `GateCheck`): `factory.pipeline.finalize.gate` -> the manifest's `gate`, the card,
  publish and trainer hand-off (approval), `agreement.json`'s `gate`.
* `Agreement` (+ `AgreementSetting`): `judges.calibration.calibrate.build_agreement` -> the gate's
  figures, the report, `factory calibrate`'s table, `agreement.json`.
* `Manifest` (+ `Counts`, `OutcomeRecord`): `factory.pipeline.finalize.manifest` -> `manifest.json`,
  read by incremental builds, review application, publish and train.

Stops are typed: a failure (or judgment) that ended because the build must stop carries `stop`
(`"budget"` or `"circuit"`), set from the exception where it was caught (`stop_of`), and the shard
reads that field, not the text of the reason.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from factory.llm.errors import BudgetExceededError, CircuitOpenError

Stop = Literal["budget", "circuit"]
"""Why the build must stop: a budget cap was reached, or a circuit is open (an endpoint is down)."""

BuildStopKind = Literal["budget", "circuit", "interrupted"]
"""What ended a build early: a call's `Stop`, or the user (Ctrl-C / a cancelled flow run)."""


class BuildStop(TypedDict):
    """Why a build stopped early: its kind, and the first stopping call's message (or "interrupted").
    A plain dict, so a Prefect task can return it."""

    kind: BuildStopKind
    reason: str


Verdict = Literal["A", "B", "tie"]


def stop_of(exc: BaseException) -> Stop | None:
    """The stop an exception means, or None when it is an ordinary failure of one item."""
    if isinstance(exc, BudgetExceededError):
        return "budget"
    if isinstance(exc, CircuitOpenError):
        return "circuit"
    return None


class Message(TypedDict):
    """One chat turn."""

    role: str
    content: str


class Candidate(TypedDict):
    """A row of `candidates.parquet`: one response of one workflow to one prompt."""

    candidate_id: str  # prompt_id:workflow:role:s<sample>:t<step>, stable across reruns
    prompt_id: str
    workflow: str
    kind: str  # the workflow's kind: single agent or feedback loop
    model: str  # the model that wrote `text`
    models: list[str]  # every model the row's calls went to
    role: str  # the generator's role
    step: int  # the feedback loop's step (0 = first answer, k = k-th revision)
    sample: int
    text: str  # the answer to the last user turn: what judges compare
    answers: list[str]  # one per user turn: the shared earlier answers, then its own last one
    history: list[dict[str, Any]]  # the loop's conversation (JSON in parquet)
    reviewer_scores: list[float | None]
    review_score: float | None
    feedback: str | None
    reviews: list[str]  # the feedback loop's reviews
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached_calls: int
    finish_reason: str | None  # `length` = the answer was cut at `max_tokens`
    content_hash: str  # sha256 of the whitespace-normalized text
    duplicate_of: str | None  # the first candidate of the same prompt with the same text, any workflow


class Judgment(TypedDict):
    """A row of `judgments.parquet`. Verdicts are always in the item's own orientation (A = `response_a`
    of the item), whatever order was shown."""

    judgment_id: str  # item_id|judge_id
    item_id: str
    judge_id: str  # the judge setting's id
    kind: str  # judge / jury / debate (listwise for a ranking call)
    models: list[str]
    protocol: str
    scale: int | None
    order: str  # AB / BA / both ("mixed": a jury whose jurors differ; "listwise")
    flipped: bool | None  # shown swapped, or the two orders disagreed
    verdict: Verdict | None  # None: unscored, see `unscored_reason`
    score_a: float | None
    score_b: float | None
    unscored_reason: str | None
    raw: str  # JSON list of raw outputs
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    votes: str  # JSON list: per juror, per order, or the one verdict
    injection_flags: str  # JSON list of judge-format markers found in the answers ("A:### Answer", ...)
    stop: NotRequired[Stop | None]  # set when the item ended because the build must stop (never written)
    inconsistent: NotRequired[bool | None]  # an explicit order-swap inconsistency (wins over `flipped`)
    # In a build, the tournaments add the prompt and the compared candidates:
    prompt_id: NotRequired[str]
    candidate_a: NotRequired[str]
    candidate_b: NotRequired[str]
    best_id: NotRequired[str]  # the prompt's leader (round robin, N-way)
    standings: NotRequired[str]  # JSON: the round robin's ranked standings
    strengths: NotRequired[str]  # JSON: Bradley-Terry strengths (N-way)
    select: NotRequired[str]  # the N-way selection that fitted `strengths`
    shown: NotRequired[str]  # listwise: JSON list of the candidate ids shown, in order
    ranking: NotRequired[str | None]  # listwise: JSON list of candidate ids, best first
    # `compare_workflows` (a workflow against another):
    workflow_a: NotRequired[str]
    workflow_b: NotRequired[str]


class Strength(TypedDict):
    """One candidate's Bradley-Terry strength (a judgment's `strengths`, a pair's provenance), strongest first."""

    candidate_id: str
    strength: float  # on the log scale
    comparisons: int  # the comparisons it was in


class Pair(TypedDict):
    """A row of `pairs.parquet`: one preference pair (judged, or a MAPL inter-sample pair)."""

    pair_id: str
    prompt_id: str
    prompt: str  # the user turns joined
    turns: list[str]  # the user turns (JSON in parquet)
    earlier_answers: list[str]  # shared answers to every user turn but the last; empty for single-turn
    chosen: str
    rejected: str
    chosen_id: str
    rejected_id: str
    chosen_model: str | None
    rejected_model: str | None
    margin: float | None
    votes: list[Any]  # the verdicts behind the pair, oriented to the chosen answer (JSON in parquet)
    judge_id: str | None
    source: str  # judged / mapl_inter
    rationale: str | None
    provenance: dict[str, Any]  # how the pair was cut (rule, protocol, strengths...; JSON in parquet)
    tie: NotRequired[bool]  # judged pairs: the judges called it a tie (kept by `pairs.keep_ties`)
    flipped: NotRequired[bool]  # judged pairs: the judgment flipped under the swap
    judgment_id: NotRequired[str | None]
    # Added by the rationale stage:
    rationale_status: NotRequired[str]  # disabled / accepted ... / checker (MAPL)
    rationale_attempts: NotRequired[int]
    rationale_model: NotRequired[str | None]
    # MAPL inter-sample pairs:
    kind: NotRequired[str]
    method: NotRequired[str]
    constraints: NotRequired[list[dict[str, Any]]]
    checks: NotRequired[dict[str, list[bool]]]


class MaplIntraRow(TypedDict):
    """A row of `mapl_intra.parquet`: one response, a prompt whose constraints it satisfies and one whose
    constraints it violates, each label re-verified by the checkers."""

    row_id: str
    prompt_id: str
    kind: str  # mapl_intra
    source: str  # mapl_intra
    prompt: str
    response: str
    response_id: str  # the candidate the response is
    model: str | None
    chosen_prompt: str
    rejected_prompt: str
    chosen_turns: list[str]
    rejected_turns: list[str]
    earlier_answers: list[str]
    chosen_constraints: list[dict[str, Any]]
    rejected_constraints: list[dict[str, Any]]
    checks: dict[str, list[bool]]


class Failure(TypedDict):
    """A row of `failures.parquet`: a prompt (or pair) that dropped out of a stage, and why."""

    item_id: str
    stage: str
    reason: str  # "<ErrorClass>: <message>" for a failed call, else a reason name
    raw: str  # the raw output, cut to 4000 characters
    stop: NotRequired[Stop | None]  # set when the build must stop (budget, circuit): see `stop_of`


class GateCheck(TypedDict):
    """One check of the quality gate."""

    # min_kappa, beat_baselines, min_class_recall, min_human_z, min_inter_juror_kappa, max_flip_rate
    name: str
    value: float | None  # None: not measured
    threshold: float
    passed: bool  # status == pass
    status: str  # pass / fail / undecided
    note: str | None
    bound: NotRequired[str]  # min_kappa: point or interval
    interval: NotRequired[list[float | None] | tuple[float | None, float | None] | None]
    need_n: NotRequired[int | None]


class GateOutcome(TypedDict):
    """The manifest's `gate` (and `agreement.json`'s): the quality gate's verdict and what it measured."""

    enabled: bool
    passed: bool  # the verdict is pass: publishing and trainer hand-off read it
    verdict: str  # pass / fail / undecided
    checks: list[GateCheck]
    figures: dict[str, Any]  # kappa, kappa_ci95, n, baseline_kappas, class_recall, flip_rate, review_*...
    note: NotRequired[str]  # a disabled gate says so
    judge_setting: NotRequired[str]
    human_set: NotRequired[str | None]
    human_set_limit: NotRequired[int | None]
    error: NotRequired[str | None]  # the gate could not measure (the human set did not load)
    advice: NotRequired[str | None]
    report: NotRequired[str]  # report.html, when a human set was judged
    agreement: NotRequired[str]  # agreement.json, likewise


class AgreementSetting(TypedDict, total=False):
    """One judge setting of an agreement document, ranked by kappa (see `build_agreement`)."""

    rank: int
    setting_id: str
    kind: str
    models: list[str]
    protocol: str
    scale: int | None
    order: str
    structured: bool
    reducer: str | None
    kappa: float | None
    kappa_no_ties: float | None
    kappa_se: float | None
    accuracy: float | None
    n: int
    n_unscored: int
    ci95: list[float | None] | None
    confusion: Any
    label_counts: dict[str, int]
    unscored_reasons: dict[str, int]
    class_recall: dict[str, float | None]
    decision: dict[str, Any]  # pass / fail / undecided through the kappa interval, need_n
    vs_baselines: dict[str, Any]
    human_likeness: dict[str, Any] | None  # Judge's Verdict z
    length_control: dict[str, Any]
    bias: dict[str, Any]  # position, length, self_preference
    jurors: dict[str, Any] | None  # juries: Krippendorff's alpha, inter-juror kappas
    disagreements: list[dict[str, Any]]
    cost: dict[str, Any]  # cost_usd, tokens, latency, calls


class Agreement(TypedDict):
    """agreement.json (schema `preference-factory/agreement@1`): judges against a human-labelled set."""

    schema: str
    run_id: str
    created_at: str
    source: str  # calibration / quality gate
    human_set: dict[str, Any]  # name, spec, n_items, annotators, label_counts
    sample: dict[str, Any] | None  # how the items were drawn (judges.humans.sampling)
    human_ceiling: dict[str, Any] | None  # pairwise human kappas + Fleiss, None with one label per item
    baselines: list[dict[str, Any]]  # trivial judges on the same items
    min_kappa: float  # the threshold every `decision` reads
    best: str | None  # the best setting's id
    settings: list[AgreementSetting]
    llm: dict[str, Any] | None  # usage totals
    gate: NotRequired[GateOutcome]  # added by the quality gate
    focus: NotRequired[str]  # the setting the gate checked (the report leads with it)
    outcome: NotRequired[dict[str, Any]]  # calibration: complete / failed and its cause


class Counts(TypedDict):
    """The manifest's `counts`: rows of each table, then of the dataset's files."""

    prompts: int
    candidates: int
    judgments: int
    pairs: int
    failures: int
    dataset: NotRequired[dict[str, int]]  # <config>_<split> -> rows
    mapl_intra: NotRequired[int]


class OutcomeRecord(TypedDict):
    """The manifest's `outcome` (factory.pipeline.outcome)."""

    status: str  # complete / stopped / partial / failed
    cause: str | None
    exit_code: int
    gate_failed: bool
    stop: NotRequired[BuildStopKind | None]


class Manifest(TypedDict):
    """manifest.json: what a build produced, what it cost and how it ended."""

    run_id: str
    factory_version: str
    finished_at: str
    status: str | None  # the outcome's status, once settled
    stopped_reason: str | None
    stop: NotRequired[BuildStopKind | None]  # what stopped it (None: it ran to the end)
    counts: Counts
    # the gateway's usage: calls, cache_hits, prompt_tokens, ..., by_role, by_model, by_tag
    llm: dict[str, Any]
    models: dict[str, str]  # role -> model
    judge_setting: str
    gate: GateOutcome | None  # None: the gate did not run (the build was not complete)
    approved: bool  # the gate passed
    stages: NotRequired[dict[str, dict[str, Any]]]  # per stage: prompts_in, rows_out, failures and usage
    review: NotRequired[dict[str, Any] | None]  # the human review queue's summary
    outcome: NotRequired[OutcomeRecord]
    target_pairs: NotRequired[dict[str, Any]]
    interrupted: NotRequired[bool]
    cost: NotRequired[dict[str, Any]]  # the ledger's cost summary (factory.pipeline.cost_report.run_cost)
