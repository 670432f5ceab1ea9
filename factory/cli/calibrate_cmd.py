"""`factory calibrate`: check judge settings against human labels and rank them by Cohen's kappa.

Two forms:

    factory calibrate CONFIG.yaml                      # a CalibrationConfig (judges/calibration/config.py)
    factory calibrate --human-set pandalm --judge-model openai/gpt-4o-mini,openai/llama3 \\
        --api-base http://localhost:8000/v1 --protocol combined --order both --jury-subsets --out outputs

Each run writes `<out>/<run_id>/` (agreement.json, judgments.parquet, report.html, report.md); the
request cache `<out>/cache.sqlite` is shared by every run in `<out>`, so a rerun makes no finished
call again. `--judgments FILE` scores judgments already made and calls no model. `--output json`
prints agreement.json on stdout; `text` prints the ranked table.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from factory._util.errors import UserError
from factory.pipeline.outcome import EXIT_CODES, Outcome

err = Console(stderr=True)


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma-separated lists."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_table(agreement: dict[str, Any], console: Console) -> None:
    """The ranked settings as a rich table, then the human ceiling and where the report is."""
    # Setting ids look like rich markup ("judge[openai/m]"): every text cell is escaped.
    table = Table(
        title=f"Judge agreement on {escape(agreement['human_set']['name'])} "
        f"({agreement['human_set']['n_items']} items)",
        title_justify="left",
    )
    for name, justify in (
        ("#", "right"),
        ("setting", "left"),
        ("kappa", "right"),
        ("95% CI", "right"),
        ("no ties", "right"),
        ("acc", "right"),
        ("n", "right"),
        ("unscored", "right"),
        ("flip", "right"),
        ("longer wins", "right"),
        ("cost $", "right"),
        ("s/item", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for e in agreement["settings"]:
        lo, hi = e["ci95"]
        position = e["bias"]["position"] or {}
        table.add_row(
            str(e["rank"]),
            escape(e["setting_id"]),
            _fmt(e["kappa"]),
            "—" if lo is None else f"{lo:.2f}..{hi:.2f}",
            _fmt(e["kappa_no_ties"]),
            _fmt(e["accuracy"]),
            str(e["n"]),
            str(e["n_unscored"]),
            _fmt(position.get("flip_rate"), 2),
            _fmt(e["bias"]["length"]["longer_preferred_rate"], 2),
            _fmt(e["cost"]["cost_usd"], 4),
            _fmt(e["cost"]["latency_mean_s"], 2),
        )
    console.print(table)
    ceiling = agreement.get("human_ceiling")
    if ceiling:
        pairs = ", ".join(
            f"{escape(p['a'])}/{escape(p['b'])} {_fmt(p['kappa'])}" for p in ceiling["pairwise"]
        )
        console.print(
            f"human-human kappa (the ceiling): {pairs}; Fleiss' kappa {_fmt(ceiling['fleiss_kappa'])}"
        )
    for line in verdict_lines(agreement):
        console.print(escape(line))


def verdict_lines(agreement: dict[str, Any]) -> list[str]:
    """The sample, the baselines and, per setting, the verdict against min_kappa, recall and length control."""
    from judges.report.figures import decision_text, length_cells

    lines = []
    sample = agreement.get("sample")
    if sample and sample.get("method") != "all":
        shares = sample["label_shares"]
        ours, theirs = ("/".join(f"{shares[w][k]:.2f}" for k in ("A", "B", "tie")) for w in ("sample", "set"))
        lines.append(
            f"sample: {sample['n']} of {sample['n_set']} items, seed {sample['seed']}, stratified "
            f"(A/B/tie {ours} vs set {theirs}), {sample['prompts']['sample']} prompts"
        )
    baselines = agreement.get("baselines") or []
    if baselines:
        lines.append("baselines: " + ", ".join(f"{b['name']} kappa {_fmt(b['kappa'])}" for b in baselines))
    for e in agreement["settings"]:
        recall = e.get("class_recall") or {}
        likeness = e.get("human_likeness") or {}
        cells = length_cells(e)
        lines.append(
            f"{e['setting_id']}: {decision_text(e)} (min_kappa {agreement.get('min_kappa')}); "
            f"vs best baseline {_fmt((e.get('vs_baselines') or {}).get('margin'))}; recall "
            + "/".join(_fmt(recall.get(k), 2) for k in ("A", "B", "tie"))
            + (f"; human z {likeness['z']:.2f} ({likeness['band']})" if likeness.get("z") is not None else "")
            + f"; agreement {_fmt(cells['agreement'], 2)}, length-controlled {_fmt(cells['agreement_lc'], 2)}"
        )
    return lines


def calibrate(
    config: Annotated[Path | None, typer.Argument(help="Calibration spec (YAML); or use the flags.")] = None,
    human_set: Annotated[str | None, typer.Option("--human-set", help="Public set name or path.")] = None,
    judge_model: Annotated[
        list[str] | None,
        typer.Option("--judge-model", help="litellm model string(s); repeat or comma-separate."),
    ] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible endpoint.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Env var with the API key.")
    ] = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option("--protocol", help="direct, independent, combined (repeat or comma-separate)."),
    ] = None,
    scale: Annotated[list[str] | None, typer.Option("--scale", help="5, 10, 100 (combined scoring).")] = None,
    order: Annotated[list[str] | None, typer.Option("--order", help="fixed, random, both.")] = None,
    output: Annotated[
        str, typer.Option("--output", help="text (ranked table) or json (agreement.json).")
    ] = "text",
    jury_subsets: Annotated[
        bool, typer.Option("--jury-subsets", help="A jury per subset of >= 2 models.")
    ] = False,
    debate: Annotated[bool, typer.Option("--debate", help="Add a debate per model.")] = False,
    structured: Annotated[bool, typer.Option("--structured", help="JSON-schema judge replies.")] = False,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="Completion tokens per call.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", help="Use N items: a seeded sample stratified by label, spread over prompts."
        ),
    ] = None,
    min_kappa: Annotated[
        float | None,
        typer.Option("--min-kappa", help="Threshold the kappa intervals are read against (default 0.4)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the sample, orders and bootstrap.")
    ] = None,
    judgments: Annotated[
        Path | None,
        typer.Option("--judgments", help="Score this judgments file (parquet/jsonl); no model is called."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: outputs).")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Items judged at once.")] = None,
    bootstrap: Annotated[int | None, typer.Option("--bootstrap", help="Bootstrap resamples (CI).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Judge a human-labelled set with every judge setting, rank by kappa, write agreement.json and the report."""
    from judges.calibration.calibrate import calibrate as run_calibration
    from judges.calibration.config import load_calibration_config, parse_calibration_config

    if output not in ("text", "json"):
        raise UserError(f"--output must be text or json, got {output!r}")
    if config is not None:
        spec = load_calibration_config(config)
        overrides: dict[str, Any] = {}
        if out is not None:
            overrides["output_dir"] = str(out)
        if limit is not None:
            overrides["human_set_limit"] = limit
        if judgments is not None:
            overrides["judgments"] = str(judgments)
        if min_kappa is not None:
            overrides["min_kappa"] = min_kappa
        if seed is not None:
            overrides["seed"] = seed
        if overrides:
            spec = parse_calibration_config({**spec.model_dump(mode="json"), **overrides}, str(config))
    else:
        if human_set is None:
            raise UserError("give a calibration CONFIG file or --human-set PATH_OR_NAME")
        models: list[Any] = []
        for name in _split(judge_model):
            entry: dict[str, Any] = {"model": name, "temperature": 0.0, "api_key_env": api_key_env}
            if max_tokens is not None:
                entry["max_tokens"] = max_tokens
            models.append(entry)
        if not models and judgments is None:
            raise UserError(
                "give --judge-model M1[,M2,...] (or --judgments FILE to score judgments already made)"
            )
        data: dict[str, Any] = {
            "human_set": human_set,
            "human_set_limit": limit,
            "models": models,
            "api_base": api_base,
            "protocols": _split(protocol) or ["combined"],
            "orders": _split(order) or ["fixed"],
            "scales": [int(s) if s.isdigit() else s for s in _split(scale)] or [10],
            "jury_subsets": jury_subsets,
            "debate": debate,
            "structured": structured,
            "judgments": str(judgments) if judgments is not None else None,
            "output_dir": str(out) if out is not None else "outputs",
        }
        if concurrency is not None:
            data["concurrency"] = concurrency
        if bootstrap is not None:
            data["bootstrap"] = bootstrap
        if min_kappa is not None:
            data["min_kappa"] = min_kappa
        if seed is not None:
            data["seed"] = seed
        spec = parse_calibration_config(data, "from flags")

    for spec_model in spec.models:
        # A named key variable that is unset would fail every call: say so before any is made.
        if spec_model.api_key_env and not os.environ.get(spec_model.api_key_env):
            raise UserError(
                f"judge model {spec_model.model}: environment variable {spec_model.api_key_env} is not set"
            )

    # Started on the first progress report, so a mistake found before judging prints as one clean line.
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def on_progress(setting_id: str, done: int, total: int) -> None:
        if not tasks:
            progress.start()
        if setting_id not in tasks:
            tasks[setting_id] = progress.add_task(escape(setting_id), total=total)
        progress.update(tasks[setting_id], completed=done)

    try:
        result = run_calibration(spec, progress=on_progress)
    finally:
        if tasks:
            progress.stop()
    outcome = result.agreement.get("outcome") or {"status": "complete"}
    if output == "json":
        print(json.dumps(result.agreement, indent=2, ensure_ascii=False))
    if outcome["status"] == "failed":
        # Nothing was measured: an empty table printed with exit 0 would read as a result.
        err.print(f"[bold red]failed:[/bold red] {escape(outcome['cause'])}")
        print(result.run_dir)
        sys.exit(EXIT_CODES[Outcome.FAILED])
    if output == "json":
        return
    # Piped output gets a wide table: setting ids are long and a cut id is useless.
    print_table(result.agreement, Console() if err.is_terminal else Console(width=180))
    print(f"report: {result.run_dir / 'report.html'}")
    print(result.run_dir)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
