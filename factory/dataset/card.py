"""The dataset card (`dataset/README.md`): Hub YAML metadata plus a description of how the data was made.

The YAML declares one config per written folder (`dpo`, `kto`, `mapl_intra`) with its split files, so
`load_dataset(folder, "dpo")` and the Hub read the same layout, and a `description` naming the sha256
of those files, so that `datasets` caches each build's data under its own key (see `data_fingerprint`).
The prose names the prompt source, the models by role, the judge setting, the pair rule, the
rationale writer, the MAPL settings, the quality gate's figures (from `manifest.json`'s `gate`,
written by the gate step; "not recorded" when absent) and the row counts.

    fingerprints = {"dpo": data_fingerprint(folder, config_patterns("dpo", ["train", "test"]))}
    text = render_card(config, counts, {"dpo": ["train", "test"]}, manifest, "demo-20260101-000000-abcd",
                       fingerprints)
    DatasetCard(text).data.configs
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from factory.config import BuildConfig
from factory.dataset.review_queue import card_section

TAGS = ["synthetic", "preference", "dpo", "kto", "llm-as-a-judge", "rationales", "mapl"]
_DESCRIPTIONS = {
    "dpo": (
        "TRL conversational preference rows: `prompt` (the conversation up to the last user turn; "
        "multi-turn prompts hold the earlier assistant turns), `chosen` and `rejected` (one assistant "
        "message each), `rationale`, and provenance (`pair_id`, `prompt_id`, `source` = judged / mapl_inter, "
        "`chosen_model`, `rejected_model`, `judge_setting`, `margin`, `votes`, `constraints`, `checks`, "
        "`decided_by` = judge / human / checker)."
    ),
    "kto": (
        "TRL unpaired rows: `prompt`, `completion`, `label` (true = desirable), with `prompt_id`, `source`, "
        "`pair_id`, `model`."
    ),
    "mapl_intra": (
        "MAPL prompt-level preferences (arXiv 2505.12845): the same answer preferred under one "
        "prompt and not under another. `prompt_chosen` (the conversation with a prompt variant whose "
        "added constraints the response satisfies), `prompt_rejected` (the same with a variant whose "
        "constraints it violates), `response` (the one assistant message), `chosen_constraints` and "
        "`rejected_constraints` (the constraints each variant adds, JSON), `checks` (every code "
        "checker's verdict on the response, JSON), and provenance `row_id`, `prompt_id`, `model` "
        "(the model that wrote the response)."
    ),
}


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M"


def config_patterns(name: str, splits: list[str]) -> dict[str, str]:
    """The card's `data_files` of one config: a glob per split."""
    return {split: f"{name}/{split}-*.parquet" for split in splits}


def data_fingerprint(folder: Path, patterns: dict[str, str]) -> str:
    """sha256 over the files each split's glob matches under `folder`: split, relative path and bytes.

    Why the card carries it: `datasets` (read and tried in 5.2) caches what `load_dataset` reads from
    a folder or a Hub repository in `<cache>/<folder or repo name>/<config>/<version>/<hash>`, and
    `<hash>` is `Hasher.hash({"dataset_infos": ..., "builder_configs": ...})` of the card's YAML only
    (`LocalDatasetModuleFactory.get_module`, and the same in `HubDatasetModuleFactory.get_module`):
    a config's builder config holds its `data_files` *patterns*, not the files, their bytes or mtimes.
    Every build's folder is named `dataset` and declares the same patterns, so every build had one
    cache entry and `load_dataset` returned whichever build was loaded first; on the Hub, a build
    pushed over an earlier one to the same repository would be read from the earlier one's cache.
    """
    digest = hashlib.sha256()
    for split, pattern in patterns.items():
        for path in sorted(folder.glob(pattern)):
            digest.update(f"{split}\0{path.relative_to(folder).as_posix()}\0".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()


def fingerprint_description(fingerprint: str) -> str:
    """A config's `description`. `BuilderConfig.description` is a builder parameter, so `datasets`
    puts it in the cache hash (the Hub documents a config's other YAML keys as builder parameters);
    `pretty_name`, tags and the prose are not hashed, and `dataset_info` (hashed) holds only sizes,
    which two builds can share. The data's own sha256 rather than the run id, so a dataset rewritten
    in the same run (a resumed build) gets a new key too, and a copy (`publish --dry-run`) the same."""
    return f"data files sha256 {fingerprint}"


def declared_fingerprint(description: object) -> str | None:
    """The sha256 a config's `description` declares (None: an older card without one)."""
    if not isinstance(description, str):
        return None
    found = re.fullmatch(r"data files sha256 ([0-9a-f]{64})", description)
    return found.group(1) if found else None


def dataset_infos(folder: Path, written: dict[str, list[str]]) -> DatasetInfosDict:
    """Per written config, the features (from its parquet schema, so `load_dataset` casts to what is there)
    and each split's size, read from the files' parquet metadata (no rows are loaded)."""
    import pyarrow.parquet as pq
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo

    infos = DatasetInfosDict()
    for name, splits in written.items():
        split_dict = SplitDict()
        features: Features | None = None
        for split in splits:
            files = sorted(folder.glob(config_patterns(name, [split])[split]))
            metas = [pq.ParquetFile(f).metadata for f in files]
            if features is None and files:
                features = Features.from_arrow_schema(pq.read_schema(files[0]))
            split_dict.add(
                SplitInfo(
                    name=split,
                    num_examples=sum(m.num_rows for m in metas),
                    num_bytes=sum(
                        m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups)
                    ),
                )
            )
        infos[name] = DatasetInfo(
            features=features,
            splits=split_dict,
            download_size=sum(f.stat().st_size for f in folder.glob(f"{name}/*.parquet")),
        )
    return infos


