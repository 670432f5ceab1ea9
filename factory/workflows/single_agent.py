"""Single-agent generation: every generator role answers a prompt `samples` times.

One branch per (generator, sample); each answers the prompt's last user turn after the shared
earlier turns and answers of a multi-turn prompt (MT-Bench has two turns; the earlier turns are
answered once per prompt by `factory.workflows.generation`). Branches run concurrently; the gateway
bounds how many calls are in flight; the first failure cancels the other branches.

This is a plain fan-out, not a LangGraph graph: the graph had no structure beyond the fan-out (one
`Send` per branch, then END) and its per-invocation bookkeeping (checkpoints, channels, callbacks)
cost more CPU than the model call itself on the lean transport (docs/benchmarks.md). Workflows with
real structure (the feedback loop, debates, juries) stay graphs; `GatewayContext` is their context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from factory._util.concurrency import gather_or_cancel
from factory.config import SingleAgentWorkflow
from factory.inputs.conversation import Message, prompt_messages
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway
from factory.records import Candidate
from factory.workflows.candidates import candidate_row


@dataclass(frozen=True)
class GatewayContext:
    """What graph nodes get injected: the build's gateway (never a global)."""

    gateway: Gateway


@dataclass(frozen=True)
class _Job:
    """One branch of the fan-out: a generator role and its sample index."""

    prompt: Prompt
    workflow: SingleAgentWorkflow
    earlier: tuple[str, ...]
    role: str
    sample: int


def _jobs(workflow: SingleAgentWorkflow, prompt: Prompt, earlier: tuple[str, ...]) -> list[_Job]:
    # One sample index per (generator, sample) across the workflow, so two roles that happen to
    # share a model spec still send different requests (different cache keys and seeds).
    return [
        _Job(prompt, workflow, earlier, role, g * workflow.samples + s)
        for g, role in enumerate(workflow.generators)
        for s in range(workflow.samples)
    ]


async def _converse(gateway: Gateway, job: _Job) -> Candidate:
    wf, prompt = job.workflow, job.prompt
    messages = prompt_messages(prompt.turns, job.earlier)
    completion = await gateway.complete(job.role, messages, sample=job.sample, tag=wf.name)
    history: list[Message] = [*messages, {"role": "assistant", "content": completion.text}]
    row = candidate_row(
        prompt_id=prompt.prompt_id,
        workflow=wf.name,
        kind=wf.kind,
        role=job.role,
        step=0,
        sample=job.sample,
        answers=[*job.earlier, completion.text],
        completions=[completion],
        models=[gateway.spec(job.role).model],
        history=history,
    )
    return row


async def run_single_agent(
    gateway: Gateway, workflow: SingleAgentWorkflow, prompt: Prompt, earlier: Sequence[str] = ()
) -> list[Candidate]:
    """Candidate rows of one prompt: one per (generator, sample), in config order. `earlier` holds the
    shared answers to every user turn but the last (empty for a single-turn prompt)."""
    rows = await gather_or_cancel(_converse(gateway, job) for job in _jobs(workflow, prompt, tuple(earlier)))
    return sorted(rows, key=lambda r: r["sample"])
