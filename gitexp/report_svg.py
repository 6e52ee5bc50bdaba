"""Inline SVG for ``git exp report``: line charts with round ticks, filled bands, swatches.

Drawn from the same :class:`gitexp.plots.Curve` objects ``git exp plot`` draws. Every text from
notes goes through :func:`esc` (HTML-escaped, control characters made visible).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from . import plots
from .summary import printable

CHART_W, CHART_H = 720, 260
MINI_W, MINI_H = 340, 150
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 10, 38


def esc(value: Any) -> str:
    """Escaped text of any value from notes (control characters made visible too)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape(printable(str(value)), quote=True)


def esc_block(text: str) -> str:
    """Escaped multi-line text (newlines and tabs kept, other control characters made visible)."""
    return html.escape(printable(text, keep="\n\t"), quote=True)


def swatch(color: str) -> str:
    return (f'<svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" rx="2" '
            f'fill="{color}"/></svg>')


@dataclass
class Frame:
    """The plot area and the data ranges it maps (y in log10 units on a log scale)."""
    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    log_y: bool

    @property
    def pw(self) -> int:
        return self.width - LEFT - RIGHT

    @property
    def ph(self) -> int:
        return self.height - TOP - BOTTOM

    def sx(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * self.pw

    def sy(self, v: float) -> float:
        w = math.log10(v) if self.log_y else v
        return TOP + self.ph - (w - self.y0) / (self.y1 - self.y0) * self.ph

    def points(self, xs: Sequence[float], ys: Sequence[float]) -> str:
        return " ".join(f"{self.sx(x):.1f},{self.sy(y):.1f}" for x, y in zip(xs, ys) if not self.log_y or y > 0)


def _frame(curves: Sequence[plots.Curve], log_y: bool, width: int, height: int, show_raw: bool) -> Optional[Frame]:
    xs = [v for c in curves for v in c.xs]
    ys = [v for c in curves for v in c.ys] + [v for c in curves if c.raw and show_raw for v in c.raw[1]]
    ys += [v for c in curves if c.band for v in c.band[1] + c.band[2]]
    if log_y:
        ys = [v for v in ys if v > 0]
    if not xs or not ys:
        return None
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = (math.log10(min(ys)), math.log10(max(ys))) if log_y else (min(ys), max(ys))
    pad = (abs(y0) * 0.05 or 1.0) if y1 <= y0 else (y1 - y0) * 0.04
    return Frame(width, height, x0, x1, y0 - pad, y1 + pad, log_y)


def _axes(f: Frame, x_label: str) -> List[str]:
    parts = []
    yticks = plots.log_ticks(10 ** f.y0, 10 ** f.y1) if f.log_y else plots.nice_ticks(f.y0, f.y1, 5)
    yticks = [t for t in yticks if not f.log_y or t > 0]
    for t, label in zip(yticks, plots.tick_texts(yticks)):
        y = f.sy(t)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + f.pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(label)}</text>')
    xticks = plots.nice_ticks(f.x0, f.x1, 6)
    for t, label in zip(xticks, plots.tick_texts(xticks)):
        x = f.sx(t)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + f.ph}"/>'
                     f'<text x="{x:.1f}" y="{TOP + f.ph + 15}" text-anchor="middle">{esc(label)}</text>')
    parts.append(f'<rect class="axis" x="{LEFT}" y="{TOP}" width="{f.pw}" height="{f.ph}" fill="none"/>')
    parts.append(f'<text x="{LEFT + f.pw / 2:.0f}" y="{f.height - 6}" text-anchor="middle">{esc(x_label)}</text>')
    return parts


def band_polygon(f: Frame, curve: plots.Curve) -> str:
    """The filled area between mean - std and mean + std (class ``band``), behind the mean curve."""
    if not curve.band or not curve.band[0]:
        return ""
    xs, lo, hi = curve.band
    upper = f.points(xs, hi)
    lower = f.points(list(reversed(xs)), list(reversed(lo)))
    if not upper or not lower:
        return ""
    return (f'<polygon class="band" data-run="{curve.exp.sha[:8]}" fill="{curve.color}" fill-opacity="0.2" '
            f'stroke="none" points="{upper} {lower}"/>')


def _curve(f: Frame, curve: plots.Curve) -> List[str]:
    pts = f.points(curve.xs, curve.ys)
    if not pts:
        return []
    name = esc(plots.label(curve.exp, curve.status))
    if " " not in pts:  # a single point: a dot
        cx, cy = pts.split(",")
        return [f'<circle class="curve" data-run="{curve.exp.sha[:8]}" cx="{cx}" cy="{cy}" r="3" '
                f'fill="{curve.color}"><title>{name}</title></circle>']
    out = [f'<polyline class="curve" data-run="{curve.exp.sha[:8]}" fill="none" stroke="{curve.color}" '
           f'stroke-width="1.6" stroke-linejoin="round" points="{pts}"><title>{name}</title></polyline>']
    if len(curve.xs) <= plots.SPARSE_POINTS:  # a sparse curve (an eval every 500 steps): its points
        out += [f'<circle class="mark" cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{curve.color}"/>'
                for p in pts.split(" ")]
    return out


def svg_chart(curves: Sequence[plots.Curve], x_label: str, log_y: bool, width: int = CHART_W,
              height: int = CHART_H, show_raw: bool = True) -> str:
    """An SVG line chart: axes with round ticks, a polyline per curve (class ``curve``,
    ``data-run`` = the run's short id), the raw curve faint behind a smoothed one, and a
    filled band (class ``band``) behind a curve that has one (a mean over seeds)."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">']
    f = _frame(curves, log_y, width, height, show_raw)
    if f is None:
        parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">no points yet</text></svg>')
        return "".join(parts)
    parts += _axes(f, x_label)
    parts += [band_polygon(f, c) for c in curves if c.band]
    for curve in curves:
        pts = f.points(curve.raw[0], curve.raw[1]) if curve.raw and show_raw else ""
        if pts:
            parts.append(f'<polyline class="raw" fill="none" stroke="{curve.color}" stroke-opacity="0.25" '
                         f'stroke-width="1" points="{pts}"/>')
    for curve in curves:
        parts += _curve(f, curve)
    parts.append("</svg>")
    return "".join(parts)
