"""LLM debate as a LangGraph graph: ChatEval's one-by-one referees, as the Fellowship paper ran it.

One model plays every role. In each of `rounds` rounds the roles speak one at a time, in order, each
seeing the question, both answers and the discussion so far. Then every role scores both answers
out of 10 (the combined protocol's lines, or JSON when `structured`), these scoring calls running
concurrently; the verdict compares the mean scores over the roles that gave readable scores.

So one debate makes exactly `roles x rounds` speaking calls plus `roles` scoring calls, plus at most
one re-prompt per scoring reply that could not be parsed. The graph here judges the pair in the
orientation it is given; position handling (`order`) wraps it in `judges.engine.graphs`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from factory._util.templates import render_template
from factory.llm import LLMError
from factory.records import Stop, stop_of
from judges.engine.ask import Asked, JudgeContext, ask, resolve_model
from judges.engine.outcome import Outcome, Usage, error_reason, unique
from judges.engine.settings import JudgeSetting
from judges.protocols import Answer, Question, neutralize, render_pairwise, verdict_from_scores

_PROMPTS = Path(__file__).parent / "debate_prompts"
SCALE = 10  # ChatEval and the paper score out of 10


@dataclass(frozen=True, slots=True)
class Turn:
    """One referee's speech."""

    role: str
    text: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class RoleScore:
    """One referee's final scores (or why they could not be read)."""

    role: str
    asked: Asked


class DebateState(TypedDict, total=False):
    material: str
    turns: Annotated[list[Turn], operator.add]
    scores: Annotated[list[RoleScore], operator.add]
    failed: str | None
    stopped: Stop | None  # the failed speech was refused because the build must stop
    result: Outcome


class ScoreTask(TypedDict):
    """What the `score` node gets for one role (sent to it, not read from the state)."""

    material: str
    turns: list[Turn]
    role_index: int


def _render(name: str, **context: Any) -> str:
    return render_template(_PROMPTS, name, **context)


def debate_material(question: Question, shown_a: Answer, shown_b: Answer) -> str:
    """The question and both answers between our delimiters, neutralised (the protocols' layout)."""
    return render_pairwise("combined", question, shown_a, shown_b, SCALE)[1]["content"]


def debate_messages(
    setting: JudgeSetting, role_index: int, material: str, turns: list[Turn], *, scoring: bool
) -> list[dict[str, str]]:
    """The chat messages of one speaking turn (or, with `scoring`, of one role's final scores)."""
    debate = setting.debate
    role = debate.roles[role_index]
    system = _render("system.j2", role=role, description=debate.description(role_index))
    # Earlier speeches are model output that quoted the answers: escape markers in them as well.
    history = [{"role": t.role, "text": neutralize(t.text)} for t in turns]
    user = _render(
        "score.j2" if scoring else "speak.j2",
        material=material,
        turns=history,
        role=role,
        structured=setting.structured,
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def build_debate_graph(setting: JudgeSetting) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The debate over one orientation: speak x (roles x rounds), then every role scores, then decide."""
    roles = setting.debate.roles
    speeches = len(roles) * setting.debate.rounds

    async def speak(state: DebateState, runtime: Runtime[JudgeContext]) -> dict[str, Any]:
        index = len(state.get("turns", []))
        role_index = index % len(roles)
        target = resolve_model(runtime.context.gateway, setting.models[0], setting.api_base)
        messages = debate_messages(
            setting, role_index, state["material"], state.get("turns", []), scoring=False
        )
        try:
            completion = await runtime.context.gateway.complete(
                target.model, messages, tag=runtime.context.tag, role=target.label
            )
        except LLMError as exc:
            # A debate cannot go on with a missing speech.
            return {"failed": error_reason(exc), "stopped": stop_of(exc)}
        return {"turns": [Turn(roles[role_index], completion.text, Usage.of([completion]))]}

    async def after_speech(state: DebateState) -> str | list[Send]:
        if state.get("failed"):
            return "decide"
        if len(state["turns"]) < speeches:
            return "speak"
        return [
            Send("score", {"material": state["material"], "turns": state["turns"], "role_index": i})
            for i in range(len(roles))
        ]

    async def score(payload: ScoreTask, runtime: Runtime[JudgeContext]) -> dict[str, Any]:
        target = resolve_model(runtime.context.gateway, setting.models[0], setting.api_base)
        messages = debate_messages(
            setting, payload["role_index"], payload["material"], payload["turns"], scoring=True
        )
        asked = await ask(
            runtime.context.gateway,
            target,
            messages,
            protocol="combined",
            scale=SCALE,
            structured=setting.structured,
            tag=runtime.context.tag,
        )
        return {"scores": [RoleScore(roles[payload["role_index"]], asked)]}

    async def decide(state: DebateState) -> dict[str, Any]:
        return {
            "result": decide_debate(
                setting,
                state.get("turns", []),
                state.get("scores", []),
                state.get("failed"),
                state.get("stopped"),
            )
        }

    graph = StateGraph(DebateState, context_schema=JudgeContext)
    graph.add_node("speak", speak)
    # langgraph's stubs type a node's input as the graph's state; `score` gets a `Send` payload instead.
    graph.add_node("score", score)  # type: ignore[call-overload]
    graph.add_node("decide", decide)
    graph.add_edge(START, "speak")
    graph.add_conditional_edges("speak", after_speech, ["speak", "score", "decide"])
    graph.add_edge("score", "decide")
    graph.add_edge("decide", END)
    return graph.compile()


def decide_debate(
    setting: JudgeSetting,
    turns: list[Turn],
    scores: list[RoleScore],
    failed: str | None,
    stopped: Stop | None = None,
) -> Outcome:
    """The debate's outcome (in the orientation shown): compare the mean scores over the roles.

    Roles whose scores could not be read are left out; if none remains the debate is unscored.
    """
    order = {role: i for i, role in enumerate(setting.debate.roles)}
    scores = sorted(scores, key=lambda s: order[s.role])  # concurrent scorers finish in any order
    base = Outcome(
        raws=tuple(t.text for t in turns) + tuple(raw for s in scores for raw in s.asked.raws),
        usage=Usage.total([*(t.usage for t in turns), *(s.asked.usage for s in scores)]),
        models=(setting.models[0],),
        scale=SCALE,
    )
    if failed is not None:
        return replace(base, reason=failed, stop=stopped)
    stop = next((s.asked for s in scores if s.asked.stop is not None), None)
    if stop is not None:
        return replace(base, reason=stop.parsed.unscored_reason, stop=stop.stop)
    readable = [
        s.asked.parsed
        for s in scores
        if s.asked.parsed.score_a is not None and s.asked.parsed.score_b is not None
    ]
    if not readable:
        reasons = "; ".join(unique(f"{s.role}: {s.asked.parsed.unscored_reason}" for s in scores))
        return replace(base, reason=f"all_roles_unscored: {reasons}")
    mean_a = sum(p.score_a for p in readable) / len(readable)  # type: ignore[misc]
    mean_b = sum(p.score_b for p in readable) / len(readable)  # type: ignore[misc]
    verdict = verdict_from_scores(round(mean_a, 9), round(mean_b, 9))
    return replace(base, verdict=verdict, score_a=mean_a, score_b=mean_b)
