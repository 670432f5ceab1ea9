"""MAPL wiring of the build (factory.pipeline.stages.mapl_variants): verified rows from judged pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.config import parse_config
from factory.inputs.prompt_sources import Prompt
from factory.llm import Gateway
from factory.mapl import from_dict, reverify
from factory.pipeline.context import BuildContext
from factory.pipeline.stages.mapl_variants import mapl_variants
from factory.run.folder import RunFolder
from factory.testing import FakeLLMServer, Rule

CHOSEN = (
    "Tea is a drink made by steeping dried leaves in hot water.\n\n"
    "It is popular in many countries, and people often drink it with milk or lemon."
)
REJECTED = "TEA IS GOOD!"
PROMPTS = [Prompt("p1", ("Describe tea.",), "test"), Prompt("p2", ("Hi.", "Now describe tea."), "test")]


def pairs() -> list[dict[str, Any]]:
    return [
        {
            "pair_id": f"pair-{p.prompt_id}",
            "prompt_id": p.prompt_id,
            "prompt": "\n\n".join(p.turns),
            "turns": list(p.turns),
            "earlier_answers": ["Hello!"] * (len(p.turns) - 1),
            "chosen": CHOSEN,
            "rejected": REJECTED,
            "chosen_id": f"{p.prompt_id}:c1",
            "rejected_id": f"{p.prompt_id}:c2",
            "chosen_model": "m1",
            "rejected_model": "m2",
            "source": "judged",
            "judge_id": "judge[judge]/combined10/fixed",
        }
        for p in PROMPTS
    ]


def context(
    tmp_path: Path, seed: int = 0, base_url: str = "http://127.0.0.1:9/v1", **variants: Any
) -> BuildContext:
    spec = {"model": "openai/fake", "api_base": base_url}
    config = parse_config(
        {
            "run": {"seed": seed, "output_dir": str(tmp_path)},
            "models": {"generator": spec, "judge": spec, "rationale_writer": spec},
            "prompts": {"path": "unused.jsonl"},
            "variants": variants,
        }
    )
    return BuildContext(config=config, run=RunFolder.create(tmp_path, "t"), gateway=Gateway(config.models))


async def test_inter_and_intra_rows_carry_constraints_and_re_verify(tmp_path: Path) -> None:
    rows, failures = await mapl_variants(context(tmp_path), PROMPTS, pairs())
    assert failures == []
    inter = [r for r in rows if r["source"] == "mapl_inter"]
    intra = [r for r in rows if r["source"] == "mapl_intra"]
    assert len(inter) == 2 and len(intra) == 4  # one per pair; one per distinct answer
    assert all(reverify(r) for r in rows)
    for row in inter:
        constraints = [from_dict(c) for c in row["constraints"]]
        assert all(c.check(row["chosen"]) for c in constraints)
        assert not all(c.check(row["rejected"]) for c in constraints)
        assert all(c.instruction() in row["turns"][-1] for c in constraints)
        broken = [c.instruction() for c in constraints if not c.check(row["rejected"])]
        assert all(b in row["rationale"] for b in broken) and row["rationale_status"] == "checker"
        assert row["provenance"]["from_pair"] == f"pair-{row['prompt_id']}"
    # Constraints go on the last user turn; earlier turns stay as they were.
    two_turn = next(r for r in inter if r["prompt_id"] == "p2")
    assert two_turn["turns"][0] == "Hi." and two_turn["turns"][1].startswith("Now describe tea.")
    assert two_turn["earlier_answers"] == ["Hello!"]  # the shared first answer stays in the prompt
    assert all(r["earlier_answers"] == (["Hello!"] if r["prompt_id"] == "p2" else []) for r in intra)
    for row in intra:
        assert (
            row["chosen_turns"][-1] == row["chosen_prompt"]
            and row["rejected_turns"][-1] == row["rejected_prompt"]
        )
        assert all(from_dict(c).check(row["response"]) for c in row["chosen_constraints"])
        assert not all(from_dict(c).check(row["response"]) for c in row["rejected_constraints"])


def prompts_built(rows: list[dict[str, Any]]) -> list[str]:
    return [r["prompt"] if r["source"] == "mapl_inter" else r["chosen_prompt"] for r in rows]


async def test_rows_are_seeded_by_run_seed_and_prompt(tmp_path: Path) -> None:
    first, _ = await mapl_variants(context(tmp_path / "a", seed=3), PROMPTS, pairs())
    again, _ = await mapl_variants(context(tmp_path / "b", seed=3), PROMPTS, pairs())
    other, _ = await mapl_variants(context(tmp_path / "c", seed=4), PROMPTS, pairs())
    assert prompts_built(first) == prompts_built(again)
    assert prompts_built(first) != prompts_built(other)


async def test_switches_turn_kinds_off(tmp_path: Path) -> None:
    rows, _ = await mapl_variants(context(tmp_path, intra=False), PROMPTS, pairs())
    assert {r["source"] for r in rows} == {"mapl_inter"}
    rows, _ = await mapl_variants(context(tmp_path, enabled=False), PROMPTS, pairs())
    assert rows == []


async def test_fresh_answers_are_paired_by_the_checkers(tmp_path: Path) -> None:
    # The generator answers the multi-instruction prompt once with the measured answer (which satisfies
    # every constraint, since they were measured from it) and with answers that break some of them.
    replies = [CHOSEN, REJECTED, "x", CHOSEN.upper()]
    with FakeLLMServer(rules=[Rule("Describe tea.", reply=replies)]) as server:
        ctx = context(
            tmp_path, base_url=server.base_url, inter=False, intra=False, fresh=True, fresh_samples=4
        )
        rows, failures = await mapl_variants(ctx, PROMPTS[:1], pairs()[:1])
        asked = [r["messages"][0]["content"] for r in server.requests]
    assert failures == []
    assert len(asked) == 4 and all(a.startswith("Describe tea.\n\n") for a in asked)
    assert rows and all(r["provenance"]["method"] == "checked" and reverify(r) for r in rows)
    assert rows[0]["chosen"] == CHOSEN and rows[0]["chosen_id"] == "p1:mapl_fresh:s0"
