"""A small plotting kit for the report page: inline SVG, no dependency, text escaped everywhere.

    line_panel   the hourly means of one pollutant over a day, with limit lines and the hours above them
    aqi_strip    one cell per hour, coloured by its HJ 633 category, the AQI written inside
    bars         grouped horizontal bars (gate traffic per vehicle class)
    timeline     bars along the day's 24 hours (hazmat vehicles' stays)

Every chart is an ``<svg>`` with a viewBox, a role and an aria-label, sized by CSS; lines are ``<path>``
elements, bars ``<rect>``. Hover text is an SVG ``<title>``. Values None or NaN are gaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

INK, MUTED, GRID, NO_DATA = "#1f2937", "#6b7280", "#e5e7eb", "#eef0f3"
LIMIT_RED = "#c81e1e"


@dataclass(frozen=True)
class LimitLine:
    """A horizontal limit drawn across a panel, with its label."""

    value: float
    label: str
    colour: str = LIMIT_RED


@dataclass(frozen=True)
class Series:
    """One line of a panel: a value per hour (None: no valid value), drawn solid or dashed."""

    values: Sequence[float | None]
    colour: str
    label: str
    dashed: bool = False
    area: bool = True


@dataclass(frozen=True)
class Bar:
    """One row of a bar chart: its label and a value per group."""

    label: str
    values: Sequence[int]


@dataclass(frozen=True)
class Span:
    """One row of a timeline: hours from the day's start (None: before the day / still open at its end)."""

    label: str
    start_h: float | None
    end_h: float | None
    text: str
    colour: str
    tooltip: str


