"""The pre-run estimate (`factory build CONFIG --estimate`): calls, tokens and cost, without any call.

Counts follow the configured workflows, per prompt:

* a multi-turn prompt's earlier turns: once per prompt, by the first workflow's first generator;
* single agent: generators x samples answers to the last turn;
* feedback loop: `n_responses` answers to the last turn, and each reviewer reviews every answer
  that will be revised (every answer with `review_last`);
* judging: knockout compares C candidates in C-1 comparisons (round robin and bradley_terry: C(C-1)/2;
  listwise: `ranking.calls` ranking calls per judge model, whatever C); a comparison
  costs 1 call per order shown (2 with `order: both`), 2 for independent scoring, roles x rounds + roles
  for a debate, summed over a jury's jurors; every judge conversation may be re-prompted once;
* rationales: one writer call per pair (+ a verifier call with `verify`; rewrites up to `max_rewrites`);
* MAPL variants: code-verified, no calls unless `variants.fresh` (fresh_samples calls per prompt);
* the quality gate: `gate.human_set_limit` comparisons of the human set under the build's judge
  setting (sized from the set's own texts when it is available locally, else from the prompts).

`calls` is what a build without re-prompts, rewrites or early stops makes; `max_calls` is the upper
bound. Tokens are upper bounds too: prompts are counted at about 4 characters per token, and every
completion is taken to use its model's `max_tokens`. Cost comes from litellm's price table (None, shown
as "unknown", when the model is not in it, as with most self-hosted endpoints); a role with `batch: true`
is priced at the table's batch price, or half the online price where the table has none (noted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from factory._util.errors import UserError
from factory.config import BuildConfig, FeedbackLoopWorkflow, SingleAgentWorkflow
from factory.inputs.conversation import earlier_turns_role
from factory.inputs.prompt_sources import Prompt
from factory.llm.price_map import batch_token_cost
from judges.engine.settings import JudgeSetting
from judges.protocols import MAX_ANSWERS, render_listwise, render_pairwise, render_single

CHARS_PER_TOKEN = 4
# Instructions we wrap around the material of reviewer, rationale and MAPL prompts (approximate; the
# judge templates are rendered and counted instead).
_WRAPPER_TOKENS = 200


def tokens(text: str) -> int:
    """A rough token count: about 4 characters per token, plus a few for the message envelope."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) + 4


@dataclass
class EstimateLine:
    """Calls and tokens of one stage on one model role."""

    stage: str
    role: str
    model: str
    calls: int = 0
    max_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    batch: bool = False  # the role's calls go through the batch API, at the batch price
    price_note: str | None = None  # how a batch price was found when the table has none


@dataclass
class BuildEstimate:
    """Everything `--estimate` prints. Token and cost figures are upper bounds (see the module doc)."""

    prompts: int
    rejected: int
    lines: list[EstimateLine] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(line.calls for line in self.lines)

    @property
    def max_calls(self) -> int:
        return sum(line.max_calls for line in self.lines)

    @property
    def total_tokens(self) -> int:
        return sum(line.prompt_tokens + line.completion_tokens for line in self.lines)

    @property
    def cost_usd(self) -> float:
        """Upper bound of the cost of the priced models (unpriced ones are listed by `unpriced`)."""
        return sum(line.cost_usd or 0.0 for line in self.lines)

    @property
    def unpriced(self) -> list[str]:
        return sorted({line.model for line in self.lines if line.cost_usd is None and line.max_calls})

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "rejected": self.rejected,
            "calls": self.calls,
            "max_calls": self.max_calls,
            "max_tokens": self.total_tokens,
            "max_cost_usd": self.cost_usd,
            "unpriced_models": self.unpriced,
            "budget": self.budget,
            "lines": [asdict(line) for line in self.lines],
        }