def card_metadata(
    config: BuildConfig,
    counts: dict[str, int],
    written: dict[str, list[str]],
    fingerprints: dict[str, str],
    folder: Path | None = None,
) -> DatasetCardData:
    """The YAML header: license, language, tags, task, size, a config per written folder (with its data's
    sha256) and, given the dataset `folder`, `dataset_info` (features and split sizes of each config)."""
    configs = [
        {
            "config_name": name,
            **({"default": True} if name == "dpo" else {}),
            "data_files": [{"split": s, "path": p} for s, p in config_patterns(name, splits).items()],
            "description": fingerprint_description(fingerprints[name]),
        }
        for name, splits in written.items()
    ]
    total = counts.get("dpo_train", 0) + counts.get("dpo_test", 0)
    meta = DatasetCardData(
        license=config.dataset.license,
        language=list(config.dataset.language),
        pretty_name=config.run.name,
        tags=TAGS,
        task_categories=["text-generation"],
        size_categories=[_size_category(total)],
        configs=configs,
    )
    if folder is not None:
        dataset_infos(folder, written).to_dataset_card_data(meta)
    return meta


def _source(config: BuildConfig) -> str:
    p = config.prompts
    # Only a file or folder name: a local absolute path says nothing to a reader and may leak a home folder.
    what = p.describe()
    return what + (f" (first {p.limit} prompts)" if p.limit else "")


def _figure(value: object) -> str:
    """A figure as a reader wants it: kappas, rates and scores to three decimals."""
    return str(round(value, 3)) if isinstance(value, float) else str(value)


def _gate(manifest: dict[str, Any]) -> list[str]:
    gate = manifest.get("gate")
    if not isinstance(gate, dict):
        return [
            (
                "No quality-gate result was recorded for this build (the gate was disabled or did not run), "
                "so nothing here says how well the judge agrees with humans."
            )
        ]
    lines = [f"- passed: **{gate.get('passed')}**"]
    for key, value in gate.items():
        if key in ("passed", "checks"):
            continue
        if value is None or isinstance(value, (int, float, str, bool)):
            lines.append(f"- {key}: {_figure(value)}")
        elif isinstance(value, dict):
            flat = ", ".join(
                f"{k}={_figure(v)}"
                for k, v in value.items()
                if v is None or isinstance(v, (int, float, str, bool))
            )
            if flat:
                lines.append(f"- {key}: {flat}")
    checks = [c for c in gate.get("checks") or [] if isinstance(c, dict)]
    if checks:
        lines += ["", "| check | value | threshold | result |", "|---|---|---|---|"]
        for c in checks:
            value = "not measured" if c.get("value") is None else _figure(c["value"])
            relation = "<=" if str(c.get("name", "")).startswith("max_") else ">="
            lines.append(
                f"| {c.get('name')} | {value} | {relation} {_figure(c.get('threshold'))} | "
                f"{'pass' if c.get('passed') else 'FAIL'} |"
            )
    return lines


