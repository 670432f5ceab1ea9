"""Single-agent generation as a LangGraph graph: every generator role answers a prompt `samples` times.

The graph fans out one `Send` per (generator, sample); each branch answers the prompt's last user
turn after the shared earlier turns and answers of a multi-turn prompt (MT-Bench has two turns; the
earlier turns are answered once per prompt by `factory.workflows.generation`). Branches run concurrently; the gateway bounds how many calls are in flight. The graph is compiled
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
from factory.conversation import Message, prompt_messages
from factory.llm import Gateway
from factory.sources import Prompt
from factory.workflows.candidates import candidate_row


@dataclass(frozen=True)
class GatewayContext:
    """What graph nodes get injected: the build's gateway (never a global)."""

    gateway: Gateway


class _State(TypedDict):
    prompt: Prompt
    workflow: SingleAgentWorkflow
    earlier: tuple[str, ...]
    rows: Annotated[list[dict[str, Any]], operator.add]


@dataclass(frozen=True)
class _Job:
    """One branch of the fan-out: a generator role and its sample index."""

    prompt: Prompt
    workflow: SingleAgentWorkflow
    earlier: tuple[str, ...]
    role: str
    sample: int


def _fan_out(state: _State) -> list[Send]:
    wf = state["workflow"]
    # One sample index per (generator, sample) across the workflow, so two roles that happen to
    # share a model spec still send different requests (different cache keys and seeds).
    return [Send("converse", _Job(state["prompt"], wf, state["earlier"], role, g * wf.samples + s))
            for g, role in enumerate(wf.generators) for s in range(wf.samples)]


async def _converse(state: _Job, *, runtime: Runtime[GatewayContext]) -> dict[str, Any]:
    gateway = runtime.context.gateway
    job = state  # one branch's payload
    wf, prompt = job.workflow, job.prompt
    messages = prompt_messages(prompt.turns, job.earlier)
    completion = await gateway.complete(job.role, messages, sample=job.sample, tag=wf.name)
    history: list[Message] = [*messages, {"role": "assistant", "content": completion.text}]
    row = candidate_row(prompt_id=prompt.prompt_id, workflow=wf.name, kind=wf.kind, role=job.role, step=0,
                        sample=job.sample, answers=[*job.earlier, completion.text], completions=[completion],
                        models=[gateway.spec(job.role).model], history=history)
    return {"rows": [row]}


@cache
def single_agent_graph() -> Any:
    """The compiled graph (built once). Input: `{"prompt", "workflow", "earlier", "rows": []}`; context:
    `GatewayContext`."""
    builder = StateGraph(_State, context_schema=GatewayContext)
    builder.add_node("converse", _converse, input_schema=_Job)  # fed by Send payloads, not the graph state
    builder.add_conditional_edges(START, _fan_out, ["converse"])
    builder.add_edge("converse", END)
    return builder.compile()


async def run_single_agent(gateway: Gateway, workflow: SingleAgentWorkflow, prompt: Prompt,
                           earlier: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Candidate rows of one prompt: one per (generator, sample), in config order. `earlier` holds the
    shared answers to every user turn but the last (empty for a single-turn prompt)."""
    state = await single_agent_graph().ainvoke({"prompt": prompt, "workflow": workflow, "earlier": tuple(earlier),
                                                "rows": []},
                                               context=GatewayContext(gateway=gateway))
    return sorted(state["rows"], key=lambda r: r["sample"])
