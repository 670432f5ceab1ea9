"""Structured-output variants of the judge protocols: pydantic models the gateway turns into JSON schemas.

The bounds live in the schema so that a provider that enforces JSON schemas cannot return a score off
the scale, and so that our own validation rejects one from a provider that does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from judges.protocols._parsers import (
    INVALID_STRUCTURED,
    INVALID_VERDICT,
    SCORE_OUT_OF_RANGE,
    Parsed,
    verdict_from_scores,
)
from judges.protocols._prompts import DEFAULT_SCALE, PROTOCOLS, SCALES, Protocol

# extra="forbid" also puts additionalProperties: false in the schema, which strict JSON modes require.
_CONFIG = ConfigDict(extra="forbid", frozen=True)
# A bound on the explanation keeps a grammar-constrained small model from running out of tokens
# mid-string (an unclosed JSON object is unscored); 400 characters is a short paragraph.
EVIDENCE_MAX_CHARS = 400


class DirectVerdict(BaseModel):
    """Direct comparison: the explanation, then A, B or C (tie)."""

    model_config = _CONFIG

    evidence: str = Field(
        max_length=EVIDENCE_MAX_CHARS, description="Your explanation comparing the two answers."
    )
    answer: Literal["A", "B", "C"] = Field(
        description="A if assistant A is better, B if B is better, C for a tie."
    )


class SingleScore(BaseModel):
    """Independent scoring: the explanation, then one score out of 10."""

    model_config = _CONFIG

    evidence: str = Field(
        max_length=EVIDENCE_MAX_CHARS, description="Your explanation of the answer's quality."
    )
    score: float = Field(ge=0, le=10, description="The answer's score from 1 to 10; higher is better.")


class CombinedScores(BaseModel):
    """Combined scoring out of 10: the explanation, then a score for each assistant."""

    model_config = _CONFIG

    evidence: str = Field(
        max_length=EVIDENCE_MAX_CHARS, description="Your explanation comparing the two answers."
    )
    score_a: float = Field(ge=0, le=10, description="Assistant A's score from 1 to 10; higher is better.")
    score_b: float = Field(ge=0, le=10, description="Assistant B's score from 1 to 10; higher is better.")


def _bounded(scale: int, who: str) -> Any:
    return (float, Field(ge=0, le=scale, description=f"{who} score from 1 to {scale}; higher is better."))


@cache
def _single_model(scale: int) -> type[SingleScore]:
    if scale == 10:
        return SingleScore
    # A subclass keeps isinstance() and the field order; only the bounds change. Cached so each
    # scale has one class (and one schema name) per process.
    return create_model(
        f"SingleScoreOutOf{scale}", __base__=SingleScore, score=_bounded(scale, "The answer's")
    )


@cache
def _combined_model(scale: int) -> type[CombinedScores]:
    if scale == 10:
        return CombinedScores
    return create_model(
        f"CombinedScoresOutOf{scale}",
        __base__=CombinedScores,
        score_a=_bounded(scale, "Assistant A's"),
        score_b=_bounded(scale, "Assistant B's"),
    )


def schema_for(protocol: Protocol, scale: int = DEFAULT_SCALE) -> type[BaseModel]:
    """The pydantic model a structured judge reply must match, with bounds matching `scale`.

    >>> schema_for("combined", 5).model_json_schema()["properties"]["score_a"]["maximum"]
    5
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    if protocol == "direct":
        return DirectVerdict
    if protocol == "independent":
        return _single_model(scale)
    if protocol == "combined":
        return _combined_model(scale)
    raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")


def _reason(error: ValidationError) -> str:
    kinds = {e["type"] for e in error.errors()}
    if kinds & {"less_than_equal", "greater_than_equal"}:
        return SCORE_OUT_OF_RANGE
    if "literal_error" in kinds:
        return INVALID_VERDICT
    return INVALID_STRUCTURED


def verdict_from_structured(
    protocol: Protocol, obj: BaseModel | Mapping[str, Any], scale: int = DEFAULT_SCALE
) -> Parsed:
    """Turn a structured reply (a model instance or a plain dict) into a `Parsed`.

    The object is validated again against `schema_for(protocol, scale)`, so a dict from a provider
    that ignores schemas, or an instance built for another scale, is checked too. An invalid
    object gives an unscored `Parsed` with the reason, not an exception.

    >>> verdict_from_structured("combined", {"evidence": "...", "score_a": 4, "score_b": 4}).verdict
    'tie'
    """
    schema = schema_for(protocol, scale)
    data = obj.model_dump() if isinstance(obj, BaseModel) else dict(obj)
    try:
        parsed = schema.model_validate(data)
    except ValidationError as error:
        return Parsed(unscored_reason=_reason(error))
    if isinstance(parsed, DirectVerdict):
        return Parsed(verdict="tie" if parsed.answer == "C" else parsed.answer)
    if isinstance(parsed, SingleScore):
        return Parsed(score=parsed.score)
    assert isinstance(parsed, CombinedScores)
    return Parsed(
        verdict=verdict_from_scores(parsed.score_a, parsed.score_b),
        score_a=parsed.score_a,
        score_b=parsed.score_b,
    )
