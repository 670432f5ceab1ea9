"""Candidate generation for one prompt, across the configured workflows."""

from __future__ import annotations

from typing import Any

from factory.config import SingleAgentWorkflow, Workflow
from factory.llm import Completion, Gateway
from factory.sources import Prompt
from factory.workflows.candidates import candidate_row


async def _answer_turns(gateway: Gateway, role: str, prompt: Prompt, sample: int, tag: str
                        ) -> tuple[list[str], list[Completion], list[dict[str, Any]]]:
    """Answer every user turn in order, each turn seeing the earlier turns and answers."""
    messages: list[dict[str, Any]] = []
    answers: list[str] = []
    completions: list[Completion] = []
    for turn in prompt.turns:
        messages.append({"role": "user", "content": turn})
        completion = await gateway.complete(role, messages, sample=sample, tag=tag)
        messages.append({"role": "assistant", "content": completion.text})
        answers.append(completion.text)
        completions.append(completion)
    return answers, completions, messages


async def single_agent(gateway: Gateway, workflow: SingleAgentWorkflow, prompt: Prompt) -> list[dict[str, Any]]:
    rows = []
    for g_index, role in enumerate(workflow.generators):
        for s in range(workflow.samples):
            sample = g_index * workflow.samples + s
            answers, completions, history = await _answer_turns(gateway, role, prompt, s, workflow.name)
            rows.append(candidate_row(prompt_id=prompt.prompt_id, workflow=workflow.name, step=0, sample=sample,
                                      answers=answers, completions=completions, history=history))
    return rows


async def generate_candidates(gateway: Gateway, workflows: tuple[Workflow, ...], prompt: Prompt
                              ) -> list[dict[str, Any]]:
    """Every candidate answer of every configured workflow for one prompt."""
    rows: list[dict[str, Any]] = []
    for workflow in workflows:
        if isinstance(workflow, SingleAgentWorkflow):
            rows += await single_agent(gateway, workflow, prompt)
        else:
            raise NotImplementedError("feedback_loop workflow")
    return rows
