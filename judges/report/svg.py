"""Small inline SVG charts for the report: a forest plot, confusion heatmaps, rate dot plots, bars.

No plotting library and no script: each function returns one `<svg>` element as text, with every
label escaped (setting ids carry model names, which are user input), sized by `viewBox` so that
it scales with the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
BLUE, GREY, GREEN, ORANGE, INK, MUTED = "#2563eb", "#9ca3af", "#16a34a", "#ea580c", "#111827", "#6b7280"


LABEL_CHARS = 50  # what fits in the 370-pixel label column at 12px


def _t(text: object, limit: int = 0) -> str:
    """Escaped text; past `limit` characters the middle is cut, since setting ids differ at their ends
    (".../fixed" vs ".../both") as much as at their starts."""
    value = str(text)
    if limit and len(value) > limit:
        head = (limit - 1) // 2
        value = value[:head] + "…" + value[len(value) - (limit - 1 - head) :]
    return escape(value, quote=True)


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px;{FONT}" role="img" aria-label="{_t(label)}">'
    )
    return Markup(head + "".join(body) + "</svg>")


@dataclass(frozen=True)
class ForestRow:
    """One row of the forest plot: a point estimate with an optional interval."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    published: bool = False  # drawn grey and hollow: a figure from a paper, not measured here


def forest_plot(
    rows: Sequence[ForestRow],
    ceiling: tuple[float, float] | None = None,
    ceiling_label: str = "human-human",
    width: int = 1000,
) -> Markup:
    """Kappa per setting with its 95% interval; a shaded band for the human ceiling."""
    label_w, right_pad, row_h, top = 370, 34, 24, 34
    height = top + row_h * len(rows) + 40
    values = [v for r in rows for v in (r.value, r.low, r.high) if v is not None]
    lo = min([-0.2, *values])
    lo = max(-1.0, (int(lo * 5) - 1) / 5 if lo < -0.2 else lo)
    hi = 1.0
    plot_w = width - label_w - right_pad

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    body = []
    if ceiling is not None:
        a, b = ceiling
        body.append(
            f'<rect x="{x(a):.1f}" y="{top - 6}" width="{max(2.0, x(b) - x(a)):.1f}" '
            f'height="{row_h * len(rows) + 6}" fill="{GREEN}" opacity="0.16"/>'
        )
        body.append(
            f'<text x="{x(b):.1f}" y="{top - 12}" font-size="12" text-anchor="end" fill="{GREEN}">'
            f"{_t(ceiling_label)} {a:.2f}–{b:.2f}</text>"
        )
    tick = lo
    while tick <= hi + 1e-9:
        body.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 6}" y2="{top + row_h * len(rows)}" '
            f'stroke="{"#374151" if abs(tick) < 1e-9 else "#e5e7eb"}" stroke-width="1"/>'
        )
        body.append(
            f'<text x="{x(tick):.1f}" y="{top + row_h * len(rows) + 16}" font-size="12" '
            f'text-anchor="middle" fill="{MUTED}">{tick:.1f}</text>'
        )
        tick = round(tick + 0.2, 10)
    body.append(
        f'<text x="{label_w + plot_w / 2:.1f}" y="{height - 6}" font-size="12" text-anchor="middle" '
        f'fill="{MUTED}">Cohen\'s kappa vs human labels (3 classes, ties kept) with 95% bootstrap interval</text>'
    )
    for i, row in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        color = GREY if row.published else BLUE
        body.append(
            f'<text x="{label_w - 10}" y="{cy + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="{MUTED if row.published else INK}"><title>{_t(row.label)}</title>'
            f"{_t(row.label, LABEL_CHARS)}</text>"
        )
        if row.value is None:
            body.append(
                f'<text x="{x(0) + 6:.1f}" y="{cy + 4:.1f}" font-size="12" fill="{MUTED}">undefined</text>'
            )
            continue
        if row.low is not None and row.high is not None:
            body.append(
                f'<line x1="{x(row.low):.1f}" x2="{x(row.high):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                f'stroke="{color}" stroke-width="2"/>'
            )
        fill = "white" if row.published else color
        body.append(
            f'<circle cx="{x(row.value):.1f}" cy="{cy:.1f}" r="5" fill="{fill}" stroke="{color}" '
            f'stroke-width="2"><title>{_t(row.label)}: {row.value:.3f}</title></circle>'
        )
        body.append(
            f'<text x="{width - 4}" y="{cy + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="{MUTED}">{row.value:.2f}</text>'
        )
    return _svg(width, height, body, "forest plot of kappa per setting")


