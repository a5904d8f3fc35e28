"""Charts drawn on the server as inline SVG: no script, no chart library, nothing fetched from elsewhere.

One kind is enough for the dashboard: stacked bars over categories (days), with a value axis, category labels, a
legend, a `<title>` on every bar segment (the browser's tooltip, with the exact value) and, optionally, a link on
each segment. Every label is escaped: series names are model names, which any client can choose.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-friendly (Okabe-Ito, then Tableau), readable on white.
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#4e79a7",
    "#9c755f",
    "#bab0ac",
)
OTHER_COLOUR = "#8a8f98"


@dataclass
class Series:
    name: str
    values: Sequence[int | float | Decimal]  # one per category
    links: Sequence[str | None] = ()  # one per category (optional): where a click on the segment goes
    colour: str | None = None


@dataclass
class StackedBars:
    title: str
    categories: Sequence[str]  # x axis, e.g. ISO days
    series: Sequence[Series]
    axis_format: Callable[[object], str] = str  # value-axis labels (rounded for people)
    exact_format: Callable[[object], str] = str  # tooltips: the exact value
    category_label: Callable[[str], str] = lambda category: category  # x-axis labels
    integer: bool = False  # counts: whole-number ticks on the value axis
    width: int = 640
    height: int = 240
    legend: bool = True
    extra_class: str = ""
    margins: dict = field(default_factory=lambda: {"left": 64, "right": 12, "top": 12, "bottom": 28})


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (the top of the value axis)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** _floor_log10(value)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def axis_top(value: float, *, integer: bool = False) -> float:
    """The top of a value axis with four equal, round steps (whole numbers for counts)."""
    step = nice_ceiling(value / 4) if value > 0 else (1.0 if integer else 0.25)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    return step * 4


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent


def _num(value) -> float:
    return float(value or 0)


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def stacked_bars(chart: StackedBars) -> SafeString:
    """The chart as an `<svg>` element sized by its viewBox (it scales to its container's width)."""
    m = chart.margins
    plot_w = chart.width - m["left"] - m["right"]
    plot_h = chart.height - m["top"] - m["bottom"]
    n = max(len(chart.categories), 1)
    totals = [sum(_num(s.values[i]) for s in chart.series) for i in range(len(chart.categories))]
    top = axis_top(max(totals, default=0), integer=chart.integer)
    slot = plot_w / n
    bar_w = max(slot * 0.8, 1.0)

    parts = [
        f'<svg class="chart {escape(chart.extra_class)}" role="img" viewBox="0 0 {chart.width} {chart.height}" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" font-size="11" '
        f'font-family="system-ui, sans-serif">',
        f"<title>{escape(chart.title)}</title>",
    ]
    # Value axis: 0, ¼, ½, ¾ and the top, with grid lines.
    for i in range(5):
        value = top * i / 4
        y = m["top"] + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{m["left"]}" x2="{m["left"] + plot_w}" y1="{_fmt(y)}" y2="{_fmt(y)}" '
            f'stroke="{"#9aa3ad" if i == 0 else "#e3e7ec"}"/>'
            f'<text class="y-label" x="{m["left"] - 6}" y="{_fmt(y + 4)}" text-anchor="end" fill="#5f6b7a">'
            f"{escape(chart.axis_format((int(value) if chart.integer else Decimal(str(value))) if i else 0))}</text>"
        )
    # Category labels: at most about ten, evenly spaced, the last one always.
    every = max(1, -(-n // 10))
    for i, category in enumerate(chart.categories):
        if i % every and i != n - 1:
            continue
        x = m["left"] + slot * i + slot / 2
        parts.append(
            f'<text class="x-label" x="{_fmt(x)}" y="{chart.height - 8}" text-anchor="middle" fill="#5f6b7a">'
            f"{escape(chart.category_label(category))}</text>"
        )
    # Bars, bottom-up in series order; one <title> per segment.
    for i, category in enumerate(chart.categories):
        x = m["left"] + slot * i + (slot - bar_w) / 2
        base = m["top"] + plot_h
        for index, series in enumerate(chart.series):
            value = series.values[i]
            if not _num(value):
                continue
            h = plot_h * _num(value) / top
            base -= h
            colour = series.colour or PALETTE[index % len(PALETTE)]
            tip = f"{category} · {series.name}: {chart.exact_format(value)}"
            rect = (
                f'<rect x="{_fmt(x)}" y="{_fmt(base)}" width="{_fmt(bar_w)}" height="{_fmt(max(h, 0.5))}" '
                f'fill="{escape(colour)}"><title>{escape(tip)}</title></rect>'
            )
            link = series.links[i] if i < len(series.links) else None
            parts.append(f'<a href="{escape(link)}">{rect}</a>' if link else rect)
    parts.append("</svg>")
    svg = "".join(parts)
    if chart.legend and chart.series:
        svg += _legend(chart.series)
    return mark_safe(svg)  # noqa: S308 - every interpolated label and link above is escaped


def _legend(series: Sequence[Series]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{escape(s.colour or PALETTE[i % len(PALETTE)])}"></span>'
        f"{escape(s.name)}</li>"
        for i, s in enumerate(series)
    )
    return f'<ul class="chart-legend">{items}</ul>'
