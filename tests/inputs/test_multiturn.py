"""Multi-turn prompts end to end: every candidate answers the last turn after one shared history, the
judge sees the whole conversation, and the rows are TRL conversations that alternate user/assistant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory.config import parse_config
from factory.pipeline import BuildResult, run_build
from factory.testing import FakeLLMServer

TURNS = {
    "mt1": ["Write a haiku about rain.", "Rewrite your previous answer so that every line rhymes."],
    "mt2": ["Explain what a prime number is.", "Now shorten your previous answer to one sentence."],
    "mt3": ["Describe a lighthouse at night.", "Rewrite your previous answer for a five-year-old."],
    "mt4": ["List three uses of vinegar.", "Turn your previous answer into a short poem."],
}
# Mistral / Llama-2 style: a chat template that refuses anything but user/assistant/user/...
STRICT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildResult, list[dict[str, Any]]]:
    """A whole build of two-turn prompts (single agent x 2 samples and a feedback loop) and its requests."""
    root = tmp_path_factory.mktemp("multiturn")
    prompts = root / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"question_id": pid, "turns": turns}) + "\n" for pid, turns in TURNS.items())
    )
    with FakeLLMServer() as server:
        spec = {"model": "openai/fake", "api_base": server.base_url}
        config = parse_config(
            {
                "run": {"name": "mt", "output_dir": str(root / "out"), "shard_size": 2},
                "models": {
                    "generator": spec,
                    "reviser": {**spec, "model": "openai/reviser"},
                    "reviewer": {**spec, "model": "openai/reviewer"},
                    "judge": {**spec, "model": "openai/judge"},
                    "rationale_writer": spec,
                },
                "prompts": {"path": str(prompts)},
                "gate": {"enabled": False},
                "generation": {
                    "workflows": [
                        {"kind": "single", "samples": 2},
                        {"kind": "feedback_loop", "generator": "reviser", "n_responses": 2},
                    ]
                },
                "dataset": {"test_fraction": 0.25},
            }
        )
        result = run_build(config)
        requests = server.requests
    return result, requests


def _parquet(run_dir: Path, name: str) -> list[dict[str, Any]]:
    return [
        row
        for path in sorted((run_dir / "dataset" / name).glob("*.parquet"))
        for row in pl.read_parquet(path).to_dicts()
    ]


def test_every_candidate_answers_the_last_turn_after_the_shared_first_answer(
    build: tuple[BuildResult, list],
) -> None:
    result, requests = build
    candidates = pl.read_parquet(result.run_dir / "candidates.parquet").to_dicts()
    assert {c["prompt_id"] for c in candidates} == set(TURNS)
    for pid, (first, second) in TURNS.items():
        rows = [c for c in candidates if c["prompt_id"] == pid]
        shared = json.loads(rows[0]["answers"])[0]
        prompt = [
            {"role": "user", "content": first},
            {"role": "assistant", "content": shared},
            {"role": "user", "content": second},
        ]
        for row in rows:
            assert json.loads(row["answers"]) == [shared, row["text"]]
            assert json.loads(row["history"])[:3] == prompt
        # The first turn went out once; each candidate's second-turn request holds the first answer.
        assert sum(r["messages"] == prompt[:1] for r in requests) == 1
        second_turn = [r for r in requests if r["messages"] == prompt]
        assert len(second_turn) == 3  # 2 single-agent samples + the loop's first answer
        assert {r["model"] for r in second_turn} == {"fake", "reviser"}


def test_the_judge_sees_both_turns_and_both_answers(build: tuple[BuildResult, list]) -> None:
    result, requests = build
    candidates = {
        c["candidate_id"]: c for c in pl.read_parquet(result.run_dir / "candidates.parquet").to_dicts()
    }
    judgments = pl.read_parquet(result.run_dir / "judgments.parquet").to_dicts()
    judge_prompts = [r["messages"] for r in requests if r["model"] == "judge"]
    assert judgments and judge_prompts
    for judgment in judgments:
        a, b = candidates[judgment["candidate_a"]], candidates[judgment["candidate_b"]]
        first, second = TURNS[judgment["prompt_id"]]
        shared = json.loads(a["answers"])[0]
        shown = [m for m in judge_prompts if a["text"] in m[1]["content"] and b["text"] in m[1]["content"]]
        assert shown, judgment["item_id"]
        system, user = shown[0][0]["content"], shown[0][1]["content"]
        assert "focus on who provides a better answer to the final user question" in system
        assert first in user and shared in user and second in user
        assert user.index(first) < user.index(shared) < user.index(second) < user.index(a["text"])


def test_rows_are_conversations_with_the_earlier_answer_in_the_prompt(
    build: tuple[BuildResult, list],
) -> None:
    result, _ = build
    candidates = {
        c["candidate_id"]: c for c in pl.read_parquet(result.run_dir / "candidates.parquet").to_dicts()
    }
    pairs = {p["pair_id"]: p for p in pl.read_parquet(result.run_dir / "pairs.parquet").to_dicts()}
    dpo = _parquet(result.run_dir, "dpo")
    assert dpo and {r["source"] for r in dpo} == {"judged", "mapl_inter"}
    for row in dpo:
        assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]
        assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["prompt"][0]["content"] == TURNS[row["prompt_id"]][0]
        pair = pairs[row["pair_id"]]
        # The assistant turn is the answer both sides followed when they answered the last turn.
        for side in ("chosen_id", "rejected_id"):
            assert json.loads(candidates[pair[side]]["answers"])[0] == row["prompt"][1]["content"]
    kto = _parquet(result.run_dir, "kto")
    assert kto and all(
        [m["role"] for m in r["prompt"]] == ["user", "assistant", "user"]
        and [m["role"] for m in r["completion"]] == ["assistant"]
        for r in kto
    )
    intra = _parquet(result.run_dir, "mapl_intra")
    assert intra and all(
        [m["role"] for m in r[col]] == ["user", "assistant", "user"]
        for r in intra
        for col in ("prompt_chosen", "prompt_rejected")
    )


def test_dpo_trainer_accepts_the_rows_under_a_strict_alternation_template(
    build: tuple[BuildResult, list], tmp_path: Path
) -> None:
    from datasets import load_dataset  # type: ignore[import-untyped]
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from factory.release.train.trainer import build_tiny_model

    result, _ = build
    model_path = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.chat_template = STRICT_TEMPLATE
    with pytest.raises(Exception, match="must alternate"):  # the template is as strict as Mistral's
        tokenizer.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    files = [str(p) for p in (result.run_dir / "dataset" / "dpo").glob("*.parquet")]
    data = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    args = DPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        max_length=1024,
    )
    trainer = DPOTrainer(model=str(model_path), args=args, train_dataset=data, processing_class=tokenizer)
    assert trainer.train().global_step == 1
