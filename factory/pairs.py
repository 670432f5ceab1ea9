"""Preference pairs from judgments (first version: the Fellowship paper's rule).

The judge's best response is accepted and every other response rejected. A pair whose two
answers were judged a tie (or unscored) is dropped unless `keep_ties`, since it carries no preference.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from factory.config import PairSettings


def pair_id(prompt_id: str, chosen_id: str, rejected_id: str) -> str:
    return hashlib.sha256(f"{prompt_id}|{chosen_id}|{rejected_id}".encode()).hexdigest()[:16]


def paper_pairs(prompt_id: str, prompt_text: str, candidates: list[dict[str, Any]], best_id: str,
                judgments: list[dict[str, Any]], settings: PairSettings) -> list[dict[str, Any]]:
    by_id = {c["candidate_id"]: c for c in candidates}
    best = by_id[best_id]
    # Which judgment compared the best with each other candidate (knockout compares only some).
    decisive: dict[str, dict[str, Any]] = {}
    for j in judgments:
        a_id, b_id = j["candidate_a"], j["candidate_b"]
        if best_id in (a_id, b_id):
            decisive[b_id if a_id == best_id else a_id] = j
    pairs = []
    for cand in candidates:
        if cand["candidate_id"] == best_id or cand["content_hash"] == best["content_hash"]:
            continue
        j = decisive.get(cand["candidate_id"])
        if j is not None and j["verdict"] != ("A" if j["candidate_a"] == best_id else "B") and not settings.keep_ties:
            continue
        margin = None
        if j is not None and j.get("score_a") is not None and j.get("score_b") is not None:
            margin = abs(float(j["score_a"]) - float(j["score_b"]))
            if margin < settings.min_margin:
                continue
        pairs.append({
            "pair_id": pair_id(prompt_id, best_id, cand["candidate_id"]),
            "prompt_id": prompt_id,
            "prompt": prompt_text,
            "chosen": best["text"],
            "rejected": cand["text"],
            "chosen_id": best_id,
            "rejected_id": cand["candidate_id"],
            "margin": margin,
            "votes": json.dumps([j["verdict"]] if j else []),
            "judgment_id": j["judgment_id"] if j else None,
            "source": "judged",
            "rationale": None,
        })
    return pairs
