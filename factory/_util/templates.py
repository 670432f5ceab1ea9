"""The one Jinja environment factory, for every template of the project (prompts and the HTML report).

Every environment is strict (`StrictUndefined`: a template typo is an error, never an empty string)
and keeps block tags off the output (`trim_blocks`, `lstrip_blocks`). Prompts are plain text, so
autoescape is off; the report is HTML, so it asks for `html=True`. One environment per folder and
flavour, built on first use (importing a module that renders templates costs nothing until then).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2


@cache
def template_env(folder: Path, *, html: bool = False) -> jinja2.Environment:
    """The environment of the templates in `folder` (HTML-escaped when `html`)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # The templates ship with the package: checking each file's mtime on every render (one stat
        # per template per call) buys nothing.
        auto_reload=False,
    )


def render_template(folder: Path, name: str, **values: object) -> str:
    """Template `name` of `folder` rendered with `values`, stripped of surrounding whitespace (a prompt)."""
    return template_env(folder).get_template(name).render(**values).strip()