def confusion_heatmap(
    confusion: dict[str, dict[str, int]],
    title: str,
    labels: Sequence[str] = ("A", "B", "tie"),
    cell: int = 46,
) -> Markup:
    """Human label (rows) x judge verdict (columns), shaded by each row's share; `title` names the
    setting for screen readers (the page prints it beside the chart, where it can wrap)."""
    left, top = 64, 34
    width, height = left + cell * len(labels) + 12, top + cell * len(labels) + 10
    middle_x, middle_y = left + cell * len(labels) / 2, top + cell * len(labels) / 2
    body = [
        f'<text x="{middle_x:.0f}" y="12" font-size="11" text-anchor="middle" fill="{MUTED}">judge verdict</text>',
        (
            f'<text x="12" y="{middle_y:.0f}" font-size="11" text-anchor="middle" fill="{MUTED}" '
            f'transform="rotate(-90 12 {middle_y:.0f})">human label</text>'
        ),
    ]
    for j, col in enumerate(labels):
        body.append(
            f'<text x="{left + cell * j + cell / 2:.0f}" y="{top - 6}" font-size="12" text-anchor="middle" '
            f'fill="{INK}">{_t(col)}</text>'
        )
    for i, row in enumerate(labels):
        counts = confusion.get(row, {})
        total = sum(counts.values()) or 1
        body.append(
            f'<text x="{left - 8}" y="{top + cell * i + cell / 2 + 4:.0f}" font-size="12" text-anchor="end" '
            f'fill="{INK}">{_t(row)}</text>'
        )
        for j, col in enumerate(labels):
            n = int(counts.get(col, 0))
            share = n / total
            diagonal = i == j
            rgb = "22,163,74" if diagonal else "234,88,12"
            body.append(
                f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell - 2}" height="{cell - 2}" '
                f'rx="3" fill="rgba({rgb},{0.08 + 0.8 * share:.3f})"><title>human {_t(row)}, judge {_t(col)}: '
                f"{n} ({share:.0%} of the row)</title></rect>"
            )
            body.append(
                f'<text x="{left + cell * j + cell / 2 - 1:.0f}" y="{top + cell * i + cell / 2 + 4:.0f}" '
                f'font-size="13" text-anchor="middle" fill="{"white" if share > 0.55 else INK}">{n}</text>'
            )
    return _svg(width, height, body, f"confusion matrix of {title}")


@dataclass(frozen=True)
class RatePoint:
    """One marker of a rate dot plot."""

    series: str
    value: float | None
    n: int = 0


def rate_plot(
    rows: Sequence[tuple[str, Sequence[RatePoint]]],
    series: Sequence[tuple[str, str]],
    width: int = 1000,
    reference: float = 0.5,
    reference_label: str = "0.5 = no preference",
) -> Markup:
    """Rates in [0, 1] per setting, one marker per series (name, colour), with a reference line."""
    label_w, right_pad, row_h, top = 370, 30, 24, 24
    height = top + row_h * len(rows) + 30
    plot_w = width - label_w - right_pad

    def x(v: float) -> float:
        return label_w + v * plot_w

    colors = dict(series)  # the page prints the legend, where it can wrap
    body = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 6}" y2="{top + row_h * len(rows)}" '
            f'stroke="{"#374151" if tick == reference else "#e5e7eb"}" '
            f'stroke-dasharray="{"4 3" if tick == reference else "0"}"/>'
        )
        body.append(
            f'<text x="{x(tick):.1f}" y="{top + row_h * len(rows) + 16}" font-size="12" text-anchor="middle" '
            f'fill="{MUTED}">{tick:.2f}</text>'
        )
    body.append(
        f'<text x="{x(reference) + 4:.1f}" y="{top - 10}" font-size="11" fill="{MUTED}">'
        f"{_t(reference_label)}</text>"
    )
    for i, (label, points) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        body.append(
            f'<text x="{label_w - 10}" y="{cy + 4:.1f}" font-size="12" text-anchor="end" fill="{INK}">'
            f"<title>{_t(label)}</title>{_t(label, LABEL_CHARS)}</text>"
        )
        for point in points:
            if point.value is None:
                continue
            body.append(
                f'<circle cx="{x(point.value):.1f}" cy="{cy:.1f}" r="5" fill="{colors.get(point.series, BLUE)}" '
                f'opacity="0.85"><title>{_t(point.series)}: {point.value:.2f} (n={point.n})</title></circle>'
            )
    return _svg(width, height, body, "bias rates per setting")


def hbars(rows: Sequence[tuple[str, float]], unit: str, width: int = 1000, color: str = BLUE) -> Markup:
    """Horizontal bars, one per labelled value (cost, latency)."""
    label_w, row_h, top, right_pad = 370, 22, 8, 110
    height = top + row_h * len(rows) + 8
    peak = max((v for _, v in rows), default=0.0) or 1.0
    plot_w = width - label_w - right_pad
    body = []
    for i, (label, value) in enumerate(rows):
        y = top + row_h * i
        w = max(1.0, value / peak * plot_w) if value > 0 else 0.0
        body.append(
            f'<text x="{label_w - 10}" y="{y + 15}" font-size="12" text-anchor="end" fill="{INK}">'
            f"<title>{_t(label)}</title>{_t(label, LABEL_CHARS)}</text>"
        )
        body.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="2" fill="{color}"/>'
        )
        body.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12" fill="{MUTED}">'
            f"{_t(_fmt(value))} {_t(unit)}</text>"
        )
    return _svg(width, height, body, f"bars in {unit}")


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"
