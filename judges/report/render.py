"""Render agreement.json into the judge-agreement report: one self-contained HTML file and markdown.

The HTML has no external asset, script or font: styles are inline in the template and charts are
inline SVG (`judges.report.svg`). Every text that reaches the page is escaped by Jinja's
autoescape or by the SVG builders, because setting ids and reasons carry model names and model
output, which are untrusted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory._util.atomic_files import atomic_write_text
from factory._util.templates import template_env
from judges.report.figures import context
from judges.report.markdown import render_markdown


def _injection(folder: Path) -> dict[str, Any] | None:
    path = folder / "injection.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [
            {
                "protocol": str(name),
                "before": _rate(v.get("before")),
                "after": _rate(v.get("after")),
                "n": v.get("n"),
            }
            for name, v in data["protocols"].items()
        ]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        return {"error": f"injection.json could not be read ({type(exc).__name__}: {exc})", "rows": []}
    return {"error": None, "rows": rows}


def _rate(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def render_html(
    agreement: dict[str, Any], gate: Mapping[str, Any] | None = None, injection: dict[str, Any] | None = None
) -> str:
    """The report as one self-contained HTML document."""
    template = template_env(Path(__file__).parent, html=True).get_template("template.html.j2")
    return template.render(**context(agreement, gate, injection))


def render_report(
    agreement: dict[str, Any], folder: str | Path, *, gate: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write `report.html` and `report.md` into `folder` (reading `injection.json` there if present)."""
    folder = Path(folder)
    injection = _injection(folder)
    html_path, md_path = folder / "report.html", folder / "report.md"
    atomic_write_text(html_path, render_html(agreement, gate, injection))
    atomic_write_text(md_path, render_markdown(agreement, gate, injection))
    return {"html": html_path, "markdown": md_path}
