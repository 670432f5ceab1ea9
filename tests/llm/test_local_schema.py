"""The JSON schema handed to llama.cpp's grammar: bounded scores become enums (no model needed)."""

from __future__ import annotations

import json

import pytest

from factory.llm.local import grammar_friendly
from judges.protocols import schema_for


@pytest.mark.parametrize(
    ("protocol", "scale"), [("combined", 10), ("combined", 5), ("combined", 100), ("independent", 10)]
)
def test_judge_scores_become_the_whole_values_of_their_scale(protocol: str, scale: int) -> None:
    schema = grammar_friendly(schema_for(protocol, scale).model_json_schema())
    scores = {name: prop for name, prop in schema["properties"].items() if name.startswith("score")}
    assert scores
    for prop in scores.values():
        assert prop["enum"] == list(range(scale + 1)) and "type" not in prop and "maximum" not in prop
    # Everything else is untouched: the evidence string keeps its bound, the verdict its letters.
    assert schema["properties"]["evidence"]["maxLength"] == 400
    assert schema["required"] == schema_for(protocol, scale).model_json_schema()["required"]


def test_unbounded_or_wide_numbers_are_left_alone() -> None:
    loose = {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "y": {"type": "number", "minimum": 0},
            "z": {"type": "integer", "minimum": 0, "maximum": 1000},
        },
    }
    assert grammar_friendly(loose) == loose


def test_a_grammar_compiles_from_the_converted_schema() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    schema = grammar_friendly(schema_for("combined", 10).model_json_schema())
    assert llama_grammar.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False) is not None
