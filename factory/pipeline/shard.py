"""One shard of a build: every prompt streamed through all the stages, the stage files written at the end.

Each prompt goes generate -> judge -> pairs -> rationales -> variants on its own, holding one prompt
slot for the whole chain. There is no barrier between stages: a prompt's judge call goes out as
soon as its own candidates are back, so the gateway's call slots stay full instead of draining at
the end of every stage while the slowest prompts of the shard finish. The stage functions of
`factory.pipeline.stages.per_prompt` do the work, called with the one prompt.

Files and resume are as before: a stage's shard file is written (atomically, failures first) once
every prompt of the shard is through that stage, in stage order, so a shard file that exists is
finished. Stages whose file already exists are not run again: their rows are read back and handed
to the later stages. A budget or an open circuit (a failure or judgment whose typed `stop` is set, see
`first_stop`) ends the chains of the shard;
only the stages that every prompt finished before the stop are written, and `BuildStopped` is raised.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import polars as pl

from factory._util.concurrency import map_with_slots
from factory._util.json_columns import decode_columns
from factory.inputs.prompt_sources import Prompt
from factory.pipeline.context import BuildContext
from factory.pipeline.stages import per_prompt as stages
from factory.records import BuildStop, Failure

# A stage's rows, whichever record the stage makes (candidates, judgments, pairs, MAPL rows).
Rows = list[dict[str, Any]]
StageOutput = tuple[Sequence[Mapping[str, Any]], list[Failure]]
R = TypeVar("R", bound=Mapping[str, Any])

STAGES = ("generate", "judge", "pairs", "rationales", "variants")
# Columns stored as JSON strings in parquet that stages read back as Python values.
_JSON_COLUMNS = ("answers", "history", "reviewer_scores", "reviews", "models", "turns", "earlier_answers")


class BuildStopped(Exception):
    """A budget or an open circuit stopped the build; finished shards are kept."""

    def __init__(self, stop: BuildStop) -> None:
        super().__init__(stop["reason"])
        self.stop = stop


def first_stop(rows: Sequence[Mapping[str, Any]], failures: Sequence[Failure]) -> BuildStop | None:
    """The first budget or circuit stop in a stage's output, with what it says
    (`"BudgetExceededError: ..."`), or None. A stop is a failure whose `stop` is set or, for a judge
    that ran out of budget mid-item, a judgment whose `stop` is set (its unscored reason says why)."""
    for failure in failures:
        kind = failure.get("stop")
        if kind:
            return {"kind": kind, "reason": failure["reason"].removeprefix("unscored: ")}
    for row in rows:
        kind = row.get("stop")
        if kind:
            return {"kind": kind, "reason": str(row.get("unscored_reason"))}
    return None


class ShardRun:
    """The stage outputs of one shard, gathered prompt by prompt (see the module docstring)."""

    def __init__(self, ctx: BuildContext, index: int, prompts: list[Prompt]) -> None:
        self.ctx, self.index, self.prompts = ctx, index, prompts
        # Rows of the stages finished by an earlier invocation, by prompt (what later stages need).
        self._finished: dict[str, dict[str, Rows]] = {}
        for name in STAGES:
            if ctx.run.shard_done(name, index):
                rows = decode_columns(
                    pl.read_parquet(ctx.run.shard_path(name, index)).to_dicts(), _JSON_COLUMNS
                )
                by_prompt: dict[str, Rows] = {}
                for row in rows:
                    by_prompt.setdefault(str(row.get("prompt_id")), []).append(row)
                self._finished[name] = by_prompt
                ctx.progress.resumed(name, (p.prompt_id for p in prompts))
        # This run's output: stage -> prompt position -> (rows, failures).
        self._out: dict[str, dict[int, StageOutput]] = {name: {} for name in STAGES}
        # (stage index, prompt position, the stop it met; None: it ended because another chain stopped)
        self._stops: list[tuple[int, int, BuildStop | None]] = []

    @property
    def complete(self) -> bool:
        """Every stage file of the shard exists: nothing to run."""
        return len(self._finished) == len(STAGES)

    async def run_prompt(self, position: int) -> None:
        """One prompt through every stage not yet finished for the shard."""
        ctx, one = self.ctx, [self.prompts[position]]
        candidates = await self._stage("generate", position, lambda: stages.generate_stage(ctx, one))
        if candidates is None:
            return
        judgments = await self._stage("judge", position, lambda: stages.judge_stage(ctx, one, candidates))
        if judgments is None:
            return
        pairs = await self._stage(
            "pairs", position, lambda: stages.pairs_stage(ctx, one, candidates, judgments)
        )
        if pairs is None:
            return
        explained = await self._stage(
            "rationales", position, lambda: stages.rationales_stage(ctx, one, pairs, judgments)
        )
        if explained is None:
            return
        await self._stage("variants", position, lambda: stages.variants_stage(ctx, one, explained))

    async def _stage(
        self,
        name: str,
        position: int,
        step: Callable[[], Awaitable[tuple[list[R], list[Failure]]] | tuple[list[R], list[Failure]]],
    ) -> list[R] | None:
        """This prompt's rows of stage `name` (read back if the stage is finished), or None when
        the shard is stopping: a stop seen by any chain ends the others at their next stage."""
        if name in self._finished:
            # Read back from the stage's shard file, nested columns decoded: the stage's own records.
            return cast(list[R], self._finished[name].get(self.prompts[position].prompt_id, []))
        stage_at = STAGES.index(name)
        if self._stops:
            self._stops.append((stage_at, position, None))
            return None
        result = step()
        if inspect.isawaitable(result):  # every stage but pairs, which is plain code
            result = await result
        rows, failures = result
        stop = first_stop(rows, failures)
        if stop is not None:
            self._stops.append((stage_at, position, stop))
            return None
        self._out[name][position] = (rows, failures)
        self.ctx.progress.advance(name, self.prompts[position].prompt_id, failed=len(failures))
        return rows

    def finish(self) -> int:
        """Write the stage files every prompt got through, in stage order; raise `BuildStopped` if
        the shard stopped, else return its accepted judged pairs."""
        written_until = min((at for at, _, _ in self._stops), default=len(STAGES))
        for name in STAGES[:written_until]:
            if name in self._finished:
                continue
            rows: list[Mapping[str, Any]] = []
            failures: list[Failure] = []
            for position in range(len(self.prompts)):
                r, f = self._out[name][position]
                rows += r
                failures += f
            self.ctx.run.write_shard(name, self.index, rows, failures)
        if self._stops:
            # The first real stop in stage, then prompt order: what the stage-by-stage build reported.
            seen = [(at, pos, stop) for at, pos, stop in self._stops if stop is not None]
            raise BuildStopped(min(seen, key=lambda seen_at: seen_at[:2])[2])
        return sum(len(self._rows("rationales", position)) for position in range(len(self.prompts)))

    def _rows(self, name: str, position: int) -> Sequence[Mapping[str, Any]]:
        if name in self._finished:
            return self._finished[name].get(self.prompts[position].prompt_id, [])
        return self._out[name][position][0]


async def run_shard(ctx: BuildContext, index: int, prompts: list[Prompt], slots: asyncio.Semaphore) -> int:
    """All stages of one shard, each prompt's chain holding one of `slots`; returns the accepted
    judged pairs. Raises `BuildStopped` when a budget or an open circuit stopped it."""
    shard = ShardRun(ctx, index, prompts)
    if not shard.complete:
        await map_with_slots(range(len(prompts)), shard.run_prompt, slots)
    # Encoding and writing a shard's stage files takes tens of milliseconds per file; on the event
    # loop it would hold every other shard's calls back for that long (at 8 in flight, about a tenth
    # of the calling window). Polars writes without the GIL, so a thread keeps the calls flowing.
    return await asyncio.to_thread(shard.finish)
