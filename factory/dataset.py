"""The dataset written at the end of a build: TRL formats, dedupe, a leak-free split, Hub layout.

From the run's merged tables (`pairs`: judged and MAPL inter-sample pairs; `mapl_intra`):

* `dpo`: TRL's conversational preference format, `prompt` (the user turns), `chosen` / `rejected`
  (one assistant message each), plus `rationale` and provenance columns (`pair_id`, `prompt_id`,
  `source`, `chosen_model`, `rejected_model`, `judge_setting`, `margin`, `votes`, `constraints`, `checks`);
* `kto`: TRL's unpaired format, `prompt`, `completion`, `label` (bool): every chosen answer is
  desirable and every rejected one undesirable; an answer that is both (all_pairs) is left out; MAPL
  intra rows give the fixed answer under its satisfied prompt (True) and its violated prompt (False);
* `mapl_intra`: prompt-level preferences, `prompt_chosen`, `prompt_rejected`, `response`.

Exact duplicates (same prompt, chosen and rejected) and near duplicates (Jaccard similarity of word
3-shingles >= `dataset.near_duplicate_threshold` on both answers, compared only within one prompt) are
removed. The split is by prompt id (a seeded hash ranks prompts; the first `test_fraction` of them
are test), the same for all three configs, so no prompt is in both splits.

Output, written atomically (built in a temporary folder, then swapped in):
`dataset/{dpo,kto,mapl_intra}/{train,test}-00000-of-00001.parquet`, `dataset/README.md` (the card) and
`dataset_dict/` (`DatasetDict.save_to_disk` of the DPO config).

    counts = write_dataset(run, config, tables, manifest)
    load_dataset(str(run.root / "dataset"), "dpo")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from factory.config import BuildConfig
from factory.mapl import reverify
from factory.pairs import load_json
from factory.run_folder import RunFolder, atomic_write_parquet, atomic_write_text

Row = dict[str, Any]
MESSAGES = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
SCHEMAS: dict[str, dict[str, Any]] = {
    "dpo": {"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES, "rationale": pl.Utf8,
            "pair_id": pl.Utf8, "prompt_id": pl.Utf8, "source": pl.Utf8, "chosen_model": pl.Utf8,
            "rejected_model": pl.Utf8, "judge_setting": pl.Utf8, "margin": pl.Float64, "votes": pl.Utf8,
            "constraints": pl.Utf8, "checks": pl.Utf8},
    "kto": {"prompt": MESSAGES, "completion": MESSAGES, "label": pl.Boolean, "prompt_id": pl.Utf8,
            "source": pl.Utf8, "pair_id": pl.Utf8, "model": pl.Utf8},
    "mapl_intra": {"prompt_chosen": MESSAGES, "prompt_rejected": MESSAGES, "response": MESSAGES,
                   "row_id": pl.Utf8, "prompt_id": pl.Utf8, "model": pl.Utf8, "chosen_constraints": pl.Utf8,
                   "rejected_constraints": pl.Utf8, "checks": pl.Utf8},
}
CONFIGS = tuple(SCHEMAS)
SPLITS = ("train", "test")
_OWNED = {"README.md", *CONFIGS}  # what we write into dataset/; other files there (agreement.json ...) are kept


def user_turns(turns: Iterable[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in turns]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _json(value: Any) -> str | None:
    value = load_json(value)
    return None if value is None else json.dumps(value, ensure_ascii=False)


def dpo_rows(pairs: pl.DataFrame) -> list[Row]:
    """Pairs-table rows in TRL's conversational preference format, with provenance."""
    out = []
    for p in pairs.iter_rows(named=True):
        margin = p.get("margin")
        out.append({
            "prompt": user_turns(load_json(p["turns"])), "chosen": assistant(p["chosen"]),
            "rejected": assistant(p["rejected"]), "rationale": p.get("rationale"), "pair_id": p["pair_id"],
            "prompt_id": p["prompt_id"], "source": p.get("source") or "judged", "chosen_model": p.get("chosen_model"),
            "rejected_model": p.get("rejected_model"), "judge_setting": p.get("judge_id"),
            "margin": None if margin is None else float(margin), "votes": _json(p.get("votes")) or "[]",
            "constraints": _json(p.get("constraints")), "checks": _json(p.get("checks")),
        })
    return out


