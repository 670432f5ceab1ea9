"""Rationales (arXiv 2407.14477): a short machine-written reason why the chosen answer beats the rejected one.

A LangGraph graph per pair: `write` asks the rationale writer (role `rationales.role`) for 2-4 sentences
grounded in the judges' raw notes on the two answers; `verify` checks it. The code check refuses an empty
rationale; with `rationales.verify` a second agent answers `{"supports_chosen": bool, "reason": str}`
(structured output) on whether the rationale argues for the chosen answer. A refused rationale is
rewritten with the verifier's reason, up to `max_rewrites` times.

Every pair of the dataset carries a rationale: a pair whose rationale is still refused after the
rewrites, or whose writer call fails, leaves the pairs table and goes to the failures table (stage
`rationales`, the reason, and every attempt in `raw`). Nothing is lost: the pair stays in
`stages/pairs/` and its candidates in `candidates.parquet`.

    graph = rationale_graph(RationaleSettings(verify=True), verifier="judge")
    state = await graph.ainvoke(initial_state(pair, judgments), context=GatewayContext(gateway))
    state["status"], state["rationale"]
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from pydantic import BaseModel, Field

from factory._util.concurrency import map_bounded
from factory._util.json_columns import dumps, load_json
from factory._util.templates import render_template
from factory.config import RationaleSettings
from factory.inputs.conversation import prompt_messages
from factory.llm import Gateway, LLMError, OutputParseError
from factory.records import Failure, Judgment, Pair, Stop, stop_of
from factory.workflows.single_agent import GatewayContext

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

_PROMPTS = Path(__file__).parent / "prompts"
_NOTE_CHARS = 1500  # per judge note: enough for an evaluation paragraph, bounded for small context windows
_MAX_NOTES = 4


class RationaleCheck(BaseModel):
    """The verifier's structured answer."""

    supports_chosen: bool = Field(
        description="True when the rationale argues that the CHOSEN answer is better."
    )
    reason: str = Field(description="One sentence explaining the decision.")


class RationaleState(TypedDict, total=False):
    pair_id: str
    question: str
    chosen: str
    rejected: str
    evidence: list[str]
    rationale: str | None
    attempts: int
    accepted: bool
    feedback: str | None
    history: list[dict[str, Any]]
    status: str
    reason: str | None
    model: str | None


