"""Judge, jury and debate as LangGraph graphs, compiled once per setting and run with `ainvoke`.

* judge: one model and protocol. START fans out (`Send`) one task per conversation: one per order
  shown for the pairwise protocols (one, or two for `order: both`), or one per answer for the
  independent protocol; the tasks run concurrently and `decide` maps them to the item's orientation.
  `run_setting` runs these same steps without the graph (`_run_judge`): a plain fan-out gains
  nothing from LangGraph and paid its per-run cost on every judged pair.
* debate: the same position fan-out around the debate graph of `judges.engine.debate` (one debate per
  order shown).
* jury: START fans out one task per juror; each juror is a full setting run through its own
  compiled graph; `reduce` applies the jury's reducer (`judges.engine.jury`).

Graphs hold no gateway: it arrives at run time through LangGraph's runtime context (`JudgeContext`),
so one compiled graph serves every build and every gateway.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from factory._util.concurrency import gather_or_cancel
from factory.llm import Gateway
from judges.engine.ask import Asked, JudgeContext, ask, resolve_model
from judges.engine.jury import reduce_jury
from judges.engine.order import combine_orders, to_item, views
from judges.engine.outcome import Outcome
from judges.engine.settings import JudgeSetting
from judges.protocols import Answer, Question, combine_single_scores, render_pairwise, render_single

if TYPE_CHECKING:  # LangGraph (a second to import) loads when a debate or jury graph is built
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.runtime import Runtime

    Graph = CompiledStateGraph[Any, Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Item:
    """One pair to judge, in its own orientation: `answer_a` is A."""

    item_id: str
    question: Question
    answer_a: Answer
    answer_b: Answer

    def shown(self, flipped: bool) -> tuple[Answer, Answer]:
        """The answers in the order shown to the model."""
        return (self.answer_b, self.answer_a) if flipped else (self.answer_a, self.answer_b)


class RunState(TypedDict, total=False):
    item: Item
    parts: Annotated[list[tuple[int, Any]], operator.add]  # (task index, result); tasks finish in any order
    result: Outcome


def _ordered(state: RunState) -> list[Any]:
    return [part for _, part in sorted(state.get("parts", []), key=lambda p: p[0])]


def _from_asked(asked: Asked, model: str, scale: int | None) -> Outcome:
    p = asked.parsed
    return Outcome(
        verdict=p.verdict,
        score_a=p.score_a,
        score_b=p.score_b,
        reason=p.unscored_reason,
        raws=asked.raws,
        usage=asked.usage,
        models=(model,),
        scale=scale,
        stop=asked.stop,
    )


@lru_cache(maxsize=256)
def _judge_steps(setting: JudgeSetting) -> tuple[Any, Any, Any]:
    """plan(state) -> tasks, ask(task, context) -> {"parts"}, decide(state) -> {"result"} of a judge setting."""
    protocol, scale = setting.protocol, setting.scale
    scores_scale = None if protocol == "direct" else scale

    async def plan(state: RunState) -> list[dict[str, Any]]:
        item = state["item"]
        if protocol == "independent":  # each answer alone: nothing is shown in an order
            return [{"item": item, "index": i, "side": side} for i, side in enumerate("AB")]
        return [
            {"item": item, "index": i, "flipped": flipped}
            for i, flipped in enumerate(views(setting.order, setting.seed, item.item_id))
        ]

    async def ask_node(task: dict[str, Any], context: JudgeContext) -> dict[str, Any]:
        item: Item = task["item"]
        gateway = context.gateway
        target = resolve_model(gateway, setting.models[0], setting.api_base)
        if protocol == "independent":
            answer = item.answer_a if task["side"] == "A" else item.answer_b
            messages = render_single(item.question, answer, scale, structured=setting.structured)
            asked = await ask(
                gateway,
                target,
                messages,
                protocol=protocol,
                scale=scale,
                structured=setting.structured,
                tag=context.tag,
            )
            return {"parts": [(task["index"], (target.name, asked))]}
        shown_a, shown_b = item.shown(task["flipped"])
        messages = render_pairwise(
            protocol, item.question, shown_a, shown_b, scale, structured=setting.structured
        )
        asked = await ask(
            gateway,
            target,
            messages,
            protocol=protocol,
            scale=scale,
            structured=setting.structured,
            tag=context.tag,
        )
        outcome = to_item(_from_asked(asked, target.name, scores_scale), task["flipped"])
        return {"parts": [(task["index"], outcome)]}

    async def decide(state: RunState) -> dict[str, Any]:
        parts = _ordered(state)
        if protocol != "independent":
            return {"result": combine_orders(setting.order, parts)}
        (model, side_a), (_, side_b) = parts
        parsed = combine_single_scores(side_a.parsed, side_b.parsed)
        # A stop signal on either side must survive, whichever side failed first.
        stopped = next((s for s in (side_a, side_b) if s.stop is not None), None)
        outcome = Outcome(
            verdict=parsed.verdict,
            score_a=parsed.score_a,
            score_b=parsed.score_b,
            reason=stopped.parsed.unscored_reason if stopped else parsed.unscored_reason,
            raws=side_a.raws + side_b.raws,
            usage=side_a.usage + side_b.usage,
            models=(model,),
            scale=scale,
            votes=(parsed.verdict,),
            stop=stopped.stop if stopped else None,
        )
        return {"result": outcome}

    return plan, ask_node, decide


def _build_judge(setting: JudgeSetting) -> Graph:
    from langgraph.types import Send

    tasks, ask, decide = _judge_steps(setting)

    async def plan(state: RunState) -> list[Any]:  # (LangGraph reads hints at run time: no Send here)
        return [Send("ask", task) for task in await tasks(state)]

    async def ask_node(task: dict[str, Any], runtime: Runtime[JudgeContext]) -> dict[str, Any]:
        return dict(await ask(task, runtime.context))

    return _fan_out_graph(plan, "ask", ask_node, decide)


async def _run_judge(setting: JudgeSetting, item: Item, context: JudgeContext) -> Outcome:
    """A judge setting's steps without the graph: the same plan, asks (concurrent, the first failure
    cancelling the rest, as in the graph) and decision. The graph is a plain fan-out, and LangGraph's
    per-run bookkeeping cost more CPU than the call it runs (docs/benchmarks.md)."""
    plan, ask, decide = _judge_steps(setting)
    tasks = await plan({"item": item})
    asked = await gather_or_cancel(ask(task, context) for task in tasks)
    final = await decide({"item": item, "parts": [part for result in asked for part in result["parts"]]})
    result: Outcome = final["result"]
    return result


def _build_debate(setting: JudgeSetting) -> Graph:
    from langgraph.types import Send

    from judges.engine.debate import build_debate_graph, debate_material

    debate = build_debate_graph(setting)
    # Speeches are sequential supersteps; LangGraph's default limit (25) would cut long debates.
    limit = len(setting.debate.roles) * setting.debate.rounds + 10

    async def plan(state: RunState) -> list[Any]:  # (LangGraph reads hints at run time: no Send here)
        item = state["item"]
        return [
            Send("debate", {"item": item, "index": i, "flipped": flipped})
            for i, flipped in enumerate(views(setting.order, setting.seed, item.item_id))
        ]

    async def debate_node(task: dict[str, Any], runtime: Runtime[JudgeContext]) -> dict[str, Any]:
        item: Item = task["item"]
        material = debate_material(item.question, *item.shown(task["flipped"]))
        final = await debate.ainvoke(
            {"material": material, "turns": [], "scores": []},
            config={"recursion_limit": limit},
            context=runtime.context,
        )
        return {"parts": [(task["index"], to_item(final["result"], task["flipped"]))]}

    async def decide(state: RunState) -> dict[str, Any]:
        return {"result": combine_orders(setting.order, _ordered(state))}

    return _fan_out_graph(plan, "debate", debate_node, decide)


def _build_jury(setting: JudgeSetting) -> Graph:
    from langgraph.types import Send

    jurors = setting.juror_settings()

    async def plan(state: RunState) -> list[Any]:  # (LangGraph reads hints at run time: no Send here)
        return [Send("juror", {"item": state["item"], "index": i}) for i in range(len(jurors))]

    async def juror_node(task: dict[str, Any], runtime: Runtime[JudgeContext]) -> dict[str, Any]:
        outcome = await run_setting(jurors[task["index"]], task["item"], runtime.context)
        return {"parts": [(task["index"], outcome)]}

    async def reduce(state: RunState) -> dict[str, Any]:
        return {
            "result": reduce_jury(
                setting.reducer, _ordered(state), scale=setting.scale, weights=setting.weights
            )
        }

    return _fan_out_graph(plan, "juror", juror_node, reduce)


def _fan_out_graph(plan: Any, name: str, node: Any, decide: Any) -> Graph:
    """START -(Send per task)-> `name` -> decide -> END.

    Every node and router is a coroutine: LangGraph runs plain functions of an async graph in a
    thread pool, and that hop cost more than the judging logic itself.
    """
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(RunState, context_schema=JudgeContext)
    graph.add_node(name, node)
    graph.add_node("decide", decide)
    graph.add_conditional_edges(START, plan, [name])
    graph.add_edge(name, "decide")
    graph.add_edge("decide", END)
    return graph.compile()


@lru_cache(maxsize=256)
def compiled_graph(setting: JudgeSetting) -> Graph:
    """The compiled graph of a setting; built once per distinct setting (settings are frozen)."""
    if setting.kind == "jury":
        return _build_jury(setting)
    if setting.kind == "debate":
        return _build_debate(setting)
    return _build_judge(setting)


async def run_setting(setting: JudgeSetting, item: Item, context: JudgeContext) -> Outcome:
    """Judge one item with `setting`; the outcome is in the item's orientation. A single judge runs its
    steps directly (`_run_judge`); debates and juries run their graphs."""
    if setting.kind not in ("jury", "debate"):
        return await _run_judge(setting, item, context)
    final = await compiled_graph(setting).ainvoke({"item": item, "parts": []}, context=context)
    result: Outcome = final["result"]
    return result


async def judge_item(
    gateway: Gateway, setting: JudgeSetting, item: Item, *, tag: str | None = None
) -> Outcome:
    """`run_setting` with the gateway injected; usage is recorded under `tag` (default: the setting id)."""
    return await run_setting(setting, item, JudgeContext(gateway=gateway, tag=tag or setting.setting_id))


__all__ = ["Item", "JudgeContext", "compiled_graph", "judge_item", "run_setting"]
