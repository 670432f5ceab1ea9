"""Judge biases that agreement numbers hide: answer position, answer length, and the judge's own model.

Every function takes verdicts in the item's own orientation ("A" = the item's `response_a`,
whatever order the judge was shown), as `judgments.parquet` stores them; None = unscored.
Each result carries the number of items it rests on, so a rate over five items is not mistaken
for a finding. Passing human labels as `verdicts` gives the human baseline on the same items.

Example:
    >>> position_bias(ab=["A", "B", "A"], ba=["A", "A", "tie"])["inconsistent_rate"]
    0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from judges.verdicts import VerdictCell


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _same_length(**columns: Sequence[Any]) -> None:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must pair up item by item, got lengths {lengths}")


def position_bias(ab: Sequence[VerdictCell], ba: Sequence[VerdictCell]) -> dict[str, Any]:
    """Compare the verdicts of the same items judged in both orders.

    `ab[i]` is the verdict when the item's A was shown first, `ba[i]` when B was shown first,
    both mapped back to the item's orientation. Returns:

    * `inconsistent_rate`: share of items (scored in both orders) whose two verdicts differ;
    * `flip_rate`: share where the winner reversed outright (A one way, B the other);
    * `first_position_rate`: share of decisive (non-tie) verdicts, over both orders, that picked
      the answer shown first (0.5 = no position preference);
    * `n` items scored in both orders, `n_decisive` verdicts behind `first_position_rate`, `n_unscored`.
    """
    _same_length(ab=ab, ba=ba)
    both = [(x, y) for x, y in zip(ab, ba, strict=True) if x is not None and y is not None]
    inconsistent = sum(x != y for x, y in both)
    flipped = sum({x, y} == {"A", "B"} for x, y in both)
    # Shown first: the item's A in the AB run, the item's B in the BA run.
    first = [v == "A" for v in ab if v in ("A", "B")] + [v == "B" for v in ba if v in ("A", "B")]
    return {
        "n": len(both),
        "n_unscored": len(ab) - len(both),
        "inconsistent_rate": _rate(inconsistent, len(both)),
        "flip_rate": _rate(flipped, len(both)),
        "first_position_rate": _rate(sum(first), len(first)),
        "n_decisive": len(first),
    }


def length_bias(
    response_a: Sequence[str], response_b: Sequence[str], verdicts: Sequence[VerdictCell], min_diff: int = 30
) -> dict[str, Any]:
    """How often the judge prefers the longer answer, where lengths differ by more than `min_diff` characters.

    Ties and unscored verdicts carry no preference and are counted apart (`n_ties`, `n_unscored`).
    `longer_preferred_rate` is over the `n` decisive verdicts; 0.5 = no length preference.
    """
    _same_length(response_a=response_a, response_b=response_b, verdicts=verdicts)
    longer_wins = n = ties = unscored = 0
    for a, b, verdict in zip(response_a, response_b, verdicts, strict=True):
        if abs(len(a) - len(b)) <= min_diff:
            continue
        if verdict is None:
            unscored += 1
        elif verdict == "tie":
            ties += 1
        else:
            n += 1
            longer_wins += (verdict == "A") == (len(a) > len(b))
    return {
        "longer_preferred_rate": _rate(longer_wins, n),
        "n": n,
        "n_ties": ties,
        "n_unscored": unscored,
        "min_diff": min_diff,
    }


def self_preference(
    model_a: Sequence[str],
    model_b: Sequence[str],
    verdicts: Sequence[VerdictCell],
    judge_model: str,
    human: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Does the judge favour answers its own model wrote?

    Looks only at items where exactly one answer comes from `judge_model` (exact string match).
    `own_win_rate` = share of those items the judge's model's answer wins, `other_win_rate` = share
    the other model's answer wins (ties and unscored count as wins for neither; both over `n`,
    the items scored). With `human` labels, `human_own_win_rate` is the human rate on the same
    items: a gap between it and `own_win_rate` is the bias, not the gap to 0.5.
    """
    _same_length(model_a=model_a, model_b=model_b, verdicts=verdicts)
    if human is not None:
        _same_length(model_a=model_a, human=human)
    own_wins = other_wins = n = unscored = 0
    human_own = human_n = 0
    for i, (ma, mb, verdict) in enumerate(zip(model_a, model_b, verdicts, strict=True)):
        if (ma == judge_model) == (mb == judge_model):
            continue  # neither or both answers are the judge's own: nothing to prefer
        own_side = "A" if ma == judge_model else "B"
        if human is not None:
            human_n += 1
            human_own += human[i] == own_side
        if verdict is None:
            unscored += 1
            continue
        n += 1
        own_wins += verdict == own_side
        other_wins += verdict not in (own_side, "tie")
    result: dict[str, Any] = {
        "judge_model": judge_model,
        "n": n,
        "n_unscored": unscored,
        "own_win_rate": _rate(own_wins, n),
        "other_win_rate": _rate(other_wins, n),
    }
    if human is not None:
        result["human_own_win_rate"] = _rate(human_own, human_n)
    return result
