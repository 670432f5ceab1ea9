"""Judge one pair with any judge setting (judge, jury or debate), returning one judgments-table row.

This is the judging API the build pipeline and calibration call. Whatever happens to an item (a
reply that cannot be parsed, a failed model call, a budget reached mid-item), it yields exactly one
row: a verdict, or `verdict=None` with `unscored_reason`. An item that ended because a budget was
reached or a circuit is open carries `stop` ("budget" / "circuit", `factory.records.Stop`): a stop
signal for the caller. The key is there only then, so the table's columns do not change.

Row columns (docs/architecture.md, judgments table): judgment_id, item_id, judge_id, kind, models,
protocol, scale, order ("AB", "BA", "both"; "mixed" for a jury whose jurors showed different orders),
flipped, verdict (A / B / tie / None, always in the item's orientation: A = answer_a), score_a,
score_b, unscored_reason, raw (JSON list of every raw model output), latency_s, prompt_tokens,
completion_tokens, cost_usd, plus votes (JSON list: per-juror verdicts for a jury, per-order verdicts
for `order: both`, else the one verdict) and injection_flags (JSON list of judge-format markers found
or judge-directed text in the answers, as "A:### Answer", "B:[[verdict]]", "A:directive", ...).

The independent protocol shows each answer alone, so `order` does not apply to it: its rows say "AB".
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from factory._util.json_columns import dumps
from factory.llm import Gateway
from factory.records import Judgment
from judges.engine.graphs import Item, judge_item
from judges.engine.outcome import Outcome
from judges.engine.settings import JudgeSetting
from judges.protocols import Answer, Question, injection_markers

JUDGMENT_SCHEMA: dict[str, Any] = {
    "judgment_id": pl.String,
    "item_id": pl.String,
    "judge_id": pl.String,
    "kind": pl.String,
    "models": pl.List(pl.String),
    "protocol": pl.String,
    "scale": pl.Int64,
    "order": pl.String,
    "flipped": pl.Boolean,
    "verdict": pl.String,
    "score_a": pl.Float64,
    "score_b": pl.Float64,
    "unscored_reason": pl.String,
    "raw": pl.String,
    "latency_s": pl.Float64,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "cost_usd": pl.Float64,
    "votes": pl.String,
    "injection_flags": pl.String,
}
"""Column types of a judgment row, for frames built from rows (all-None columns keep their type)."""


async def judge_pair(
    gateway: Gateway,
    setting: JudgeSetting,
    item_id: str,
    question: Question,
    answer_a: str | list[str],
    answer_b: str | list[str],
    *,
    tag: str | None = None,
) -> Judgment:
    """Judge `answer_a` vs `answer_b` for `question`; the verdict is in the item's orientation (A = answer_a).

    `question` is a string or a list of `{role, content}` turns; an answer is a string or one string
    per user turn. `setting.models` name gateway roles or litellm model strings (at `setting.api_base`).

    Example::

        row = await judge_pair(gateway, JudgeSetting(order="both"), "q1", "What is 2+2?", "4", "5")
        row["verdict"], row["votes"]          # 'A', '["A", "A"]'
    """
    started = time.perf_counter()
    item = Item(item_id=item_id, question=question, answer_a=answer_a, answer_b=answer_b)
    try:
        outcome = await judge_item(gateway, setting, item, tag=tag)
    except ValueError as exc:
        # The prompts could not lay the item out (e.g. 3 answers for 2 user turns): bad data, one row.
        outcome = Outcome(reason=f"invalid_item: {exc}", order="both" if setting.order == "both" else "AB")
    return judgment_row(setting, item_id, outcome, time.perf_counter() - started, answer_a, answer_b)


def judgment_row(
    setting: JudgeSetting,
    item_id: str,
    outcome: Outcome,
    latency_s: float,
    answer_a: Answer,
    answer_b: Answer,
) -> Judgment:
    """The judgments-table row of one outcome (see the module docstring for the columns)."""
    row: Judgment = {
        "judgment_id": f"{item_id}|{setting.setting_id}",
        "item_id": item_id,
        "judge_id": setting.setting_id,
        "kind": setting.kind,
        "models": list(outcome.models or _all_models(setting)),
        "protocol": _protocol(setting),
        "scale": setting.scale,
        "order": outcome.order,
        "flipped": outcome.flipped,
        "verdict": outcome.verdict,
        "score_a": outcome.score_a,
        "score_b": outcome.score_b,
        "unscored_reason": outcome.reason,
        "raw": dumps(list(outcome.raws)),
        "latency_s": round(latency_s, 4),
        "prompt_tokens": outcome.usage.prompt_tokens,
        "completion_tokens": outcome.usage.completion_tokens,
        "cost_usd": outcome.usage.cost_usd,
        "votes": dumps(list(outcome.votes) or [outcome.verdict]),
        "injection_flags": dumps(answer_flags(answer_a, answer_b)),
    }
    if outcome.stop is not None:
        row["stop"] = outcome.stop
    return row


def answer_flags(answer_a: Answer, answer_b: Answer) -> list[str]:
    """Judge-format markers planted in either answer, labelled by side: ["A:### Answer", ...]."""
    flags = []
    for side, answer in (("A", answer_a), ("B", answer_b)):
        text = answer if isinstance(answer, str) else "\n".join(answer)
        flags += [f"{side}:{marker}" for marker in injection_markers(text)]
    return flags


def _all_models(setting: JudgeSetting) -> tuple[str, ...]:
    if setting.kind == "jury":
        return tuple(dict.fromkeys(m for juror in setting.juror_settings() for m in _all_models(juror)))
    return setting.models


def _protocol(setting: JudgeSetting) -> str:
    if setting.kind == "jury" and setting.jurors is not None:
        protocols = {_protocol(j) for j in setting.jurors}
        return protocols.pop() if len(protocols) == 1 else "mixed"
    return setting.protocol