class _Tally:
    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        self.lines: dict[tuple[str, str], EstimateLine] = {}

    def max_tokens(self, role: str) -> int:
        spec = self.config.models.get(role)
        return spec.max_tokens if spec is not None else 0

    def add(self, stage: str, role: str, calls: int, max_calls: int, prompt_tokens_per_call: int) -> None:
        spec = self.config.models.get(role)
        line = self.lines.setdefault((stage, role), EstimateLine(stage, role, spec.model if spec else role))
        line.calls += calls
        line.max_calls += max_calls
        line.prompt_tokens += max_calls * prompt_tokens_per_call
        line.completion_tokens += max_calls * self.max_tokens(role)


def _pairwise_overhead(setting: JudgeSetting) -> int:
    return _prompt_overhead(setting.protocol, setting.scale, setting.structured)


# The templates' own tokens depend only on these: rendered once per build, not once per prompt
# (at 1,500 prompts rendering them per prompt took 0.4 s, all of it before the first model call).
@cache
def _prompt_overhead(protocol: str, scale: int, structured: bool) -> int:
    if protocol == "independent":
        return tokens("\n".join(m["content"] for m in render_single("", "", structured=structured)))
    messages = render_pairwise(protocol, "", "", "", scale, structured=structured)  # type: ignore[arg-type]
    return tokens("\n".join(m["content"] for m in messages))


@cache
def _listwise_overhead(shown: int) -> int:
    return tokens("\n".join(m["content"] for m in render_listwise("", [""] * shown)))


def _judge(
    tally: _Tally, setting: JudgeSetting, comparisons: int, question: int, answer: int, stage: str = "judge"
) -> None:
    """Calls of `comparisons` comparisons under one judge setting (recursing into a jury)."""
    if setting.kind == "jury":
        jurors = setting.juror_settings() if hasattr(setting, "juror_settings") else ()
        for juror in jurors:
            _judge(tally, juror, comparisons, question, answer, stage)
        return
    role = setting.models[0]
    views = 2 if setting.order == "both" else 1
    overhead = _pairwise_overhead(setting)
    judge_out = tally.max_tokens(role)
    if setting.kind == "debate":
        speeches = len(setting.debate.roles) * setting.debate.rounds
        scorers = len(setting.debate.roles)
        per_call = overhead + question + 2 * answer + speeches * judge_out
        tally.add(
            stage,
            role,
            comparisons * views * (speeches + scorers),
            comparisons * views * (speeches + 2 * scorers),
            per_call,
        )
    elif setting.protocol == "independent":
        # Each answer alone, whatever the order; a re-prompt repeats the conversation plus the reply.
        tally.add(stage, role, comparisons * 2, comparisons * 4, overhead + question + answer + judge_out)
    else:
        tally.add(
            stage,
            role,
            comparisons * views,
            comparisons * views * 2,
            overhead + question + 2 * answer + judge_out,
        )


def _listwise(
    tally: _Tally, setting: JudgeSetting, calls: int, candidates: int, question: int, answer: int
) -> None:
    """`calls` ranking calls per judge model (each juror of a jury), each showing every candidate."""
    from factory.workflows.ranking import judge_models

    shown = min(candidates, MAX_ANSWERS)
    overhead = _listwise_overhead(shown)
    for role in judge_models(setting):
        tally.add(
            "judge", role, calls, 2 * calls, overhead + question + shown * answer + tally.max_tokens(role)
        )


