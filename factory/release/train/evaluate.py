"""Held-out evaluation of a preference-trained model: DPO implicit-reward accuracy and margins on `test`.

For every test pair the model's summed log-probability of the chosen and the rejected answer is
computed (completion tokens only, given the prompt through the model's chat template, tokenized and
truncated the way TRL's DPOTrainer does). Scored once before training (that model is the reference)
and once after:

    reward(y)       = beta * (logp_policy(y) - logp_ref(y))
    margin          = reward(chosen) - reward(rejected)
    reward_accuracy = share of pairs with margin > 0, a tie counting half

Before training policy = reference, so every margin is 0 and reward accuracy is 0.5 by construction.
The figure that is informative on both sides is `logp_accuracy`: the share of pairs whose chosen
answer has the higher mean per-token log-probability under the model (reference-free, length-normalised).

    before = score_pairs(model, tokenizer, rows, max_length=512)
    ...train...
    after = score_pairs(model, tokenizer, rows, max_length=512)
    summary = preference_metrics(before, after, beta=0.1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class PairScores:
    """Per test pair: summed completion log-probs and completion token counts (same order as the rows)."""

    chosen_logps: list[float]
    rejected_logps: list[float]
    chosen_tokens: list[int]
    rejected_tokens: list[int]
    dropped: int = 0  # pairs whose prompt alone fills max_length (TRL drops them too)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _ids(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )
    return list(out["input_ids"])


def tokenize_pair(tokenizer: Any, row: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) token ids, the completions starting where prompt and prompt+answer diverge."""
    prompt = list(row["prompt"])
    prompt_ids = _ids(tokenizer, prompt, generation_prompt=True)
    chosen_full = _ids(tokenizer, prompt + list(row["chosen"]), generation_prompt=False)
    rejected_full = _ids(tokenizer, prompt + list(row["rejected"]), generation_prompt=False)
    cut = min(_common_prefix(prompt_ids, chosen_full), _common_prefix(prompt_ids, rejected_full))
    return prompt_ids[:cut], chosen_full[cut:], rejected_full[cut:]


def _sequence_logps(
    model: Any, sequences: list[tuple[list[int], int]], pad_id: int
) -> list[tuple[float, int]]:
    """Summed log-prob and count of the completion tokens of each (ids, prompt length) in one padded batch."""
    import torch

    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    completion = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, (ids, prompt_len) in enumerate(sequences):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        completion[i, prompt_len : len(ids)] = True
    input_ids, attention, completion = input_ids.to(device), attention.to(device), completion.to(device)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
        token_logps = torch.gather(logits.log_softmax(-1), 2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        mask = completion[:, 1:]
        sums = (token_logps * mask).sum(dim=1)
    return [(float(s), int(n)) for s, n in zip(sums.tolist(), mask.sum(dim=1).tolist(), strict=True)]


def score_pairs(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, max_length: int | None, batch_size: int = 4
) -> PairScores:
    """Score `rows` (TRL conversational preference rows) with `model`.

    Under `accelerate launch` every process scores an equal share (padded with repeats, so sharded
    models run the same number of forwards on each rank) and the shares are gathered to all.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    kept: list[tuple[list[int], list[int], list[int]]] = []
    dropped = 0
    for row in rows:
        prompt, chosen, rejected = tokenize_pair(tokenizer, row)
        if max_length is not None and len(prompt) >= max_length:
            dropped += 1
            continue
        kept.append((prompt, chosen, rejected))
    if not kept:
        return PairScores([], [], [], [], dropped=dropped)
    indexed = list(enumerate(kept))
    was_training = model.training
    model.eval()
    scored: list[tuple[int, float, float, int, int]] = []
    with state.split_between_processes(indexed, apply_padding=True) as share:
        for start in range(0, len(share), batch_size):
            batch = share[start : start + batch_size]
            sequences = []
            for _, (prompt, chosen, rejected) in batch:
                for answer in (chosen, rejected):
                    ids = prompt + answer
                    sequences.append((ids[:max_length] if max_length else ids, len(prompt)))
            results = _sequence_logps(model, sequences, tokenizer.pad_token_id)
            for j, (index, _) in enumerate(batch):
                (c_lp, c_n), (r_lp, r_n) = results[2 * j], results[2 * j + 1]
                scored.append((index, c_lp, r_lp, c_n, r_n))
    if was_training:
        model.train()
    merged = {entry[0]: entry for entry in gather_object(scored)}  # padding repeats collapse by index
    ordered = [merged[i] for i in range(len(kept))]
    return PairScores(
        chosen_logps=[e[1] for e in ordered],
        rejected_logps=[e[2] for e in ordered],
        chosen_tokens=[e[3] for e in ordered],
        rejected_tokens=[e[4] for e in ordered],
        dropped=dropped,
    )


def _share(flags: list[float]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _sign(x: float) -> float:
    return 1.0 if x > 0 else 0.5 if x == 0 else 0.0


def _side(policy: PairScores, ref: PairScores, beta: float) -> dict[str, Any]:
    chosen = [beta * (p - r) for p, r in zip(policy.chosen_logps, ref.chosen_logps, strict=True)]
    rejected = [beta * (p - r) for p, r in zip(policy.rejected_logps, ref.rejected_logps, strict=True)]
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    per_token = [
        c / max(nc, 1) - r / max(nr, 1)
        for c, r, nc, nr in zip(
            policy.chosen_logps,
            policy.rejected_logps,
            policy.chosen_tokens,
            policy.rejected_tokens,
            strict=True,
        )
    ]
    n = len(margins)

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / n, 6) if n else None

    # -log sigmoid(m), computed stably: log(1 + exp(-m))
    losses = [math.log1p(math.exp(-m)) if m > -30 else -m for m in margins]
    return {
        "reward_accuracy": _share([_sign(m) for m in margins]),
        "reward_margin": mean(margins),
        "reward_chosen": mean(chosen),
        "reward_rejected": mean(rejected),
        "dpo_loss": mean(losses),
        "logp_accuracy": _share([_sign(d) for d in per_token]),
        "logp_chosen": mean(policy.chosen_logps),
        "logp_rejected": mean(policy.rejected_logps),
    }


def preference_metrics(before: PairScores, after: PairScores, beta: float) -> dict[str, Any]:
    """Before/after figures on the test pairs; the `before` scores are the reference."""
    return {
        "pairs": len(before.chosen_logps),
        "dropped_pairs": before.dropped,
        "beta": beta,
        "before": _side(before, before, beta),
        "after": _side(after, before, beta),
    }
