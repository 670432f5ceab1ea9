"""Single-agent generation as a LangGraph graph: every generator role answers a prompt `samples` times.

The graph fans out one `Send` per (generator, sample); each branch answers the prompt's user turns
in order, every turn seeing the earlier turns and its own earlier answers (MT-Bench has two turns).
Branches run concurrently; the gateway bounds how many calls are in flight. The graph is compiled
once per process and the gateway reaches the nodes through LangGraph's runtime context, so one
compiled graph serves every build and test.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from factory.config import SingleAgentWorkflow
from factory.llm import Completion, Gateway
from factory.sources import Prompt
from factory.workflows.candidates import candidate_row

Message = dict[str, Any]


@dataclass(frozen=True)
class GatewayContext:
    """What graph nodes get injected: the build's gateway (never a global)."""

    gateway: Gateway


async def answer_turns(gateway: Gateway, role: str, turns: Sequence[str], *, sample: int, tag: str,
                       history: Sequence[Message] = ()) -> tuple[list[str], list[Completion], list[Message]]:
    """Answer each user turn in order after `history`; returns (answers, completions, full messages)."""
    messages: list[Message] = list(history)
    answers: list[str] = []
    completions: list[Completion] = []
    for turn in turns:
        messages.append({"role": "user", "content": turn})
        completion = await gateway.complete(role, list(messages), sample=sample, tag=tag)
        messages.append({"role": "assistant", "content": completion.text})
        answers.append(completion.text)
        completions.append(completion)
    return answers, completions, messages


class _State(TypedDict):
    prompt: Prompt
    workflow: SingleAgentWorkflow
    rows: Annotated[list[dict[str, Any]], operator.add]


@dataclass(frozen=True)
class _Job:
    """One branch of the fan-out: a generator role and its sample index."""

    prompt: Prompt
    workflow: SingleAgentWorkflow
    role: str
    sample: int


def _fan_out(state: _State) -> list[Send]:
    wf = state["workflow"]
    # One sample index per (generator, sample) across the workflow, so two roles that happen to
    # share a model spec still send different requests (different cache keys and seeds).
    return [Send("converse", _Job(state["prompt"], wf, role, g * wf.samples + s))
            for g, role in enumerate(wf.generators) for s in range(wf.samples)]


async def _converse(state: _Job, *, runtime: Runtime[GatewayContext]) -> dict[str, Any]:
    gateway = runtime.context.gateway
    job = state  # one branch's payload
    wf, prompt = job.workflow, job.prompt
    answers, completions, history = await answer_turns(gateway, job.role, prompt.turns, sample=job.sample, tag=wf.name)
    row = candidate_row(prompt_id=prompt.prompt_id, workflow=wf.name, kind=wf.kind, role=job.role, step=0,
                        sample=job.sample, answers=answers, completions=completions,
                        models=[gateway.spec(job.role).model], history=history)
    return {"rows": [row]}


@cache
def single_agent_graph() -> Any:
    """The compiled graph (built once). Input: `{"prompt", "workflow", "rows": []}`; context: `GatewayContext`."""
    builder = StateGraph(_State, context_schema=GatewayContext)
    builder.add_node("converse", _converse, input_schema=_Job)  # fed by Send payloads, not the graph state
    builder.add_conditional_edges(START, _fan_out, ["converse"])
    builder.add_edge("converse", END)
    return builder.compile()


async def run_single_agent(gateway: Gateway, workflow: SingleAgentWorkflow, prompt: Prompt) -> list[dict[str, Any]]:
    """Candidate rows of one prompt: one per (generator, sample), in config order."""
    state = await single_agent_graph().ainvoke({"prompt": prompt, "workflow": workflow, "rows": []},
                                               context=GatewayContext(gateway=gateway))
    return sorted(state["rows"], key=lambda r: r["sample"])