def _generation(tally: _Tally, prompt: Prompt) -> tuple[int, int]:
    """Add the generation calls of one prompt; returns (candidates, longest answer in tokens)."""
    turn_tokens = [tokens(t) for t in prompt.turns]
    workflows = tally.config.generation.workflows
    lead = earlier_turns_role(workflows)
    earlier = len(turn_tokens) - 1
    for t in range(earlier):
        tally.add("generate", lead, 1, 1, sum(turn_tokens[: t + 1]) + t * tally.max_tokens(lead))
    history = sum(turn_tokens) + earlier * tally.max_tokens(lead)  # what every last-turn answer reads
    candidates, answer = 0, 0
    for wf in workflows:
        if isinstance(wf, SingleAgentWorkflow):
            for role in wf.generators:
                out = tally.max_tokens(role)
                tally.add("generate", role, wf.samples, wf.samples, history)
                candidates += wf.samples
                answer = max(answer, out)
        elif isinstance(wf, FeedbackLoopWorkflow):
            out = tally.max_tokens(wf.generator)
            feedback = sum(tally.max_tokens(r) for r in wf.reviewers)
            n = wf.n_responses
            tally.add("generate", wf.generator, n, n, history + n * (out + feedback))
            reviews = n if getattr(wf, "review_last", False) else n - 1
            for role in wf.reviewers:
                tally.add(
                    "generate",
                    role,
                    reviews,
                    reviews,
                    _WRAPPER_TOKENS + history + n * (out + tally.max_tokens(role)),
                )
            candidates += n
            answer = max(answer, out)
    return candidates, answer


def _pairs_per_prompt(rule: str, candidates: int) -> int:
    if candidates < 2:
        return 0
    if rule == "best_vs_worst":
        return 1
    if rule == "all_pairs":
        return candidates * (candidates - 1) // 2
    return candidates - 1


def estimate_build(
    config: BuildConfig,
    prompts: Sequence[Prompt],
    rejected: int = 0,
    price: Callable[[str, int, int], float | None] | None = None,
) -> BuildEstimate:
    """Expected and maximum calls, tokens and cost of building `config` over `prompts`.

    `price(model, prompt_tokens, completion_tokens)` prices a line (default: litellm's `cost_per_token`,
    which imports litellm; a build saving its estimate passes the same table read without litellm).

    >>> est = estimate_build(config, prompts)   # doctest: +SKIP
    >>> est.calls, est.max_calls, est.cost_usd  # doctest: +SKIP
    """
    if price is None:
        from factory.llm.pricing import estimate_cost  # imports litellm: only when pricing is asked for

        price = estimate_cost

    tally = _Tally(config)
    setting = config.judging.setting
    judge_roles = (
        [j.models[0] for j in setting.juror_settings()] if setting.kind == "jury" else [setting.models[0]]
    )
    judge_out = max(tally.max_tokens(r) for r in judge_roles)
    for prompt in prompts:
        question = sum(tokens(t) for t in prompt.turns)
        candidates, answer = _generation(tally, prompt)
        if candidates < 2:
            continue
        select = config.judging.select
        comparisons = (
            candidates * (candidates - 1) // 2
            if select in ("round_robin", "bradley_terry")
            else candidates - 1
        )
        if select == "listwise":
            _listwise(tally, setting, config.judging.ranking.calls, candidates, question, answer)
        else:
            _judge(tally, setting, comparisons, question, answer)
        pairs = _pairs_per_prompt(config.pairs.rule, candidates)
        if select in ("listwise", "bradley_terry"):
            pairs = min(pairs, config.judging.ranking.max_pairs)
        r = config.rationales
        if r.enabled and pairs:
            attempts = 1 + r.max_rewrites if r.verify else 1
            notes = min(4, comparisons * 2) * judge_out
            tally.add(
                "rationales", r.role, pairs, pairs * attempts, _WRAPPER_TOKENS + question + 2 * answer + notes
            )
            if r.verify:
                verifier = r.verifier_role or setting.models[0]
                tally.add(
                    "rationales",
                    verifier,
                    pairs,
                    pairs * attempts,
                    _WRAPPER_TOKENS + question + 2 * answer + tally.max_tokens(r.role),
                )
        v = config.variants
        if v.enabled and getattr(v, "fresh", False):
            samples = getattr(v, "fresh_samples", 0)
            tally.add(
                "variants",
                getattr(v, "fresh_role", "generator"),
                samples,
                samples,
                _WRAPPER_TOKENS + question,
            )
    _gate(tally, config, prompts)
    for line in tally.lines.values():
        spec = config.models.get(line.role)
        if spec is not None and spec.batch:
            line.batch = True
            line.cost_usd, line.price_note = batch_token_cost(
                line.model, line.prompt_tokens, line.completion_tokens
            )
        else:
            line.cost_usd = price(line.model, line.prompt_tokens, line.completion_tokens)
    budget = {k: v for k, v in config.budget.model_dump().items() if v is not None}
    return BuildEstimate(
        prompts=len(prompts), rejected=rejected, lines=list(tally.lines.values()), budget=budget
    )


