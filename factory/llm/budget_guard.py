"""Budget caps that hold with many calls in flight.

Tokens and cost are known only once a call returns, so a cap checked against finished calls alone
is overshot by everything in flight (about half the cap with 16 calls in flight). Instead each call
reserves its worst case (one call, its prompt-token bound + its completion limit, that priced)
before it is sent; on completion the reservation is replaced by what the call really used.

* A call whose worst case no longer fits next to what is already spent is refused with
  `BudgetExceededError` before it is sent.
* A call that fits next to what is spent but not next to the other calls' reservations waits for
  those to settle (they usually use far less than their worst case) and then decides.

So a cap is never overshot while each call stays within its reservation, which holds when the
provider honours `max_tokens` and the prompt bound is one (see `Gateway`); and the build stops
with less than one call's worst case of the cap unused.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

from factory.llm.errors import BudgetExceededError
from factory.llm.limits import Budget
from factory.llm.usage import UsageLedger

# The guard is shared by calls on several event loops and threads (Prefect tasks run graphs on
# their own loops), so there is no one loop to notify; a waiting call polls at this interval.
_SETTLE_POLL_S = 0.005


@dataclass(frozen=True)
class Spend:
    """Calls, tokens (prompt + completion) and USD: spent, or held for a call in flight."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.calls + other.calls, self.tokens + other.tokens, self.cost_usd + other.cost_usd)

    def __sub__(self, other: Spend) -> Spend:
        return Spend(self.calls - other.calls, self.tokens - other.tokens, self.cost_usd - other.cost_usd)


class BudgetGuard:
    """Reservations of the calls in flight against a `Budget`, next to the spend in `usage`.

    `prior` gives what earlier invocations spent (a resumed build's cache); it is called under the
    guard's lock, at most once per reservation.
    """

    def __init__(self, budget: Budget, usage: UsageLedger, prior: Callable[[], Spend]) -> None:
        self.budget = budget
        self._usage = usage
        self._prior = prior
        self._lock = threading.Lock()
        self._held = Spend()

    @property
    def caps_tokens_or_cost(self) -> bool:
        """Whether reservations need a token and cost estimate at all (computing one costs CPU)."""
        return self.budget.max_tokens is not None or self.budget.max_cost_usd is not None

    async def reserve(self, worst: Spend, model: str) -> Spend:
        """Hold `worst` for one call, waiting for reservations in flight to settle when needed;
        raise `BudgetExceededError` when the call cannot fit. Returns what to `release`."""
        while not self._try_reserve(worst, model):
            await asyncio.sleep(_SETTLE_POLL_S)
        return worst

    def release(self, reservation: Spend) -> None:
        """Drop a reservation. Record the call's real usage first: counting it twice for a moment
        errs on the safe side, counting it nowhere would not."""
        with self._lock:
            self._held = self._held - reservation

    def _spent(self) -> Spend:
        u = self._usage
        return self._prior() + Spend(u.calls, u.total_tokens, u.cost_usd)

    def _try_reserve(self, worst: Spend, model: str) -> bool:
        b = self.budget
        with self._lock:
            spent = self._spent()
            caps = (
                ("max_calls", b.max_calls, spent.calls, self._held.calls, worst.calls),
                ("max_tokens", b.max_tokens, spent.tokens, self._held.tokens, worst.tokens),
                ("max_cost_usd", b.max_cost_usd, spent.cost_usd, self._held.cost_usd, worst.cost_usd),
            )
            must_wait = False
            for name, cap, used, held, need in caps:
                if cap is None:
                    continue
                if used + need > cap:
                    detail = (
                        ""
                        if name == "max_calls"
                        else f" (spent {used:.6g}, the next call may need {need:.6g})"
                    )
                    raise BudgetExceededError(f"budget reached: {name}={cap}{detail}", model=model)
                must_wait = must_wait or used + held + need > cap
            if must_wait:
                return False
            self._held = self._held + worst
            return True
