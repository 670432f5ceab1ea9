"""How a build ended, said truthfully: one of four outcomes, its exit code and its cause.

* `complete`: every prompt is in the dataset or in `failures` for a reason that retrying would not
  change (a rejected prompt, a tie, an unparseable verdict...).
* `partial`: the dataset has rows, but some prompts still failed for a transient reason (rate limit,
  5xx, timeout, empty reply) after the salvage rounds; `--resume` retries them.
* `stopped`: a budget cap, an open circuit or an interrupt ended the build early; finished shards
  are kept and `--resume` finishes it.
* `failed`: the build achieved nothing: every model call failed, or no dataset row came out.

The exit codes are distinct so that scripts and schedulers can tell them apart (2 stays the
code of a usage error, 130 that of an interrupt).

The quality gate is a second, separate verdict: a `complete` build whose gate failed stays
`complete` (every prompt was dealt with; the data is written, and later incremental builds do not
rebuild its prompts), but is not approved and exits `GATE_FAILED_EXIT` (6) instead of 0. A build
that is not complete exits with its outcome's code whatever the gate said: the outcome comes first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from factory.llm.errors import BudgetExceededError, CircuitOpenError, LLMError
from factory.records import BuildStopKind


class Outcome(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    STOPPED = "stopped"
    FAILED = "failed"


EXIT_CODES: dict[Outcome, int] = {
    Outcome.COMPLETE: 0,
    Outcome.STOPPED: 3,
    Outcome.PARTIAL: 4,
    Outcome.FAILED: 5,
}
GATE_FAILED_EXIT = 6  # complete, but the quality gate failed: written, not approved

# Failures that mean "stop the build", not "this item is bad": their shard stays unfinished for --resume.
STOPPING_REASONS: tuple[str, ...] = (BudgetExceededError.__name__, CircuitOpenError.__name__)


def _subclasses(cls: type[LLMError]) -> Iterable[type[LLMError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def transient_reasons() -> tuple[str, ...]:
    """The failure reasons that may pass if the call is made again: every retryable error class of the
    gateway's error tree (rate limit, timeout, provider error and their subclasses), by class name,
    as failure rows record them (`"<ErrorClass>: <message>"`)."""
    return tuple(sorted({c.__name__ for c in _subclasses(LLMError) if c.retryable}))


def is_transient(reason: str | None) -> bool:
    text = reason or ""
    return any(name in text for name in transient_reasons())


@dataclass(frozen=True)
class BuildOutcome:
    """The outcome of a build and the one line that tells it."""

    status: Outcome
    cause: str | None = None
    gate_failed: bool = False  # the quality gate ran and failed (see `gate_failed`)
    stop: BuildStopKind | None = None  # what stopped the build early, when something did

    @property
    def exit_code(self) -> int:
        if self.status is Outcome.COMPLETE and self.gate_failed:
            return GATE_FAILED_EXIT
        return EXIT_CODES[self.status]

    def line(self, run_dir: object) -> str:
        """One line for the terminal; names the cause and the way on where there is one."""
        if self.status is Outcome.COMPLETE:
            return (
                "complete, but the quality gate failed: the data is not approved"
                if self.gate_failed
                else "complete"
            )
        resume = f"factory build --resume {run_dir}"
        if self.status is Outcome.PARTIAL:
            return f"partial: {self.cause}; retry them with: {resume}"
        if self.status is Outcome.STOPPED:
            hint = (
                " (raise the cap with --max-calls/--max-tokens/--max-cost)" if self.stop == "budget" else ""
            )
            return f"stopped: {self.cause}; finished shards are kept; finish with: {resume}{hint}"
        return f"failed: {self.cause}"


def gate_failed(gate: object) -> bool:
    """Whether a manifest's `gate` records a gate that ran and failed (a disabled gate passes; a gate that
    did not run, None, is no verdict: the build was not complete)."""
    return isinstance(gate, dict) and bool(gate.get("enabled", True)) and not gate.get("passed")


@dataclass(frozen=True)
class BuildFacts:
    """What the outcome is decided from: plain figures of the finished (or stopped) build."""

    usable_prompts: int
    dataset_rows: int
    model_calls: int
    cache_hits: int
    call_errors: int
    failure_reasons: tuple[str, ...]
    stopped: str | None  # the stopping call's message (or "interrupted")
    stop: BuildStopKind | None = None  # what stopped the build
    endpoints: tuple[str, ...] = ()


def decide_outcome(facts: BuildFacts) -> BuildOutcome:
    """The build's outcome; the first rule that holds wins.

    A budget stop is `stopped` even with no row yet (raising the cap is the way on). Otherwise a build
    in which no model call succeeded is `failed` whatever stopped it: an open circuit there means the
    endpoint never answered, and resuming against it would fail again."""
    budget_stop = facts.stop == "budget"
    nothing_answered = facts.model_calls == 0 and facts.cache_hits == 0 and facts.call_errors > 0
    if nothing_answered and not budget_stop:
        return BuildOutcome(
            Outcome.FAILED,
            f"every model call failed ({facts.call_errors} errors){_at(facts)}; "
            f"last error: {_last_error(facts)}",
        )
    if facts.stop is not None:
        return BuildOutcome(Outcome.STOPPED, facts.stopped, stop=facts.stop)
    if facts.usable_prompts > 0 and facts.dataset_rows == 0:
        return BuildOutcome(
            Outcome.FAILED,
            f"no dataset rows from {facts.usable_prompts} prompts; "
            f"most common failure: {_most_common(facts.failure_reasons)}",
        )
    transient = [r for r in facts.failure_reasons if is_transient(r)]
    if transient:
        return BuildOutcome(
            Outcome.PARTIAL,
            f"{len(transient)} prompts failed for transient reasons (most common: {_most_common(transient)})",
        )
    return BuildOutcome(Outcome.COMPLETE)


def _at(facts: BuildFacts) -> str:
    return f" at {', '.join(facts.endpoints)}" if facts.endpoints else ""


def _last_error(facts: BuildFacts) -> str:
    llm = [r for r in facts.failure_reasons if any(n in r for n in _error_names())]
    if llm:
        return _short(llm[-1])
    if facts.stopped:
        return _short(facts.stopped)  # a stopped shard records no failure rows (resume redoes it)
    return _short(facts.failure_reasons[-1]) if facts.failure_reasons else "(none recorded)"


def _error_names() -> tuple[str, ...]:
    return (LLMError.__name__, *(c.__name__ for c in _subclasses(LLMError)))


def _most_common(reasons: Iterable[str]) -> str:
    # Reasons carry per-item details after the class name; count by the part before the first colon.
    counts = Counter(_short(r).split(":")[0] for r in reasons)
    if not counts:
        return "(none recorded)"
    reason, n = counts.most_common(1)[0]
    return f"{reason} ({n}x)"


def _short(reason: str) -> str:
    text = " ".join(reason.split())
    text = text.removeprefix("unscored: ")
    return text[:240]
