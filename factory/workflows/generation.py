"""Candidate generation for one prompt, across the workflows a build's config selects.

Each workflow is its own compiled LangGraph graph (`single_agent`, `feedback_loop`); the build
streams prompts through `generate_candidates` with bounded concurrency (see
`factory.pipeline.stages.generate_stage`). Every gateway call is tagged with the workflow's name,
so the usage ledger (and the manifest's `llm.by_tag`) reports calls and tokens per workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from factory.config import FeedbackLoopWorkflow, SingleAgentWorkflow, Workflow
from factory.llm import Gateway
from factory.sources import Prompt
from factory.workflows.candidates import mark_duplicates
from factory.workflows.feedback_loop import run_feedback_loop
from factory.workflows.single_agent import run_single_agent


async def run_workflow(gateway: Gateway, workflow: Workflow, prompt: Prompt) -> list[dict[str, Any]]:
    """Candidate rows of one workflow for one prompt."""
    if isinstance(workflow, SingleAgentWorkflow):
        return await run_single_agent(gateway, workflow, prompt)
    if isinstance(workflow, FeedbackLoopWorkflow):
        return await run_feedback_loop(gateway, workflow, prompt)
    raise TypeError(f"unknown workflow kind: {type(workflow).__name__}")


async def generate_candidates(gateway: Gateway, workflows: Sequence[Workflow], prompt: Prompt) -> list[dict[str, Any]]:
    """Every candidate of every configured workflow for one prompt, in config order.

    Workflows run concurrently (the gateway bounds the calls). Rows whose text equals an earlier
    row's, in this or another workflow, get `duplicate_of` set to that row's candidate id.
    Raises the first `LLMError` of any workflow (the stage records the prompt as a failure).
    """
    results = await asyncio.gather(*(run_workflow(gateway, wf, prompt) for wf in workflows))
    return mark_duplicates([row for rows in results for row in rows])