class Svg:
    """Collects elements and renders one ``<svg>``."""

    def __init__(self, width: float, height: float, label: str, css_class: str = "chart") -> None:
        self.width, self.height, self.label, self.css_class = width, height, label, css_class
        self.parts: list[str] = []

    def add(self, tag: str, content: str = "", *, tooltip: str | None = None, **attrs: object) -> None:
        """An element; attribute names with _ become - (stroke_width), a trailing _ is dropped (class_)."""
        rendered = "".join(f' {_attr(k)}="{escape(_fmt_attr(v))}"' for k, v in attrs.items() if v is not None)
        inner = (f"<title>{escape(tooltip)}</title>" if tooltip else "") + content
        self.parts.append(f"<{tag}{rendered}>{inner}</{tag}>" if inner else f"<{tag}{rendered}/>")

    def text(self, x: float, y: float, text: str, **attrs: object) -> None:
        self.add("text", escape(text), tooltip=None, x=x, y=y, **attrs)

    def render(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{self.css_class}" viewBox="0 0 {self.width} '
                f'{self.height}" width="{self.width}" height="{self.height}" role="img" '
                f'aria-label="{escape(self.label)}">{"".join(self.parts)}</svg>')


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Ticks from 0 up to at least `top`, about `count` of them, at steps of 1, 2, 2.5 or 5 x 10^k."""
    if not math.isfinite(top) or top <= 0:
        top = 1.0
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [round(i * step, 10) for i in range(math.ceil(top / step - 1e-9) + 1)]


def tick_text(value: float) -> str:
    return f"{value:g}"


def line_panel(series: Sequence[Series], limits: Sequence[LimitLine], *, label: str, unit: str,
               over: float | None = None, width: int = 360, height: int = 200) -> str:
    """The hours of one day (x: 0-24 h) of one or more series, with limit lines; the hours of the first
    series strictly above `over` are marked with red dots."""
    left, right, top, bottom = 46, 12, 14, 26
    peak = max([v for s in series for v in _finite(s.values)] + [lim.value for lim in limits] + [0.0])
    ticks = nice_ticks(peak * 1.08)
    svg = Svg(width, height, f"{label} ({unit})")
    x = _Scale(0, 24, left, width - right)
    y = _Scale(0, ticks[-1], height - bottom, top)
    _axes(svg, x, y, ticks)
    for s in series:
        _line(svg, s, x, y)
    for lim in limits:
        _limit(svg, lim, x, y)
    if series and over is not None:
        _over(svg, series[0], over, x, y)
    return svg.render()


def aqi_strip(cells: Sequence[tuple[int | None, str | None, str]], *, label: str, width: int = 1100) -> str:
    """One cell per hour: (AQI or None, colour or None, tooltip); hours written below."""
    height, top, cell_h = 58, 2, 34
    gap = 3
    cell_w = (width - gap * (len(cells) - 1)) / max(len(cells), 1)
    svg = Svg(width, height, label, "strip")
    for i, (aqi, colour, tooltip) in enumerate(cells):
        x0 = i * (cell_w + gap)
        svg.add("rect", x=x0, y=top, width=cell_w, height=cell_h, rx=4, fill=colour or NO_DATA, tooltip=tooltip)
        text = "–" if aqi is None else str(aqi)
        svg.text(x0 + cell_w / 2, top + cell_h / 2 + 5, text, text_anchor="middle", font_size=13,
                 font_weight=700 if aqi is not None else 400, fill=text_colour(colour) if aqi is not None else MUTED)
        svg.text(x0 + cell_w / 2, height - 4, f"{i:02d}", text_anchor="middle", font_size=11, fill=MUTED)
    return svg.render()


def bars(rows: Sequence[Bar], groups: Sequence[tuple[str, str]], *, label: str, width: int = 520) -> str:
    """Grouped horizontal bars: one row per Bar, one bar per (group name, colour), value written at its end."""
    left, right, row_h, bar_h, legend_h = 128, 40, 16 * len(groups) + 14, 14, 26
    height = legend_h + row_h * len(rows) + 6
    top_value = max([v for r in rows for v in r.values] + [1])
    x = _Scale(0, top_value, left, width - right)
    svg = Svg(width, height, label)
    for g, (name, colour) in enumerate(groups):
        svg.add("rect", x=left + g * 110, y=6, width=12, height=12, rx=2, fill=colour)
        svg.text(left + g * 110 + 18, 16, name, font_size=12, fill=INK)
    for r, row in enumerate(rows):
        y0 = legend_h + r * row_h
        svg.text(left - 10, y0 + row_h / 2 + 4, row.label, text_anchor="end", font_size=13, fill=INK)
        for g, value in enumerate(row.values):
            yb = y0 + 5 + g * (bar_h + 2)
            svg.add("rect", x=left, y=yb, width=max(x(value) - left, 1.5), height=bar_h, rx=3, fill=groups[g][1],
                    tooltip=f"{row.label}: {groups[g][0]} {value}")
            svg.text(x(value) + 5, yb + bar_h - 3, str(value), font_size=11, fill=INK)
    return svg.render()


def timeline(spans: Sequence[Span], *, label: str, width: int = 1100, limit_h: float | None = None) -> str:
    """Bars along the day: one row per span; an arrow where it began before the day or is still open."""
    left, right, top, row_h = 150, 20, 22, 30
    height = top + row_h * len(spans) + 8
    x = _Scale(0, 24, left, width - right)
    svg = Svg(width, height, label)
    for h in range(0, 25, 3):
        svg.add("line", x1=x(h), x2=x(h), y1=top - 4, y2=height - 6, stroke=GRID)
        svg.text(x(h), 14, f"{h:02d}:00", text_anchor="middle", font_size=11, fill=MUTED)
    for i, span in enumerate(spans):
        y0 = top + i * row_h
        start = max(span.start_h if span.start_h is not None else 0.0, 0.0)
        end = min(span.end_h if span.end_h is not None else 24.0, 24.0)
        svg.text(left - 10, y0 + 19, span.label, text_anchor="end", font_size=13, fill=INK)
        svg.add("rect", x=x(start), y=y0 + 5, width=max(x(end) - x(start), 2), height=20, rx=5, fill=span.colour,
                tooltip=span.tooltip)
        if span.start_h is None or span.start_h < 0:
            svg.add("path", d=f"M{x(0) + 9},{y0 + 9} l-6,6 l6,6", stroke="#fff", fill="none", stroke_width=2)
        if span.end_h is None:
            svg.add("path", d=f"M{x(24) - 9},{y0 + 9} l6,6 l-6,6", stroke="#fff", fill="none", stroke_width=2)
        svg.text((x(start) + x(end)) / 2, y0 + 19.5, span.text, text_anchor="middle", font_size=12,
                 font_weight=600, fill="#fff")
    return svg.render()


def text_colour(background: str | None) -> str:
    """Dark text on light colours (green, yellow, orange), white on dark ones."""
    if not background or not background.startswith("#") or len(background) != 7:
        return INK
    r, g, b = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return INK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


# --- parts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    lo: float
    hi: float
    out_lo: float
    out_hi: float

    def __call__(self, value: float) -> float:
        span = (self.hi - self.lo) or 1.0
        return round(self.out_lo + (value - self.lo) / span * (self.out_hi - self.out_lo), 2)


def _axes(svg: Svg, x: _Scale, y: _Scale, ticks: list[float]) -> None:
    for t in ticks:
        svg.add("line", x1=x.out_lo, x2=x.out_hi, y1=y(t), y2=y(t), stroke=GRID, stroke_width=1)
        svg.text(x.out_lo - 6, y(t) + 4, tick_text(t), text_anchor="end", font_size=11, fill=MUTED)
    for h in range(0, 25, 6):
        svg.add("line", x1=x(h), x2=x(h), y1=y.out_lo, y2=y.out_lo + 4, stroke=MUTED)
        svg.text(x(h), y.out_lo + 17, f"{h:02d}", text_anchor="middle", font_size=11, fill=MUTED)
    svg.add("line", x1=x.out_lo, x2=x.out_hi, y1=y.out_lo, y2=y.out_lo, stroke=MUTED)


def _line(svg: Svg, series: Series, x: _Scale, y: _Scale) -> None:
    """The series as a path through the middle of each hour, broken where an hour has no value."""
    runs = _runs(series.values)
    dash = "5 4" if series.dashed else None
    for run in runs:
        points = [(x(h + 0.5), y(v)) for h, v in run]
        if series.area and len(points) > 1:
            area = f"M{points[0][0]},{y.out_lo} " + " ".join(f"L{px},{py}" for px, py in points)
            svg.add("path", d=f"{area} L{points[-1][0]},{y.out_lo} Z", fill=series.colour, fill_opacity=0.12)
        if len(points) == 1:
            svg.add("circle", cx=points[0][0], cy=points[0][1], r=2.5, fill=series.colour)
        else:
            d = "M" + " L".join(f"{px},{py}" for px, py in points)
            svg.add("path", d=d, fill="none", stroke=series.colour, stroke_width=2 if not series.dashed else 1.6,
                    stroke_dasharray=dash, stroke_linejoin="round", stroke_linecap="round", class_="series")


def _limit(svg: Svg, limit: LimitLine, x: _Scale, y: _Scale) -> None:
    yy = y(limit.value)
    svg.add("path", d=f"M{x.out_lo},{yy} L{x.out_hi},{yy}", stroke=limit.colour, stroke_width=1.4,
            stroke_dasharray="6 4", fill="none", class_="limit")
    svg.text(x.out_hi - 2, yy - 4, limit.label, text_anchor="end", font_size=10.5, fill=limit.colour,
             font_weight=600, stroke="#fff", stroke_width=3, paint_order="stroke")  # a halo over the lines


def _over(svg: Svg, series: Series, level: float, x: _Scale, y: _Scale) -> None:
    for h, v in enumerate(series.values):
        if v is not None and math.isfinite(v) and v > level:
            svg.add("circle", cx=x(h + 0.5), cy=y(v), r=3.5, fill=LIMIT_RED, stroke="#fff", stroke_width=1,
                    tooltip=f"{h:02d}:00 {v:g} > {level:g}")


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive hours with values."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for h, v in enumerate(values):
        if v is not None and math.isfinite(v):
            current.append((h, v))
        elif current:
            runs.append(current)
            current = []
    return [*runs, current] if current else runs


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _attr(name: str) -> str:
    return name.rstrip("_").replace("_", "-")


def _fmt_attr(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)