def _gate(tally: _Tally, config: BuildConfig, prompts: Sequence[Prompt]) -> None:
    """The gate's judge calls: one comparison per human-set item it checks."""
    gate = config.gate
    if not gate.enabled or not gate.human_set:
        return
    from judges.humans.human_sets import load_human_set

    try:
        frame = load_human_set(gate.human_set, limit=gate.human_set_limit).frame
    except UserError:  # not available (offline, no local copy): size the items like the build's prompts
        items = gate.human_set_limit
        question = math.ceil(sum(tokens(t) for p in prompts for t in p.turns) / max(1, len(prompts)))
        answer = max((spec.max_tokens for spec in config.models.values()), default=question)
    else:
        items = frame.height
        question = math.ceil(sum(tokens(t) for t in frame["prompt"].to_list()) / max(1, items))
        texts = frame["response_a"].to_list() + frame["response_b"].to_list()
        answer = math.ceil(sum(tokens(t) for t in texts) / max(1, len(texts)))
    _judge(tally, config.judging.setting, items, question, answer, stage="gate")


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def format_estimate(estimate: BuildEstimate) -> str:
    """The estimate as a plain-text table, with a line per budget cap the build may reach."""
    head = ("stage", "role", "model", "calls", "max calls", "max tokens", "max cost")
    rows = [
        (
            ln.stage,
            f"{ln.role} (batch)" if ln.batch else ln.role,
            ln.model,
            f"{ln.calls:,}",
            f"{ln.max_calls:,}",
            f"{ln.prompt_tokens + ln.completion_tokens:,}",
            _money(ln.cost_usd),
        )
        for ln in estimate.lines
    ]
    rows.append(
        (
            "total",
            "",
            "",
            f"{estimate.calls:,}",
            f"{estimate.max_calls:,}",
            f"{estimate.total_tokens:,}",
            _money(estimate.cost_usd),
        )
    )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    table = [
        "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in [head, *rows]
    ]
    out = [
        f"estimate: {estimate.prompts} prompts ({estimate.rejected} rejected at loading); no model was called",
        *table,
        (
            "calls: without re-prompts or rewrites; max: every judge reply re-prompted, every completion at "
            "max_tokens, ~4 characters per token"
        ),
    ]
    batched = sorted({ln.role for ln in estimate.lines if ln.batch})
    if batched:
        out.append(f"(batch): priced at the batch price: {', '.join(batched)}")
    for note in sorted({f"{ln.model}: {ln.price_note}" for ln in estimate.lines if ln.price_note}):
        out.append(f"batch price of {note}")
    if estimate.unpriced:
        out.append(
            f"price unknown (not in litellm's table, not counted in the cost): {', '.join(estimate.unpriced)}"
        )
    caps = {
        "max_calls": estimate.max_calls,
        "max_tokens": estimate.total_tokens,
        "max_cost_usd": estimate.cost_usd,
    }
    for name, value in estimate.budget.items():
        if name in caps and caps[name] > value:
            out.append(
                f"budget.{name}={value} is below the upper bound ({caps[name]:,.4g}): the build may stop "
                "at the cap; raise it with --max-calls/--max-tokens/--max-cost"
            )
    return "\n".join(out)