def intra_rows(table: pl.DataFrame) -> list[Row]:
    """MAPL intra-sample rows as prompt-level preferences (`prompt_chosen`, `prompt_rejected`, `response`)."""
    return [{
        "prompt_chosen": user_turns(load_json(r["chosen_turns"])),
        "prompt_rejected": user_turns(load_json(r["rejected_turns"])),
        "response": assistant(r["response"]), "row_id": r["row_id"], "prompt_id": r["prompt_id"],
        "model": r.get("model"), "chosen_constraints": _json(r["chosen_constraints"]),
        "rejected_constraints": _json(r["rejected_constraints"]), "checks": _json(r["checks"]),
    } for r in table.iter_rows(named=True)]


def kto_rows(dpo: list[Row], intra: list[Row]) -> tuple[list[Row], int]:
    """Unpaired rows: (rows, number of answers left out because they were both chosen and rejected)."""
    labelled: dict[tuple[str, str], Row] = {}
    conflicts: set[tuple[str, str]] = set()

    def add(prompt: list[dict[str, str]], completion: list[dict[str, str]], label: bool, base: Row,
            model: str | None) -> None:
        key = (json.dumps(prompt, ensure_ascii=False), completion[0]["content"])
        if key in labelled and labelled[key]["label"] != label:
            conflicts.add(key)
        labelled.setdefault(key, {"prompt": prompt, "completion": completion, "label": label,
                                  "prompt_id": base["prompt_id"], "source": base["source"],
                                  "pair_id": base.get("pair_id") or base.get("row_id"), "model": model})

    for r in dpo:
        add(r["prompt"], r["chosen"], True, r, r["chosen_model"])
        add(r["prompt"], r["rejected"], False, r, r["rejected_model"])
    for r in intra:
        base = {**r, "source": "mapl_intra"}
        add(r["prompt_chosen"], r["response"], True, base, r["model"])
        add(r["prompt_rejected"], r["response"], False, base, r["model"])
    return [row for key, row in labelled.items() if key not in conflicts], len(conflicts)


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """Word n-shingles (lower-cased); a text shorter than n words is one shingle."""
    words = text.lower().split()
    if len(words) < n:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def dedupe(rows: list[Row], threshold: float) -> tuple[list[Row], int, int]:
    """(kept rows, exact duplicates removed, near duplicates removed); the first of duplicates is kept.

    Near duplicates are looked for only among rows of the same prompt (a handful of pairs), so the
    cost grows with the number of prompts, not with its square."""
    seen: set[str] = set()
    kept_by_prompt: dict[str, list[tuple[frozenset[Any], frozenset[Any]]]] = {}
    kept: list[Row] = []
    exact = near = 0
    for row in rows:
        prompt = json.dumps(row["prompt"], ensure_ascii=False)
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        key = hashlib.sha256(json.dumps([prompt, chosen, rejected]).encode()).hexdigest()
        if key in seen:
            exact += 1
            continue
        seen.add(key)
        sig = (shingles(chosen), shingles(rejected))
        group = kept_by_prompt.setdefault(prompt, [])
        if any(min(jaccard(sig[0], c), jaccard(sig[1], r)) >= threshold for c, r in group):
            near += 1
            continue
        group.append(sig)
        kept.append(row)
    return kept, exact, near


