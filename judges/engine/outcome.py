"""What one evaluation produced: a verdict (or why there is none), scores, raw outputs and usage.

An `Outcome` is the value the judge, jury and debate graphs pass around. Every graph returns it in
the item's orientation (A = the item's `answer_a`); only the per-view results inside a graph are in
the orientation that was shown to the model, and `swapped()` turns one into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from factory.llm import BudgetExceededError, CircuitOpenError, Completion, LLMError
from factory.records import Stop
from judges.verdicts import Verdict

_SWAP: dict[str | None, Verdict | None] = {"A": "B", "B": "A", "tie": "tie", None: None}


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of some model calls (cache hits included at their recorded size)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
        )

    @classmethod
    def of(cls, completions: Iterable[Completion]) -> Usage:
        total = cls()
        for c in completions:
            total += cls(c.prompt_tokens, c.completion_tokens, c.cost_usd)
        return total

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        out = cls()
        for u in usages:
            out += u
        return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """One judgment: verdict and scores (None when unscored, with `reason`), plus its evidence.

    `order` is what was shown ("AB", "BA", "both", or "mixed" for a jury whose jurors differ),
    `flipped` is True when the answers were shown swapped (random order) or when the two orders
    disagreed (both orders), and `votes` lists the verdicts behind this one (per order or per juror).
    `stop` is set (with `reason`) when a model call was refused because the build must stop.
    """

    verdict: Verdict | None = None
    score_a: float | None = None
    score_b: float | None = None
    reason: str | None = None
    raws: tuple[str, ...] = ()
    usage: Usage = field(default_factory=Usage)
    models: tuple[str, ...] = ()
    scale: int | None = None
    order: str = "AB"
    flipped: bool = False
    votes: tuple[Verdict | None, ...] = ()
    stop: Stop | None = None

    @property
    def scored(self) -> bool:
        return self.verdict is not None

    @property
    def stops(self) -> bool:
        """True when the item ended on a stop signal (budget reached, circuit open)."""
        return self.stop is not None

    def swapped(self) -> Outcome:
        """The same judgment seen from the other orientation (A and B exchanged)."""
        return replace(
            self,
            verdict=_SWAP[self.verdict],
            score_a=self.score_b,
            score_b=self.score_a,
            votes=tuple(_SWAP[v] for v in self.votes),
        )


def swap_verdict(verdict: Verdict | None) -> Verdict | None:
    """A <-> B; tie and None unchanged."""
    return _SWAP[verdict]


def error_reason(exc: LLMError) -> str:
    """The unscored reason of a failed model call.

    Budget and circuit errors keep their class name first (`BudgetExceededError: ...`), as the run's
    tables have always recorded them; whether a reason is a stop is carried typed beside it
    (`Outcome.stop`, `factory.records.stop_of`), never read back from this text.
    """
    if isinstance(exc, (BudgetExceededError, CircuitOpenError)):
        return f"{type(exc).__name__}: {exc}"
    return f"llm_error: {exc.reason}: {exc}"


def first_stop(outcomes: Iterable[Outcome]) -> Outcome | None:
    """The first outcome carrying a stop signal, if any."""
    return next((o for o in outcomes if o.stops), None)


def unique(values: Iterable[str]) -> tuple[str, ...]:
    """Distinct values in first-seen order."""
    return tuple(dict.fromkeys(values))
