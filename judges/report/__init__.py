"""The judge-agreement report: agreement.json rendered as one self-contained HTML page plus markdown.

Example:
    >>> from judges.report import render_report
    >>> paths = render_report(agreement, run_dir)   # writes report.html and report.md
"""

from judges.report.figures import PUBLISHED, band
from judges.report.markdown import render_markdown
from judges.report.render import render_html, render_report

__all__ = ["PUBLISHED", "band", "render_html", "render_markdown", "render_report"]
