"""A feedback-loop build on the embedded SmolLM2 model: it completes and reports calls per workflow."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from factory.config import parse_config
from factory.pipeline import run_build

pytestmark = pytest.mark.embedded

QUESTIONS = [
    "Give two tips for writing clear commit messages.",
    "Explain in two sentences why the sky looks blue.",
    "What is the difference between a list and a tuple in Python?",
    "Suggest a name for a small bakery.",
    "Why do cats purr?",
    "Write one sentence about the moon.",
    "How do I boil an egg?",
    "What is a prime number?",
    "Name three uses of a paperclip.",
    "Why is exercise good for you?",
]


def test_feedback_loop_build_on_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"e{i}", "prompt": q}) + "\n" for i, q in enumerate(QUESTIONS))
    )
    # A generous per-call timeout: on a busy 2-core machine a call can take minutes, and a timed-out
    # local call keeps the model's single worker busy while its retry queues behind it.
    local = {"model": "local/smollm2", "seed": 3, "timeout_s": 900}
    config = parse_config(
        {
            "run": {
                "name": "fl-embedded",
                "output_dir": str(tmp_path / "out"),
                "shard_size": 5,
                "concurrency": 4,
            },
            "models": {
                "generator": {**local, "temperature": 0.8, "max_tokens": 48},
                "reviewer": {**local, "temperature": 0.2, "max_tokens": 64},
                "judge": {**local, "temperature": 0.0, "max_tokens": 96},
            },
            "prompts": {"path": str(prompts)},
            "generation": {
                "workflows": [
                    {
                        "kind": "feedback_loop",
                        "name": "loop",
                        "generator": "generator",
                        "reviewers": ["reviewer"],
                        "n_responses": 2,
                    }
                ]
            },
            "judging": {"setting": {"models": ["judge"], "protocol": "combined", "structured": True}},
            "rationales": {"enabled": False},
            "variants": {"enabled": False},
            "gate": {"enabled": False},
        }
    )
    result = run_build(config)
    manifest = result.manifest
    assert manifest["status"] == "complete" and manifest["counts"]["prompts"] == 10
    by_tag = manifest["llm"]["by_tag"]
    # Per prompt the loop answers, is reviewed once and revises; the judge's calls carry its own tag.
    assert by_tag["loop"]["calls"] + by_tag["loop"]["cache_hits"] == 10 * 3
    judge_tag = config.judging.setting.setting_id
    assert by_tag[judge_tag]["calls"] + by_tag[judge_tag]["cache_hits"] >= 1
    assert by_tag["loop"]["completion_tokens"] > 0
    candidates = pl.read_parquet(result.run_dir / "candidates.parquet")
    loop = candidates.filter(pl.col("workflow") == "loop")
    assert loop.height == 20 and sorted(set(loop["step"].to_list())) == [0, 1]
    # Every first answer carries its review, parsed or not, and the revision its generator history.
    first = loop.filter(pl.col("step") == 0)
    assert all(len(json.loads(r)) == 1 for r in first["reviews"].to_list())
    assert all(len(json.loads(h)) == 4 for h in loop.filter(pl.col("step") == 1)["history"].to_list())
    print(
        "by_tag calls:",
        {tag: (v["calls"], v["cache_hits"]) for tag, v in by_tag.items()},
        "review scores parsed:",
        sum(s is not None for s in first["review_score"].to_list()),
        "of 10",
    )