def _render(name: str, **values: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": render_template(_PROMPTS, name, **values)}]


def judge_notes(pair: Pair, judgments: Sequence[Judgment]) -> list[str]:
    """The judges' raw outputs on the pair's two answers, each saying which answer is which.

    Judges name the answers Assistant A / B in the order shown; the note maps those names to
    CHOSEN / REJECTED (or "another answer" for a third response met in a knockout)."""
    names = {pair["chosen_id"]: "the CHOSEN answer", pair["rejected_id"]: "the REJECTED answer"}
    notes: list[str] = []
    relevant = [j for j in judgments if {j.get("candidate_a"), j.get("candidate_b")} & set(names)]
    # The direct comparison first: it is the evidence the pair was cut from.
    relevant.sort(key=lambda j: j.get("judgment_id") != pair.get("judgment_id"))
    for j in relevant[:_MAX_NOTES]:
        raws = load_json(j.get("raw")) or []
        texts = [r if isinstance(r, str) else dumps(r) for r in (raws if isinstance(raws, list) else [raws])]
        text = " ".join(" / ".join(t.strip() for t in texts if t and t.strip()).split())
        if not text:
            continue
        a = names.get(j["candidate_a"], "another answer")
        b = names.get(j["candidate_b"], "another answer")
        notes.append(
            f"Assistant A is {a}, Assistant B is {b}; verdict {j.get('verdict')}: {text[:_NOTE_CHARS]}"
        )
    return notes


def question_text(pair: Pair) -> str:
    """The question as the writer sees it: the prompt text, or for a multi-turn prompt the conversation
    up to the last user turn (with the shared earlier answers), which both answers reply to."""
    turns = load_json(pair["turns"])
    if len(turns) == 1:
        return pair["prompt"]
    messages = prompt_messages(turns, load_json(pair["earlier_answers"]))
    return "\n\n".join(f"[{m['role'].capitalize()}]\n{m['content']}" for m in messages)


def initial_state(pair: Pair, judgments: Sequence[Judgment]) -> RationaleState:
    """The graph's input for one pair (judgments: the pair's prompt's judgment rows)."""
    return RationaleState(
        pair_id=pair["pair_id"],
        question=question_text(pair),
        chosen=pair["chosen"],
        rejected=pair["rejected"],
        evidence=judge_notes(pair, judgments),
        rationale=None,
        attempts=0,
        accepted=False,
        feedback=None,
        history=[],
        status="pending",
        reason=None,
        model=None,
    )


def _clean(text: str) -> str:
    text = text.strip()
    for prefix in ("Rationale:", "rationale:", "**Rationale:**"):
        text = text.removeprefix(prefix).strip()
    return text


@lru_cache(maxsize=32)
def rationale_graph(settings: RationaleSettings, verifier: str | None) -> Any:
    """The compiled write -> verify (-> rewrite) graph. `verifier` is a role name, or None for no
    second agent (only the code check that the rationale is not empty).

    Compiled once per (settings, verifier), not per call: compiling costs about 7 ms, more than the
    rest of a rationale's client-side work, and the build writes rationales prompt by prompt. The
    gateway arrives at run time through LangGraph's runtime context (`GatewayContext`). LangGraph is
    imported here, not with the module: a build with rationales disabled never loads it."""
    from langgraph.graph import END, START, StateGraph

    async def write(state: RationaleState, runtime: Runtime[GatewayContext]) -> RationaleState:
        gateway = runtime.context.gateway
        previous = state.get("rationale")
        messages = _render(
            "rationale.j2",
            question=state["question"],
            chosen=state["chosen"],
            rejected=state["rejected"],
            evidence=state["evidence"],
            feedback=state.get("feedback"),
            previous=previous,
        )
        reply = await gateway.complete(settings.role, messages, sample=state["attempts"], tag="rationale")
        return {"rationale": _clean(reply.text), "attempts": state["attempts"] + 1, "model": reply.model}

    async def verify(state: RationaleState, runtime: Runtime[GatewayContext]) -> RationaleState:
        gateway = runtime.context.gateway
        rationale = state.get("rationale") or ""
        if not rationale:
            check = RationaleCheck(supports_chosen=False, reason="the rationale is empty")
        elif verifier is None:
            check = RationaleCheck(supports_chosen=True, reason="not verified (no verifier)")
        else:
            messages = _render(
                "rationale_verify.j2",
                question=state["question"],
                chosen=state["chosen"],
                rejected=state["rejected"],
                rationale=rationale,
            )
            try:
                reply = await gateway.complete(
                    verifier, messages, schema=RationaleCheck, tag="rationale_verify"
                )
                check = reply.parsed  # type: ignore[assignment]
            except OutputParseError as exc:
                check = RationaleCheck(
                    supports_chosen=False, reason=f"verifier reply unparseable: {exc.raw or ''}"[:300]
                )
        history = [
            *state["history"],
            {"rationale": rationale, "supports_chosen": check.supports_chosen, "reason": check.reason},
        ]
        accepted = check.supports_chosen
        out: RationaleState = {
            "history": history,
            "accepted": accepted,
            "feedback": None if accepted else check.reason,
        }
        if accepted:
            out["status"] = "unverified" if verifier is None else "verified"
        elif state["attempts"] > settings.max_rewrites:
            out["status"], out["reason"] = "rejected", check.reason
        return out

    async def route(state: RationaleState) -> str:
        # A coroutine on purpose: LangGraph runs a plain function of an async graph in a thread pool.
        return END if state["accepted"] or state.get("status") == "rejected" else "write"

    graph = StateGraph(RationaleState, context_schema=GatewayContext)
    graph.add_node("write", write)
    graph.add_node("verify", verify)
    graph.add_edge(START, "write")
    graph.add_edge("write", "verify")
    graph.add_conditional_edges("verify", route, ["write", END])
    return graph.compile()


def _failure(pair_id: str, reason: str, raw: Any, stop: Stop | None = None) -> Failure:
    row: Failure = {"item_id": pair_id, "stage": "rationales", "reason": reason, "raw": dumps(raw)[:4000]}
    if stop is not None:
        row["stop"] = stop
    return row


async def write_rationales(
    gateway: Gateway,
    pairs: Sequence[Pair],
    judgments: Sequence[Judgment],
    settings: RationaleSettings,
    *,
    verifier: str | None,
    concurrency: int = 16,
) -> tuple[list[Pair], list[Failure]]:
    """Rationales for `pairs`: (pairs that got one, failure rows for those that did not).

    `verifier` is the verifier's role (None: no second agent). With `settings.enabled` false the
    pairs pass through with `rationale_status` = "disabled"."""
    if not settings.enabled:
        return [
            {**p, "rationale": None, "rationale_status": "disabled", "rationale_attempts": 0} for p in pairs
        ], []
    graph = rationale_graph(settings, verifier if settings.verify else None)
    context = GatewayContext(gateway=gateway)
    by_prompt: dict[str, list[Judgment]] = {}
    for j in judgments:
        by_prompt.setdefault(j["prompt_id"], []).append(j)

    async def one(pair: Pair) -> tuple[Pair | None, Failure | None]:
        state = initial_state(pair, by_prompt.get(pair["prompt_id"], []))
        try:
            final = await graph.ainvoke(state, context=context)
        except LLMError as exc:
            return None, _failure(pair["pair_id"], f"{exc.reason}: {exc}", {"raw": exc.raw}, stop_of(exc))
        if final.get("status") == "rejected":
            return None, _failure(
                pair["pair_id"], f"rationale_rejected: {final.get('reason')}", final["history"]
            )
        return {
            **pair,
            "rationale": final["rationale"],
            "rationale_status": final["status"],
            "rationale_attempts": final["attempts"],
            "rationale_model": final.get("model"),
        }, None

    results = await map_bounded(list(pairs), one, concurrency)
    return [r for r, _ in results if r is not None], [f for _, f in results if f is not None]