# How each prompt's answers were compared, as the judge stage does it (factory/workflows/tournaments.py).
_SELECTION = {
    "knockout": "knockout selection (answer 1 vs answer 2, the winner vs answer 3, and so on: n-1 comparisons "
    "per prompt)",
    "round_robin": "round-robin selection (every two distinct answers compared once: n(n-1)/2 comparisons per "
    "prompt; the best answer has the most wins, a tie counting half to each, equal wins settled "
    "by the judge's score margin and then by the run's seed)",
    "listwise": "listwise N-way judging (each call ranks all of a prompt's distinct answers, {calls} calls per "
    "judge model in rotated orders; Bradley-Terry strengths fitted to the rankings, pairs cut by "
    "strength gap >= {min_gap}, at most {max_pairs} per prompt; strengths in each pair's provenance)",
    "bradley_terry": "Bradley-Terry N-way judging over a round robin (every two distinct answers compared once; "
    "strengths fitted to the wins, a tie counting half; pairs cut by strength gap >= {min_gap}, "
    "at most {max_pairs} per prompt; strengths in each pair's provenance)",
}


def render_card(
    config: BuildConfig,
    counts: dict[str, int],
    written: dict[str, list[str]],
    manifest: dict[str, Any],
    run_id: str,
    fingerprints: dict[str, str],
    folder: Path | None = None,
) -> str:
    """The whole README.md: YAML metadata and prose. `fingerprints`: `data_fingerprint` per written config;
    `folder`: the dataset folder the files are in (for `dataset_info`)."""
    meta = card_metadata(config, counts, written, fingerprints, folder)
    models = "\n".join(f"- `{role}`: `{spec.model}`" for role, spec in sorted(config.models.items()))
    workflows = ", ".join(f"`{w.name}` ({w.kind})" for w in config.generation.workflows)
    r, v = config.rationales, config.variants
    selection = _SELECTION[config.judging.select].format(**config.judging.ranking.model_dump())
    verifier = (
        f", checked by a verifier (`{r.verifier_role or config.judging.setting.models[0]}`, up to "
        f"{r.max_rewrites} rewrites)"
        if r.verify
        else ""
    )
    rationale = (
        f"Every judged pair carries a rationale written by `{r.role}`{verifier}, grounded in the judges' "
        "notes (arXiv 2407.14477); a pair whose rationale could not be written is left out."
        if r.enabled
        else "Rationales were disabled for this build."
    )
    mapl = (
        f"MAPL variants (arXiv 2505.12845): {v.constraints} verifiable constraint(s) per variant prompt; "
        f"inter-sample pairs {'on' if v.inter else 'off'}, intra-sample rows {'on' if v.intra else 'off'}, "
        f"fresh answers {'on' if v.fresh else 'off'}. Their labels come from code checkers, not from an LLM."
        if v.enabled
        else "MAPL variants were disabled for this build."
    )
    count_rows = "\n".join(
        f"| {name} | {counts.get(f'{name}_train', 0)} | {counts.get(f'{name}_test', 0)} |"
        for name in _DESCRIPTIONS
    )
    columns = "\n".join(f"- `{name}`: {text}" for name, text in _DESCRIPTIONS.items() if name in written)
    body = f"""
# {config.run.name}

Synthetic preference data built by the preference factory (run `{run_id}`): prompts answered by LLM
workflows, answers compared by an LLM judge, pairs cut from the judgments, explained by rationales and
extended with verifiable MAPL prompt variants.

## How it was made

- Prompts: {_source(config)}.
- Generation workflows: {workflows}.
- Judge setting: `{config.judging.setting.setting_id}`, {selection}; pair rule `{config.pairs.rule}`,
  minimum margin {config.pairs.min_margin}, ties {"kept" if config.pairs.keep_ties else "dropped"},
  swap-inconsistent verdicts {"kept" if config.pairs.keep_inconsistent else "dropped"}.
- {rationale}
- {mapl}
- Duplicates: {counts.get("exact_duplicates_removed", 0)} exact and {counts.get("near_duplicates_removed", 0)} near
  duplicates removed (word 3-shingle Jaccard >= {config.dataset.near_duplicate_threshold}); the train/test split is
  by prompt ({counts.get("test_prompts", 0)} test prompts), so no prompt appears in both.

Models by role:

{models}

## Quality gate

{chr(10).join(_gate(manifest))}

## Human review

{card_section(manifest.get("review"))}

## Counts

| config | train | test |
|---|---|---|
{count_rows}

## Columns

{columns}

## Use

```python
from datasets import load_dataset
dpo = load_dataset("path/or/repo", "dpo")   # TRL DPOTrainer
kto = load_dataset("path/or/repo", "kto")   # TRL KTOTrainer
```

## License

{config.dataset.license}. The answers were written by the models listed above; check their terms of use
before training on them.
"""
    return DatasetCard(f"---\n{meta.to_yaml()}\n---\n{body}").content
