"""Prefect artifacts of a build: counts, the quality gate, judge agreement, a link to the report.

They are read from the run folder (`manifest.json` `counts`/`llm`/`gate`, `agreement.json`,
`report.html`), whichever exist: a build without a gate or calibration still gets its counts.
Keys are `<dataset>-counts`, `<dataset>-gate`, `<dataset>-agreement` and `<dataset>-report`, so
the UI's artifact page shows each dataset's latest figures and their history across runs.

Example::

    with prefect_test_harness():
        flow(lambda: publish_build_artifacts(Path("outputs/demo-20261104-...")))()
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

_AGREEMENT_COLUMNS = (
    "rank",
    "setting_id",
    "kind",
    "protocol",
    "scale",
    "order",
    "kappa",
    "kappa_no_ties",
    "accuracy",
    "n",
    "n_unscored",
)


def artifact_key(name: str, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "build"
    return f"{slug}-{what}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _first(run_dir: Path, *names: str) -> Path | None:
    return next((run_dir / n for n in names if (run_dir / n).is_file()), None)


def _dataset_name(run_dir: Path, manifest: dict[str, Any]) -> str:
    run_id = str(manifest.get("run_id") or run_dir.name)
    # Run ids are <name>-<YYYYmmdd>-<HHMMSS>-<hex>; the name may contain dashes itself.
    match = re.match(r"^(.*)-\d{8}-\d{6}-[0-9a-f]+$", run_id)
    return match.group(1) if match else run_id


def gate_rows(gate: Any) -> list[dict[str, Any]]:
    """The gate's checks as table rows, whether `checks` is a list of records or a name -> record map."""
    checks = gate.get("checks") if isinstance(gate, dict) else None
    if isinstance(checks, dict):
        return [{"check": name, **(v if isinstance(v, dict) else {"value": v})} for name, v in checks.items()]
    if isinstance(checks, list):
        return [c if isinstance(c, dict) else {"check": str(c)} for c in checks]
    return []


def gate_markdown(gate: Any) -> str:
    """The gate outcome as markdown: a verdict line, then one row per check."""
    if not isinstance(gate, dict):
        return "## Quality gate: not run\n\nThis build has no gate outcome in `manifest.json`.\n"
    passed = gate.get("passed")
    verdict = "PASSED" if passed is True else "FAILED" if passed is False else "not decided"
    lines = [f"## Quality gate: {verdict}", ""]
    for field in ("note", "error", "advice"):  # the gate's own words, when it has them
        if gate.get(field):
            lines += [str(gate[field]), ""]
    rows = gate_rows(gate)
    if rows:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    if passed is not True:
        lines += ["", "Publishing and trainer hand-off refuse this build unless forced (`--force`)."]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "" if value is None else str(value).replace("|", "\\|")


def agreement_rows(agreement: Any) -> list[dict[str, Any]]:
    """One row per judge setting of `agreement.json` (a `settings` list, or a bare list)."""
    entries = agreement.get("settings") if isinstance(agreement, dict) else agreement
    if not isinstance(entries, list):
        return []
    rows = []
    for entry in entries:
        if isinstance(entry, dict):
            rows.append({k: entry.get(k) for k in _AGREEMENT_COLUMNS if k in entry})
    return rows


def publish_build_artifacts(run_dir: Path, *, version: dict[str, Any] | None = None) -> list[str]:
    """Create the build's artifacts in the current flow run; returns the keys created."""
    manifest = _read_json(run_dir / "manifest.json")
    if not isinstance(manifest, dict):
        return []
    name = _dataset_name(run_dir, manifest)
    keys: list[str] = []
    counts = manifest.get("counts") or {}
    llm = manifest.get("llm") or {}
    rows = [
        {"figure": f"{k}.{sub}" if isinstance(v, dict) else k, "value": subv}
        for k, v in counts.items()
        for sub, subv in (v.items() if isinstance(v, dict) else [(None, v)])
    ]
    rows += [
        {"figure": f"llm.{k}", "value": llm[k]}
        for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd")
        if k in llm
    ]
    rows.append({"figure": "status", "value": manifest.get("status")})
    if version:
        rows.append({"figure": "version", "value": version.get("version")})
    key = artifact_key(name, "counts")
    create_table_artifact(table=rows, key=key, description=f"Counts of build {manifest.get('run_id')}")
    keys.append(key)

    key = artifact_key(name, "gate")
    create_markdown_artifact(
        markdown=gate_markdown(manifest.get("gate")),
        key=key,
        description=f"Quality gate of build {manifest.get('run_id')}",
    )
    keys.append(key)

    agreement_path = _first(run_dir, "agreement.json", "dataset/agreement.json")
    agreement = agreement_rows(_read_json(agreement_path)) if agreement_path else []
    if agreement:
        key = artifact_key(name, "agreement")
        create_table_artifact(
            table=agreement,
            key=key,
            description="Judge agreement with human labels (Cohen's kappa, 3 classes with ties), best first",
        )
        keys.append(key)

    report = _first(run_dir, "report.html", "dataset/report.html")
    if report is not None:
        key = artifact_key(name, "report")
        create_link_artifact(
            link=report.resolve().as_uri(),
            link_text="judge-agreement report (HTML)",
            key=key,
            description=f"Report of build {manifest.get('run_id')}",
        )
        keys.append(key)
    return keys
