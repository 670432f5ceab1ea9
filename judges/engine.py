"""Judge one pair with one judge setting, returning a judgment row.

Thin first version: a single judge in fixed order. The jury, debate and order handling build on
the same row shape (see docs/architecture.md, judgments table).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from factory.llm import Completion, Gateway, LLMError, ModelSpec, OutputParseError
from judges.protocols import (
    Parsed,
    combine_single_scores,
    parse_combined,
    parse_direct,
    parse_single_score,
    render_pairwise,
    render_reprompt,
    render_single,
    schema_for,
    verdict_from_structured,
)
from judges.settings import JudgeSetting


def _parse(protocol: str, text: str, scale: int) -> Parsed:
    if protocol == "direct":
        return parse_direct(text)
    if protocol == "combined":
        return parse_combined(text, scale)
    return parse_single_score(text, 10)


async def ask_judge(gateway: Gateway, model: str | ModelSpec, protocol: str, scale: int, structured: bool,
                    messages: list[dict[str, Any]], tag: str) -> tuple[Parsed, list[str], list[Completion]]:
    """One judge conversation: ask, parse, and on a parse failure re-prompt once for the final answer."""
    pscale = scale if protocol == "combined" else 10
    schema = schema_for(protocol, pscale) if structured else None  # type: ignore[arg-type]
    raws: list[str] = []
    completions: list[Completion] = []
    for attempt in range(2):
        try:
            completion = await gateway.complete(model, messages, schema=schema, tag=tag, role="judge")
        except OutputParseError as exc:
            raws.append(exc.raw or "")
            parsed = Parsed(unscored_reason="invalid_structured")
        else:
            completions.append(completion)
            raws.append(completion.text)
            parsed = (verdict_from_structured(protocol, completion.parsed, pscale)  # type: ignore[arg-type]
                      if completion.parsed is not None else _parse(protocol, completion.text, pscale))
        if parsed.scored or attempt == 1:
            return parsed, raws, completions
        messages = [*messages, {"role": "assistant", "content": raws[-1]},
                    render_reprompt(protocol, pscale, structured=structured)]  # type: ignore[arg-type]
    raise AssertionError("unreachable")


async def judge_pair(gateway: Gateway, setting: JudgeSetting, item_id: str, question: Sequence[dict[str, str]] | str,
                     answer_a: str, answer_b: str, *, tag: str | None = None) -> dict[str, Any]:
    """Judge `answer_a` vs `answer_b`; the verdict is in the item's orientation (A = answer_a)."""
    model = setting.models[0]
    started = time.perf_counter()
    raws: list[str] = []
    completions: list[Completion] = []
    tag = tag or setting.setting_id
    try:
        if setting.protocol == "independent":
            parsed_a, raw_a, comp_a = await ask_judge(gateway, model, "independent", 10, setting.structured,
                                                      render_single(question, answer_a, structured=setting.structured), tag)
            parsed_b, raw_b, comp_b = await ask_judge(gateway, model, "independent", 10, setting.structured,
                                                      render_single(question, answer_b, structured=setting.structured), tag)
            parsed = combine_single_scores(parsed_a, parsed_b)
            raws, completions = raw_a + raw_b, comp_a + comp_b
            score_a, score_b = parsed_a.score, parsed_b.score
        else:
            messages = render_pairwise(setting.protocol, question, answer_a, answer_b, setting.scale,
                                       structured=setting.structured)
            parsed, raws, completions = await ask_judge(gateway, model, setting.protocol, setting.scale,
                                                        setting.structured, messages, tag)
            score_a, score_b = parsed.score_a, parsed.score_b
        verdict, reason = parsed.verdict, parsed.unscored_reason
    except LLMError as exc:
        verdict, reason, score_a, score_b = None, f"llm_error: {exc.reason}: {exc}", None, None
    return {
        "judgment_id": f"{item_id}|{setting.setting_id}",
        "item_id": item_id,
        "judge_id": setting.setting_id,
        "kind": setting.kind,
        "models": list(setting.models),
        "protocol": setting.protocol,
        "scale": setting.scale,
        "order": "AB",
        "flipped": False,
        "verdict": verdict,
        "score_a": score_a,
        "score_b": score_b,
        "unscored_reason": reason,
        "raw": json.dumps(raws, ensure_ascii=False),
        "latency_s": round(time.perf_counter() - started, 4),
        "prompt_tokens": sum(c.prompt_tokens for c in completions),
        "completion_tokens": sum(c.completion_tokens for c in completions),
        "cost_usd": sum(c.cost_usd for c in completions),
    }
