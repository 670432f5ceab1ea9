"""Candidate rows: one generated answer with everything needed to trace and dedupe it.

A row is one response of one workflow to one prompt: a single agent's sample, or one step of the
feedback loop (step 0 = first answer, step k = k-th revision). The columns follow the
`candidates` table of docs/architecture.md, plus the loop's review fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from factory.llm import Completion
from factory.records import Candidate


def content_hash(text: str) -> str:
    """sha256 of the whitespace-normalized text: equal answers from different workflows collide.

    >>> content_hash("a  b\\n") == content_hash("a b")
    True
    """
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def candidate_id(prompt_id: str, workflow: str, role: str, sample: int, step: int) -> str:
    """Stable id: the same build spec gives the same ids, so resumed and rerun tables line up."""
    return f"{prompt_id}:{workflow}:{role}:s{sample}:t{step}"


def candidate_row(
    *,
    prompt_id: str,
    workflow: str,
    kind: str,
    role: str,
    step: int,
    sample: int,
    answers: Sequence[str],
    completions: Sequence[Completion],
    models: Sequence[str],
    history: Sequence[dict[str, Any]] = (),
    reviewer_scores: Sequence[float | None] = (),
    review_score: float | None = None,
    feedback: str | None = None,
    reviews: Sequence[str] = (),
) -> Candidate:
    """A candidate row. `answers` holds one reply per user turn; the last is what judges compare.

    `completions` are every call spent on this row (its generator calls and the reviews of it), so
    summing tokens and cost over a workflow's rows gives the workflow's spend.
    """
    text = answers[-1]
    own = [c for c in completions if c.role == role]
    model = own[0].model if own else ""
    final = next((c for c in reversed(own) if c.text == text), None)  # the call that wrote `text`
    return {
        "candidate_id": candidate_id(prompt_id, workflow, role, sample, step),
        "prompt_id": prompt_id,
        "workflow": workflow,
        "kind": kind,
        "model": model,
        "role": role,
        "models": list(models),
        "step": step,
        "sample": sample,
        "text": text,
        "answers": list(answers),
        "history": list(history),
        "reviewer_scores": list(reviewer_scores),
        "review_score": review_score,
        "feedback": feedback,
        "reviews": list(reviews),
        "prompt_tokens": sum(c.prompt_tokens for c in completions),
        "completion_tokens": sum(c.completion_tokens for c in completions),
        "cost_usd": sum(c.cost_usd for c in completions),
        "cached_calls": sum(1 for c in completions if c.cached),
        # "length" means the final answer was cut at max_tokens: worth knowing before training on it.
        "finish_reason": final.finish_reason if final else None,
        "content_hash": content_hash(text),
        "duplicate_of": None,
    }


def mark_duplicates(rows: list[Candidate]) -> list[Candidate]:
    """Set `duplicate_of` on every row whose text equals an earlier row's (same prompt, any workflow).

    The first row with a given hash keeps `duplicate_of = None`; later ones name its candidate id,
    so judging can skip them and reports can count how often workflows converge on one answer.
    """
    first: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (row["prompt_id"], row["content_hash"])
        if key in first:
            row["duplicate_of"] = first[key]
        else:
            first[key] = row["candidate_id"]
            row["duplicate_of"] = None
    return rows
