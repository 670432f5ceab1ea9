"""The generator-reviewer feedback loop of the Fellowship paper (arXiv 2408.08688) as a LangGraph graph.

    answer -> review -> answer (revision) -> review -> ... -> answer      (n_responses answers)

The generator answers; each reviewer returns `### Evaluation:`, `### Overall Score: X/10` and
`### Feedback:`; the generator revises with the feedback. Both sides keep their chat histories as
in the paper: the generator's conversation holds the prompt, its answers and the feedback messages;
each reviewer's conversation holds its earlier reviews of the earlier versions. Two reviewers review
concurrently and their feedback is combined (sections concatenated, score = mean of parsed scores).
The loop stops after `n_responses` answers, or early once the combined score reaches `stop_score`.
A review whose score cannot be parsed scores None; the loop goes on with its text as feedback.

A multi-turn prompt's earlier turns come answered (the shared history of every workflow, see
`factory.workflows.generation`); the loop works on the last turn, and reviewers see the earlier turns.

Only responses that will be revised are reviewed (the paper's 3 responses take 2 reviews), unless
`review_last` asks for a score on the final one too. Every response becomes a candidate row (step
0..N-1) carrying its reviews, scores and the generator history that produced it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from statistics import mean
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from factory._util.templates import render_template
from factory.config import FeedbackLoopWorkflow
from factory.inputs.conversation import Message, prompt_messages
from factory.inputs.prompt_sources import Prompt
from factory.llm import Completion, Gateway
from factory.records import Candidate
from factory.workflows.candidates import candidate_row
from factory.workflows.single_agent import GatewayContext
from judges.protocols import neutralize, parse_single_score

# A section header of the review: `### Feedback:`, `## **Overall Score**:`...
_PROMPTS = Path(__file__).parent / "prompts"
_SECTION = re.compile(
    r"^[ \t]*#{2,6}[ \t]*[*_]*[ \t]*(evaluation|overall[ \t]+score|feedback)\b[ \t]*[*_]*[ \t]*:?[*_]*",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Review:
    """One parsed review. `score` is None when no `Overall Score: X/10` could be read."""

    raw: str
    score: float | None
    evaluation: str | None
    feedback: str
    unscored_reason: str | None


def parse_review(text: str) -> Review:
    """Split a review into its sections; a missing `### Feedback:` section makes the whole text the feedback.

    >>> parse_review("### Evaluation: thin\\n### Overall Score: 4/10\\n### Feedback: add an example").score
    4.0
    """
    sections: dict[str, str] = {}
    headers = list(_SECTION.finditer(text))
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        name = " ".join(header.group(1).lower().split())
        sections.setdefault(name, text[header.end() : end].strip())
    parsed = parse_single_score(text, 10)
    feedback = sections.get("feedback") or text.strip()
    return Review(
        raw=text,
        score=parsed.score,
        evaluation=sections.get("evaluation"),
        feedback=feedback,
        unscored_reason=parsed.unscored_reason,
    )


def combine_reviews(reviews: list[Review]) -> tuple[float | None, str]:
    """Combined score (mean of the parsed scores, None if none parsed) and combined feedback text."""
    scores = [r.score for r in reviews if r.score is not None]
    if len(reviews) == 1:
        return (scores[0] if scores else None), reviews[0].feedback
    feedback = "\n\n".join(f"Reviewer {i + 1}:\n{r.feedback}" for i, r in enumerate(reviews) if r.feedback)
    return (mean(scores) if scores else None), feedback


def render(template: str, **values: Any) -> str:
    """A prompt from `factory/workflows/prompts/<template>`."""
    return render_template(_PROMPTS, template, **values)


@dataclass
class _Step:
    text: str
    history: list[Message]
    completions: list[Completion]
    reviews: list[Review] = field(default_factory=list)
    score: float | None = None
    feedback: str | None = None


class _State(TypedDict):
    prompt: Prompt
    workflow: FeedbackLoopWorkflow
    generator_messages: list[Message]
    reviewer_messages: list[list[Message]]
    earlier_answers: list[str]
    steps: list[_Step]


async def _answer(state: _State, *, runtime: Runtime[GatewayContext]) -> dict[str, Any]:
    """First answer to the last turn (after the shared earlier turns), or a revision with the last feedback."""
    gateway, wf, prompt, steps = runtime.context.gateway, state["workflow"], state["prompt"], state["steps"]
    if not steps:
        messages = prompt_messages(prompt.turns, state["earlier_answers"])
    else:
        messages = [
            *state["generator_messages"],
            {"role": "user", "content": render("reviser.j2", feedback=steps[-1].feedback)},
        ]
    completion = await gateway.complete(wf.generator, messages, tag=wf.name)
    messages = [*messages, {"role": "assistant", "content": completion.text}]
    step = _Step(text=completion.text, history=messages, completions=[completion])
    return {"generator_messages": messages, "steps": [*steps, step]}


async def _review(state: _State, *, runtime: Runtime[GatewayContext]) -> dict[str, Any]:
    """Every reviewer reviews the latest response in its own ongoing conversation, concurrently."""
    gateway, wf, prompt = runtime.context.gateway, state["workflow"], state["prompt"]
    latest = state["steps"][-1]

    async def one(index: int, role: str) -> tuple[list[Message], Completion]:
        prior = state["reviewer_messages"][index]
        if prior:
            content = render("reviewer_next.j2", response=neutralize(latest.text))
        else:
            earlier = [
                (neutralize(q), neutralize(a)) for q, a in zip(prompt.turns[:-1], state["earlier_answers"])
            ]
            content = render(
                "reviewer.j2",
                earlier=earlier,
                question=neutralize(prompt.turns[-1]),
                response=neutralize(latest.text),
            )
        messages = [*prior, {"role": "user", "content": content}]
        # A distinct sample per reviewer slot: two slots naming one role still get two reviews.
        completion = await gateway.complete(role, messages, sample=index, tag=wf.name)
        return [*messages, {"role": "assistant", "content": completion.text}], completion

    results = await asyncio.gather(*(one(i, role) for i, role in enumerate(wf.reviewers)))
    reviews = [parse_review(c.text) for _, c in results]
    score, feedback = combine_reviews(reviews)
    step = _Step(
        text=latest.text,
        history=latest.history,
        completions=[*latest.completions, *(c for _, c in results)],
        reviews=reviews,
        score=score,
        feedback=feedback,
    )
    return {"reviewer_messages": [m for m, _ in results], "steps": [*state["steps"][:-1], step]}


def _after_answer(state: _State) -> str:
    wf = state["workflow"]
    if len(state["steps"]) >= wf.n_responses and not wf.review_last:
        return END
    return "review"


def _after_review(state: _State) -> str:
    wf, last = state["workflow"], state["steps"][-1]
    if len(state["steps"]) >= wf.n_responses:
        return END
    if wf.stop_score is not None and last.score is not None and last.score >= wf.stop_score:
        return END
    return "answer"


@cache
def feedback_loop_graph() -> Any:
    """The compiled loop (built once); context: `GatewayContext`. The conditional edges make the loop."""
    builder = StateGraph(_State, context_schema=GatewayContext)
    builder.add_node("answer", _answer)
    builder.add_node("review", _review)
    builder.add_edge(START, "answer")
    builder.add_conditional_edges("answer", _after_answer, ["review", END])
    builder.add_conditional_edges("review", _after_review, ["answer", END])
    return builder.compile()


async def run_feedback_loop(
    gateway: Gateway, workflow: FeedbackLoopWorkflow, prompt: Prompt, earlier: Sequence[str] = ()
) -> list[Candidate]:
    """Candidate rows of one prompt: one per response, step 0 (first answer) to the last revision.
    `earlier` holds the shared answers to every user turn but the last (empty for a single-turn prompt)."""
    start: _State = {
        "prompt": prompt,
        "workflow": workflow,
        "generator_messages": [],
        "reviewer_messages": [[] for _ in workflow.reviewers],
        "earlier_answers": list(earlier),
        "steps": [],
    }
    state = await feedback_loop_graph().ainvoke(
        start, {"recursion_limit": 4 * workflow.n_responses + 8}, context=GatewayContext(gateway=gateway)
    )
    models = [gateway.spec(workflow.generator).model, *(gateway.spec(r).model for r in workflow.reviewers)]
    return [
        candidate_row(
            prompt_id=prompt.prompt_id,
            workflow=workflow.name,
            kind=workflow.kind,
            role=workflow.generator,
            step=k,
            sample=0,
            answers=[*state["earlier_answers"], step.text],
            completions=step.completions,
            models=models,
            history=step.history,
            reviewer_scores=[r.score for r in step.reviews],
            review_score=step.score,
            feedback=step.feedback,
            reviews=[r.raw for r in step.reviews],
        )
        for k, step in enumerate(state["steps"])
    ]
