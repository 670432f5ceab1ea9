"""The quality gate: may this build's data reach a trainer or the Hub?

After a build's tables are merged, the build's own judge setting judges `gate.human_set_limit`
items of the named human set (a seeded sample stratified by label and spread over prompts, see
`judges.humans.sampling`) through the build's gateway (so its request cache makes a rerun free) and the
gate compares what it measures with the checks in `GateSettings`:

* `min_kappa`: Cohen's kappa (3 classes, ties kept) of the judge setting against the human labels,
  read through its 95% interval (`kappa_bound: interval`): the lower bound at or above the
  threshold passes, the upper bound below fails, an interval across it is *undecided* and says
  the n that would decide (`judges.calibration.decision`);
* `beat_baselines`: the judge's kappa above the best trivial baseline's on the same items
  (the longer answer, the first position, the answer with a list; `judges.metrics.baselines`);
* `min_class_recall`: the recall of every human label present (A, B, tie);
* `min_human_z`: Judge's Verdict z-score of the judge against the annotators (`judges.metrics.human_likeness`);
* `min_inter_juror_kappa`: the mean Cohen's kappa between every two jurors on the build's own
  judgments (jury votes; needs no humans);
* `max_flip_rate`: the share of items whose winner reverses when the answer order is swapped,
  from the build's own judgments when it judged both orders, else measured on the human set.

A threshold left unset is not checked. A check that cannot be measured fails (say, an inter-juror
threshold on a single judge): a gate never passes on a figure it does not have. The outcome
(`verdict`) is `fail` when a check fails, else `undecided` when a check is undecided, else `pass`;
`passed` (what publishing and training read) is true only for `pass`. The figures go to
`agreement.json` and `report.html` in the run folder (and in `dataset/`), and the outcome to
`manifest.json` as `gate` (`passed`, `verdict`, `checks`, `figures`); a build whose gate did not
pass is not approved and publishing and training refuse it unless forced.

Example:
    >>> gate = run_gate(ctx, tables)
    >>> gate["verdict"], [(c["name"], c["status"], c["value"], c["threshold"]) for c in gate["checks"]]
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

import polars as pl

from factory._util.errors import UserError
from factory._util.json_columns import load_json
from factory._util.sync import run_sync
from factory.config import GateSettings
from factory.pipeline.context import BuildContext
from factory.records import GateCheck, GateOutcome

STATUS_MARK = {"pass": "ok  ", "fail": "FAIL", "undecided": "??  "}


def _check(
    name: str,
    value: float | None,
    threshold: float,
    *,
    higher_is_better: bool,
    note: str | None = None,
    strict: bool = False,
) -> GateCheck:
    if value is None:
        passed = False
    elif higher_is_better:
        passed = value > threshold if strict else value >= threshold
    else:
        passed = value <= threshold
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "passed": passed,
        "status": "pass" if passed else "fail",
        "note": note,
    }


def _kappa_check(settings: GateSettings, figures: Mapping[str, Any], note: str | None) -> GateCheck:
    from judges.calibration.decision import describe, kappa_decision

    kappa = figures.get("kappa")
    decision = kappa_decision(
        kappa,
        figures.get("kappa_ci95"),
        int(figures.get("n") or 0),
        settings.min_kappa,
        se=figures.get("kappa_se"),
        bound=settings.kappa_bound,
    )
    status = decision["verdict"]
    check = _check("min_kappa", kappa, settings.min_kappa, higher_is_better=True, note=note)
    check["status"], check["passed"], check["bound"] = status, status == "pass", settings.kappa_bound
    check["interval"], check["need_n"] = decision["interval"], decision["need_n"]
    if status == "undecided":
        check["note"] = "; ".join(filter(None, [describe(decision), note]))
    return check


def _baseline_check(settings: GateSettings, figures: Mapping[str, Any]) -> GateCheck:
    kappas = {name: (figures.get("baseline_kappas") or {}).get(name) for name in settings.baselines}
    defined = {name: k for name, k in kappas.items() if k is not None}
    best = max(defined.items(), key=lambda item: item[1])[0] if defined else None
    kappa = figures.get("kappa")
    margin = None
    if best is not None and kappa is not None:
        margin = kappa - defined[best]
    listed = ", ".join(f"{name} {'—' if k is None else f'{k:.3f}'}" for name, k in kappas.items())
    note = (
        f"judge kappa minus the best baseline's ({best}); baselines: {listed}"
        if best
        else "not measured: no baseline has a defined kappa on these items"
    )
    return _check(
        "beat_baselines", margin, settings.baseline_margin, higher_is_better=True, note=note, strict=True
    )


def _recall_check(settings: GateSettings, figures: Mapping[str, Any]) -> GateCheck:
    recall = {k: v for k, v in (figures.get("class_recall") or {}).items() if v is not None}
    worst = min(recall.values()) if recall else None
    note = ", ".join(f"{k} {v:.2f}" for k, v in recall.items()) or "not measured"
    return _check(
        "min_class_recall",
        worst,
        settings.min_class_recall or 0.0,
        higher_is_better=True,
        note=f"lowest recall over the human labels present ({note})",
    )


def evaluate_checks(
    settings: GateSettings, figures: Mapping[str, Any], notes: Mapping[str, str] | None = None
) -> list[GateCheck]:
    """The gate's checks from measured `figures` (`kappa`, `kappa_ci95`, `n`, `baseline_kappas`,
    `class_recall`, `human_z`, `inter_juror_kappa`, `flip_rate`; None = not measured).

    Each check has `status` pass / fail / undecided and `passed` (status == pass).

    >>> evaluate_checks(GateSettings(min_kappa=0.4), {"kappa": 0.1, "kappa_ci95": [0.0, 0.2]})[0]["status"]
    'fail'
    """
    notes = notes or {}
    checks: list[GateCheck] = []
    human = settings.human_set is not None
    if human:
        checks.append(_kappa_check(settings, figures, notes.get("kappa")))
        if settings.beat_baselines:
            checks.append(_baseline_check(settings, figures))
        if settings.min_class_recall is not None:
            checks.append(_recall_check(settings, figures))
        if settings.min_human_z is not None:
            checks.append(
                _check(
                    "min_human_z",
                    figures.get("human_z"),
                    settings.min_human_z,
                    higher_is_better=True,
                    note=notes.get("human_z"),
                )
            )
    # (check name, threshold or None when unset, figure it reads, higher is better)
    wanted = [
        ("min_inter_juror_kappa", settings.min_inter_juror_kappa, "inter_juror_kappa", True),
        ("max_flip_rate", settings.max_flip_rate, "flip_rate", False),
    ]
    checks += [
        _check(name, figures.get(figure), threshold, higher_is_better=higher, note=notes.get(figure))
        for name, threshold, figure, higher in wanted
        if threshold is not None
    ]
    return checks


def gate_verdict(checks: list[GateCheck], error: str | None) -> str:
    """fail if anything failed (or the gate could not measure), else undecided if a check is, else pass."""
    statuses = {c["status"] for c in checks}
    if error is not None or "fail" in statuses:
        return "fail"
    return "undecided" if "undecided" in statuses else "pass"


def _jury_rows(judgments: pl.DataFrame) -> list[dict[str, Any]]:  # gate columns of judgments, from parquet
    if judgments.height == 0 or "kind" not in judgments.columns or "votes" not in judgments.columns:
        return []
    return judgments.filter(pl.col("kind") == "jury").to_dicts()


def _build_flip_rate(judgments: pl.DataFrame) -> tuple[float | None, int]:
    """Flip rate on the build's own `order: both` judgments (their votes hold the two orders' verdicts)."""
    from judges.metrics.bias import position_bias

    if judgments.height == 0 or "votes" not in judgments.columns or "order" not in judgments.columns:
        return None, 0
    ab, ba = [], []
    for row in judgments.filter(pl.col("order") == "both").to_dicts():
        votes = load_json(row["votes"])
        if isinstance(votes, list) and len(votes) == 2:
            ab.append(votes[0])
            ba.append(votes[1])
    if not ab:
        return None, 0
    result = position_bias(ab, ba)
    return result["flip_rate"], result["n"]


def _advice(settings: GateSettings, checks: list[GateCheck], judge: str) -> str | None:
    failed = [c["name"] for c in checks if c["status"] == "fail"]
    undecided = [c for c in checks if c["status"] == "undecided"]
    if not failed and undecided:
        need = undecided[0].get("need_n")
        return (
            f"The gate could not decide: the kappa interval {_interval(undecided[0])} straddles min_kappa "
            f"{settings.min_kappa} on {settings.human_set_limit} items. Raise gate.human_set_limit"
            + (f" to at least {need}" if need else "")
            + " and rebuild (the build's data and the cached judge calls are reused)."
        )
    if not failed:
        return None
    text = (
        f"The gate failed on {', '.join(failed)}. The data and this report are kept, marked not approved. "
        "Lowering a threshold until it passes would hide the problem; change the judge instead."
    )
    if "min_kappa" in failed:
        text += (
            f" The judge setting {judge} does not agree with humans well enough: a capable judge model "
            "(published figures on PandaLM: GPT-4o-mini 0.613, Llama-3.1-8B 0.523, GPT-4o 0.688) or a jury of "
            f"such models would be expected to clear min_kappa {settings.min_kappa}; point judging.setting at "
            "one and rebuild. Check it first with `factory calibrate`."
        )
    return text


def _interval(check: Mapping[str, Any]) -> str:
    lo, hi = check.get("interval") or (None, None)
    return "[—]" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"


def _disabled() -> GateOutcome:
    """The manifest's `gate` of a build whose config turns the gate off."""
    return {
        "enabled": False,
        "passed": True,
        "verdict": "pass",
        "checks": [],
        "figures": {},
        "note": "the gate is disabled in the config (gate.enabled: false): nothing was checked",
    }