def split_test_prompts(prompt_ids: Iterable[str], test_fraction: float, seed: int) -> set[str]:
    """The prompt ids of the test split: a seeded hash orders prompts, the first share is test.

    With two or more prompts and a non-zero fraction, each split gets at least one prompt."""
    ids = sorted(set(prompt_ids), key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    n = round(len(ids) * test_fraction)
    if test_fraction > 0 and len(ids) >= 2:
        n = min(max(n, 1), len(ids) - 1)
    return set(ids[:n])


def reverify_dataset_row(row: Mapping[str, Any]) -> bool:
    """Re-run the checkers of a MAPL row as published (a `dpo` row of source mapl_inter, or a
    `mapl_intra` row) against its recorded checks; see `factory.mapl.reverify`."""
    if "prompt_chosen" in row:
        return reverify({"kind": "mapl_intra", "checks": row["checks"], "response": row["response"][0]["content"],
                         "chosen_prompt": row["prompt_chosen"][-1]["content"],
                         "rejected_prompt": row["prompt_rejected"][-1]["content"],
                         "chosen_constraints": row["chosen_constraints"],
                         "rejected_constraints": row["rejected_constraints"]})
    return reverify({"kind": "mapl_inter", "checks": row["checks"], "constraints": row["constraints"],
                     "prompt": row["prompt"][-1]["content"], "chosen": row["chosen"][0]["content"],
                     "rejected": row["rejected"][0]["content"]})


def collect_pair_tables(run: RunFolder) -> dict[str, pl.DataFrame]:
    """The run's `pairs` (judged pairs with rationales + MAPL inter pairs) and `mapl_intra` tables,
    merged from the `rationales` and `variants` stage files."""
    judged = run.read_stage("rationales")
    variants = run.read_stage("variants")
    frames = [f for f in (judged,) if f is not None]
    intra = pl.DataFrame()
    if variants is not None:
        frames.append(variants.filter(pl.col("source") == "mapl_inter"))
        intra = variants.filter(pl.col("source") == "mapl_intra")
    frames = [f for f in frames if f.height]
    pairs = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return {"pairs": pairs, "mapl_intra": intra}


def build_configs(config: BuildConfig, tables: Mapping[str, pl.DataFrame]
                  ) -> tuple[dict[str, dict[str, list[Row]]], dict[str, int]]:
    """The three configs split into train/test, and the counts (rows per config and split, removals)."""
    pairs = tables.get("pairs", pl.DataFrame())
    intra_table = tables.get("mapl_intra", pl.DataFrame())
    dpo, exact, near = dedupe(dpo_rows(pairs) if pairs.height else [], config.dataset.near_duplicate_threshold)
    intra_all = intra_rows(intra_table) if intra_table.height else []
    seen: set[str] = set()
    intra: list[Row] = []
    for r in intra_all:
        key = json.dumps([r["prompt_chosen"], r["prompt_rejected"], r["response"]], ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            intra.append(r)
    intra_dupes = len(intra_all) - len(intra)
    kto, conflicts = kto_rows(dpo, intra)
    test = split_test_prompts([r["prompt_id"] for r in dpo + intra], config.dataset.test_fraction, config.run.seed)
    data = {name: {split: [r for r in rows if (r["prompt_id"] in test) == (split == "test")] for split in SPLITS}
            for name, rows in (("dpo", dpo), ("kto", kto), ("mapl_intra", intra))}
    counts = {f"{name}_{split}": len(rows) for name, splits in data.items() for split, rows in splits.items()}
    counts.update(exact_duplicates_removed=exact + intra_dupes, near_duplicates_removed=near,
                  kto_conflicts_removed=conflicts, test_prompts=len(test))
    return data, counts


def _frame(name: str, rows: list[Row]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMAS[name])


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace `final` by the finished folder `tmp` with two renames, so readers see old or new."""
    trash = final.with_name(f".{final.name}.old-{os.urandom(3).hex()}")
    if final.exists():
        os.replace(final, trash)
    os.replace(tmp, final)
    shutil.rmtree(trash, ignore_errors=True)


def write_dataset(run: RunFolder, config: BuildConfig, tables: Mapping[str, pl.DataFrame],
                  manifest: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Write `dataset/` (parquet per config and split, card) and `dataset_dict/`; return the counts.

    Only non-empty splits get a file (and an entry in the card), so `load_dataset` never meets an
    empty data file. `manifest` supplies the gate figures for the card (absent: the card says so)."""
    from datasets import Dataset, DatasetDict  # type: ignore[import-untyped]

    from factory.dataset_card import render_card

    data, counts = build_configs(config, tables)
    final = run.root / "dataset"
    tmp = run.root / f".dataset.tmp-{os.urandom(3).hex()}"
    tmp.mkdir(parents=True)
    if final.is_dir():  # keep what other steps put there (agreement.json, report.html)
        for item in final.iterdir():
            if item.name not in _OWNED:
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
    written: dict[str, list[str]] = {}
    for name, splits in data.items():
        for split, rows in splits.items():
            if rows:
                atomic_write_parquet(tmp / name / f"{split}-00000-of-00001.parquet", _frame(name, rows))
                written.setdefault(name, []).append(split)
    atomic_write_text(tmp / "README.md", render_card(config, counts, written, dict(manifest or {}), run.run_id))
    _swap_in(tmp, final)

    dict_tmp = run.root / f".dataset_dict.tmp-{os.urandom(3).hex()}"
    splits = {split: Dataset.from_polars(_frame("dpo", rows)) for split, rows in data["dpo"].items() if rows}
    DatasetDict(splits).save_to_disk(str(dict_tmp))
    _swap_in(dict_tmp, run.root / "dataset_dict")
    return counts
