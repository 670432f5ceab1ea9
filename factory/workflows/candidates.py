"""Candidate rows: one generated answer with everything needed to trace and dedupe it."""

from __future__ import annotations

import hashlib
from typing import Any

from factory.llm import Completion


def content_hash(text: str) -> str:
    """Hash of the whitespace-normalized text: equal answers from different workflows collide."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


def candidate_row(*, prompt_id: str, workflow: str, step: int, sample: int, answers: list[str],
                  completions: list[Completion], history: list[dict[str, Any]] | None = None,
                  reviewer_scores: list[float | None] | None = None, models: list[str] | None = None
                  ) -> dict[str, Any]:
    """A candidate; `answers` holds one reply per user turn, the last being what judges compare."""
    text = answers[-1]
    cid = f"{prompt_id}:{workflow}:s{sample}:t{step}"
    return {
        "candidate_id": cid,
        "prompt_id": prompt_id,
        "workflow": workflow,
        "step": step,
        "sample": sample,
        "model": completions[-1].model if completions else "",
        "role": completions[-1].role if completions else "",
        "models": models or sorted({c.model for c in completions}),
        "text": text,
        "answers": answers,
        "history": history or [],
        "reviewer_scores": reviewer_scores or [],
        "prompt_tokens": sum(c.prompt_tokens for c in completions),
        "completion_tokens": sum(c.completion_tokens for c in completions),
        "cost_usd": sum(c.cost_usd for c in completions),
        "content_hash": content_hash(text),
    }