async def run_gate_async(ctx: BuildContext, tables: Mapping[str, pl.DataFrame]) -> GateOutcome:
    """Measure, check, write agreement.json + report into the run folder; return the manifest's `gate`."""
    settings = ctx.config.gate
    setting = ctx.config.judging.setting
    if not settings.enabled:
        return _disabled()
    # Imported here, after the enabled check: scikit-learn and the report stack cost seconds to import.
    from judges.calibration.agreement import build_agreement
    from judges.calibration.outputs import write_outputs
    from judges.calibration.sweep import evaluate, judged_settings
    from judges.humans.human_sets import load_human_set
    from judges.metrics.scoring import juror_agreement

    judgments = tables.get("judgments", pl.DataFrame())
    figures: dict[str, Any] = {}
    notes: dict[str, str] = {}
    error = None
    agreement = None

    jurors = juror_agreement(_jury_rows(judgments))
    figures["inter_juror_kappa"] = jurors["mean_inter_juror_kappa"] if jurors else None
    figures["krippendorff_alpha"] = jurors["krippendorff_alpha"] if jurors else None
    if jurors is None:
        notes["inter_juror_kappa"] = (
            "not measurable: the build's judgments have no jury votes (use kind: jury)"
        )
    flip_rate, flip_n = _build_flip_rate(judgments)
    if flip_rate is not None:
        figures["flip_rate"] = flip_rate
        notes["flip_rate"] = f"on the build's own {flip_n} judgments in both orders"

    if settings.human_set is not None:
        wanted = [setting]
        flip_setting = None
        if settings.max_flip_rate is not None and flip_rate is None:
            # The build did not judge both orders: measure the swap on the human set instead.
            flip_setting = (
                setting if setting.order == "both" else setting.model_copy(update={"order": "both"})
            )
            if flip_setting is not setting:
                wanted.append(flip_setting)
        try:
            human = load_human_set(
                settings.human_set, limit=settings.human_set_limit, seed=ctx.config.run.seed
            )
            ctx.progress.gate_items(len(judged_settings(wanted)) * human.frame.height)
            entries, _ = await evaluate(
                ctx.gateway,
                wanted,
                human,
                concurrency=ctx.config.run.concurrency,
                seed=ctx.config.run.seed,
                progress=lambda setting_id, done, _total: ctx.progress.gate_done(setting_id, done),
                tag_prefix="gate/",
            )
        except UserError as exc:
            error = f"human set {settings.human_set!r}: {exc}"
            notes["kappa"] = "not measured: the human set could not be loaded"
        else:
            by_id = {e["setting_id"]: e for e in entries}
            agreement = build_agreement(
                human,
                entries,
                run_id=ctx.run.run_id,
                source="quality gate",
                human_set_spec=settings.human_set,
                min_kappa=settings.min_kappa,
                seed=ctx.config.run.seed,
            )
            main = next(e for e in agreement["settings"] if e["setting_id"] == setting.setting_id)
            likeness = main["human_likeness"] or {}
            figures.update(
                {
                    "kappa": main["kappa"],
                    "kappa_ci95": main["ci95"],
                    "kappa_se": main["kappa_se"],
                    "kappa_no_ties": main["kappa_no_ties"],
                    "accuracy": main["accuracy"],
                    "n": main["n"],
                    "n_unscored": main["n_unscored"],
                    "baseline_kappas": {b["name"]: b["kappa"] for b in agreement["baselines"]},
                    "class_recall": main["class_recall"],
                    "human_z": likeness.get("z"),
                    "human_band": likeness.get("band"),
                    "human_mean_kappa": likeness.get("human_mean_kappa"),
                    "length_controlled_agreement": main["length_control"]["agreement"]["length_controlled"],
                    "sample": {
                        k: (human.sample or {}).get(k) for k in ("method", "seed", "n", "item_ids_sha256")
                    },
                }
            )
            notes["kappa"] = f"{setting.setting_id} on {main['n']} items of {human.name}"
            notes["human_z"] = (
                f"{likeness['band']}: judge-annotator kappa {likeness['judge_mean_kappa']:.3f} vs "
                f"annotator pairs {likeness['human_mean_kappa']:.3f}"
                if likeness.get("z") is not None
                else "not measured: needs a human set with >= 3 annotators who do not all agree alike"
            )
            if main["n"] == 0 and main["unscored_reasons"]:
                notes["kappa"] += f"; nothing scored (reason: {next(iter(main['unscored_reasons']))})"
            if flip_setting is not None:
                position = by_id[flip_setting.setting_id]["bias"]["position"] or {}
                figures["flip_rate"] = position.get("flip_rate")
                notes["flip_rate"] = (
                    f"measured on {position.get('n', 0)} items of {human.name} in both orders"
                )
            agreement["focus"] = setting.setting_id  # the report leads with the gated setting
    checks = evaluate_checks(settings, figures, notes)
    verdict = gate_verdict(checks, error)
    gate: GateOutcome = {
        "enabled": True,
        "passed": verdict == "pass",
        "verdict": verdict,
        "judge_setting": setting.setting_id,
        "human_set": settings.human_set,
        "human_set_limit": settings.human_set_limit,
        "checks": checks,
        "figures": figures,
        "error": error,
        "advice": _advice(settings, checks, setting.setting_id) if error is None else None,
    }
    if agreement is not None:
        gate["report"], gate["agreement"] = "report.html", "agreement.json"
        agreement["gate"] = gate
        paths = write_outputs(ctx.run.root, agreement, gate=gate)
        # The dataset writer keeps files it does not own in dataset/, so the Hub folder carries them too.
        dataset = ctx.run.root / "dataset"
        dataset.mkdir(exist_ok=True)
        for name in ("agreement", "html"):
            shutil.copy2(paths[name], dataset / paths[name].name)
    return gate


