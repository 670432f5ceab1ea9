"""MAPL prompt variants (arXiv 2505.12845) as plain data: constraint-augmented prompts and labelled rows.

Intra-sample rows keep one response and vary the prompt (a prompt-level preference); inter-sample rows
keep one augmented prompt and pair two responses. Every label comes from the constraint checkers, is
recorded on the row (`checks`) and can be re-derived later with `reverify`. No LLM is called here.

    >>> rng = random.Random(7)
    >>> row = inter_sample_pair("p1", "Describe tea.", "Tea is a drink.", "TEA, TEA, TEA!", rng)
    >>> row is not None and reverify(row)
    True
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from factory.mapl.constraints import Constraint, ConstraintError
from factory.mapl.loading import from_dict
from factory.mapl.proposals import candidates, satisfied_by, violated_by

ConstraintLike = Constraint | Mapping[str, Any]


def augment_prompt(prompt: str, constraints: Sequence[ConstraintLike]) -> str:
    """`prompt` followed by a blank line and one instruction per line (unchanged when there are none)."""
    built = _build_all(constraints)
    if not built:
        return prompt
    return prompt.rstrip() + "\n\n" + "\n".join(c.instruction() for c in built)


def intra_sample_rows(
    prompt_id: str, prompt: str, response: str, rng: random.Random, k: int = 2
) -> list[dict[str, Any]]:
    """One prompt-level preference row for a fixed `response`, or [] when none can be built.

    The chosen prompt adds constraints the response satisfies, the rejected prompt adds constraints
    it violates; both get the same number (up to `k`) so that prompt length says nothing.
    """
    satisfied = satisfied_by(response, rng, k)
    violated = violated_by(response, rng, k)
    n = min(len(satisfied), len(violated))
    if n == 0:
        return []
    satisfied, violated = satisfied[:n], violated[:n]
    return [
        {
            "prompt_id": prompt_id,
            "kind": "mapl_intra",
            "prompt": prompt,
            "response": response,
            "chosen_prompt": augment_prompt(prompt, satisfied),
            "rejected_prompt": augment_prompt(prompt, violated),
            "chosen_constraints": [c.describe() for c in satisfied],
            "rejected_constraints": [c.describe() for c in violated],
            "checks": {
                "chosen": [c.check(response) for c in satisfied],
                "rejected": [c.check(response) for c in violated],
            },
        }
    ]


def inter_sample_pair(
    prompt_id: str, prompt: str, chosen: str, rejected: str, rng: random.Random, k: int = 2
) -> dict[str, Any] | None:
    """Augment `prompt` with up to `k` constraints that `chosen` satisfies, at least one of which
    `rejected` violates; None when no measured candidate separates the two responses.
    """
    pool: dict[str, Constraint] = {}
    # Candidates are measured from both responses: a count taken from `rejected` often yields the
    # threshold that `chosen` passes and `rejected` just misses.
    for c in candidates(chosen, rng) + candidates(rejected, rng):
        if c.check(chosen):
            pool.setdefault(_key(c), c)
    fitting = list(pool.values())
    separating = [c for c in fitting if not c.check(rejected)]
    if not separating:
        return None
    picked = [rng.choice(separating)]
    rng.shuffle(fitting)
    for c in fitting:
        if len(picked) >= k:
            break
        if _group(c) not in {_group(p) for p in picked}:
            picked.append(c)
    rng.shuffle(picked)  # the separating instruction should not always come first
    return _inter_row(prompt_id, augment_prompt(prompt, picked), chosen, rejected, picked, "augmented")


def label_by_checkers(
    prompt_constraints: Sequence[ConstraintLike], responses: Sequence[str]
) -> list[tuple[str, int, bool]]:
    """`(response, n_satisfied, all_ok)` for each response, judged by the checkers alone."""
    built = _build_all(prompt_constraints)
    out: list[tuple[str, int, bool]] = []
    for response in responses:
        n = sum(c.check(response) for c in built)
        out.append((response, n, n == len(built)))
    return out


def pairs_from_checked(
    prompt_id: str,
    prompt: str,
    prompt_constraints: Sequence[ConstraintLike],
    responses: Sequence[str],
    max_pairs: int | None = None,
) -> list[dict[str, Any]]:
    """Pair fresh answers to a multi-instruction `prompt`: each answer that satisfies every constraint
    against one that violates some, worst violators first; each answer is used at most once.

    `prompt` is the prompt the answers were written for (its instructions already in it). Rows have
    the `inter_sample_pair` schema, with `method` = "checked".
    """
    built = _build_all(prompt_constraints)
    if not built:
        raise ConstraintError("pairs_from_checked needs at least one constraint to label answers by")
    labelled = label_by_checkers(built, list(dict.fromkeys(responses)))  # drop duplicate texts
    passing = [r for r, _, ok in labelled if ok]
    failing = [r for r, _, _ in sorted((x for x in labelled if not x[2]), key=lambda x: x[1])]
    pairs = list(zip(passing, failing, strict=False))[:max_pairs]
    return [_inter_row(prompt_id, prompt, good, bad, built, "checked") for good, bad in pairs]


def reverify(row: Mapping[str, Any]) -> bool:
    """Re-run every checker recorded on a MAPL row; True when the results match `checks` and the
    label still holds (chosen side satisfies all, rejected side violates at least one) and every
    instruction is in its prompt. Constraint lists and `checks` may be JSON strings (parquet)."""
    try:
        kind = row["kind"]
        checks = _load(row["checks"])
        if kind == "mapl_intra":
            response = row["response"]
            sides = [
                (row["chosen_prompt"], response, _load(row["chosen_constraints"]), checks["chosen"]),
                (row["rejected_prompt"], response, _load(row["rejected_constraints"]), checks["rejected"]),
            ]
        elif kind == "mapl_inter":
            constraints = _load(row["constraints"])
            sides = [
                (row["prompt"], row["chosen"], constraints, checks["chosen"]),
                (row["prompt"], row["rejected"], constraints, checks["rejected"]),
            ]
        else:
            raise ConstraintError(f"reverify: row kind {kind!r} is not a MAPL row (mapl_intra/mapl_inter)")
    except KeyError as exc:
        raise ConstraintError(f"reverify: row has no field {exc.args[0]!r}") from None
    results: list[list[bool]] = []
    for prompt, response, dicts, recorded in sides:
        built = _build_all(dicts)
        got = [c.check(response) for c in built]
        if not built or got != list(recorded) or any(c.instruction() not in prompt for c in built):
            return False
        results.append(got)
    return all(results[0]) and not all(results[1])


def _inter_row(
    prompt_id: str, prompt: str, chosen: str, rejected: str, constraints: Sequence[Constraint], method: str
) -> dict[str, Any]:
    return {
        "prompt_id": prompt_id,
        "kind": "mapl_inter",
        "method": method,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "constraints": [c.describe() for c in constraints],
        "checks": {
            "chosen": [c.check(chosen) for c in constraints],
            "rejected": [c.check(rejected) for c in constraints],
        },
    }


def _build_all(constraints: Sequence[ConstraintLike]) -> list[Constraint]:
    return [c if isinstance(c, Constraint) else from_dict(c) for c in constraints]


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _key(c: Constraint) -> str:
    return json.dumps(c.describe(), sort_keys=True)


def _group(c: Constraint) -> str:
    return c.group or c.kind
