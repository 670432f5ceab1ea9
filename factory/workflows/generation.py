"""Candidate generation for one prompt, across the workflows a build's config selects.

Each workflow is its own compiled LangGraph graph (`single_agent`, `feedback_loop`); the build
streams prompts through `generate_candidates` with bounded concurrency (see
`factory.pipeline.stages.per_prompt.generate_stage`). Every gateway call is tagged with the workflow's name,
so the usage ledger (and the manifest's `llm.by_tag`) reports calls and tokens per workflow.

Multi-turn prompts: the turns before the last are answered once, by the first workflow's first
generator (sample 0, tag `earlier_turns`), and every workflow answers the last turn after that
shared history. Candidates then differ only in their last answer, which is what a DPO row (one
shared prompt, two completions) can hold; see `factory.inputs.conversation`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from factory.config import FeedbackLoopWorkflow, SingleAgentWorkflow, Workflow
from factory.inputs.conversation import Message, earlier_turns_role
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway
from factory.records import Candidate
from factory.workflows.candidates import mark_duplicates
from factory.workflows.single_agent import run_single_agent

EARLIER_TURNS_TAG = "earlier_turns"


async def answer_earlier_turns(gateway: Gateway, role: str, prompt: Prompt) -> list[str]:
    """`role`'s answers to every user turn but the last, each turn seeing the earlier ones ([] for one turn)."""
    messages: list[Message] = []
    answers: list[str] = []
    for turn in prompt.turns[:-1]:
        messages.append({"role": "user", "content": turn})
        completion = await gateway.complete(role, list(messages), sample=0, tag=EARLIER_TURNS_TAG)
        messages.append({"role": "assistant", "content": completion.text})
        answers.append(completion.text)
    return answers


async def run_workflow(
    gateway: Gateway, workflow: Workflow, prompt: Prompt, earlier: Sequence[str]
) -> list[Candidate]:
    """Candidate rows of one workflow for one prompt, answering its last turn after `earlier`."""
    if isinstance(workflow, SingleAgentWorkflow):
        return await run_single_agent(gateway, workflow, prompt, earlier)
    if isinstance(workflow, FeedbackLoopWorkflow):
        # Imported when used: the loop is a LangGraph graph, and LangGraph takes a second to import.
        from factory.workflows.feedback_loop import run_feedback_loop

        return await run_feedback_loop(gateway, workflow, prompt, earlier)
    raise TypeError(f"unknown workflow kind: {type(workflow).__name__}")


async def generate_candidates(
    gateway: Gateway, workflows: Sequence[Workflow], prompt: Prompt
) -> list[Candidate]:
    """Every candidate of every configured workflow for one prompt, in config order.

    Workflows run concurrently (the gateway bounds the calls), after the shared earlier turns of a
    multi-turn prompt. Rows whose text equals an earlier row's, in this or another workflow, get
    `duplicate_of` set to that row's candidate id.
    Raises the first `LLMError` of any workflow (the stage records the prompt as a failure).
    """
    earlier = await answer_earlier_turns(gateway, earlier_turns_role(workflows), prompt)
    results = await asyncio.gather(*(run_workflow(gateway, wf, prompt, earlier) for wf in workflows))
    return mark_duplicates([row for rows in results for row in rows])