def run_gate(ctx: BuildContext, tables: Mapping[str, pl.DataFrame]) -> GateOutcome:
    """`run_gate_async` for synchronous callers (the build's `finalize`), inside or outside an event loop."""
    ctx.progress.gate_items(0)  # no human-set items unless the gate judges a human set (it says so then)
    if not ctx.config.gate.enabled:
        return _disabled()
    from factory._util.interrupts import stoppable

    # Stoppable: a Ctrl-C during the gate's judging cancels it (the build then ends as interrupted).
    return run_sync(lambda: stoppable(run_gate_async(ctx, tables)))


def summary_lines(gate: Mapping[str, Any] | None, run_dir: Any = None) -> list[str]:
    """Plain-text lines for the end of `factory build`: the outcome, every check, what it means."""
    if not gate:
        return ["quality gate: not run; the build is not approved"]
    if not gate.get("enabled", True):
        return ["quality gate: disabled in the config; nothing was checked"]
    verdict = gate.get("verdict") or ("pass" if gate.get("passed") else "fail")
    heading = {"pass": "passed", "fail": "FAILED", "undecided": "UNDECIDED"}[verdict]
    lines = [f"quality gate {heading} ({gate.get('judge_setting')} against {gate.get('human_set')})"]
    for c in gate.get("checks", []):
        value = "not measured" if c["value"] is None else f"{c['value']:.3f}"
        if c.get("bound") == "interval":
            value += f" {_interval(c)}"
            needs = f"needs 95% lower bound >= {c['threshold']}"
        else:
            relation = (
                "<=" if c["name"].startswith("max_") else ">" if c["name"] == "beat_baselines" else ">="
            )
            needs = f"needs {relation} {c['threshold']}"
        note = f" [{c['note']}]" if c.get("note") else ""
        status = c.get("status") or ("pass" if c["passed"] else "fail")
        lines.append(f"  {STATUS_MARK[status]} {c['name']}: {value} ({needs}){note}")
    figures = gate.get("figures") or {}
    recall = figures.get("class_recall")
    if recall and not any(c["name"] == "min_class_recall" for c in gate.get("checks", [])):
        shown = ", ".join(f"{k} {'—' if v is None else f'{v:.2f}'}" for k, v in recall.items())
        lines.append(f"  info recall per human label: {shown}")
    if figures.get("human_z") is not None and not any(
        c["name"] == "min_human_z" for c in gate.get("checks", [])
    ):
        lines.append(f"  info human-likeness z {figures['human_z']:.2f} ({figures.get('human_band')})")
    if gate.get("error"):
        lines.append(f"  error: {gate['error']}")
    if not gate.get("passed"):
        where = f" (report: {run_dir}/report.html)" if run_dir is not None and gate.get("report") else ""
        lines.append(
            "  the data is written but NOT approved: `factory publish` and trainer hand-off refuse it "
            f"unless forced{where}"
        )
        if gate.get("advice"):
            lines.append(f"  {gate['advice']}")
    return lines
