"""Drawing a :class:`gitexp.plots.Figure`: in the terminal through plotext, as PNG, SVG or PDF
through matplotlib, or as text (``.txt``: the terminal drawing without colour).

Both libraries are imported when drawing, never by ``import gitexp`` or other commands. A
curve with a band (``plot --over seed``: mean ± std) gets the area between its edges shaded:
a lighter glyph in the terminal, ``fill_between`` in pictures.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import BadInput
from .plots import PLOT_EXTRA, PLOTEXT_HINT, SPARSE_POINTS, Curve, Figure, label, nice_ticks, tick_texts, write_atomically

# -- drawing libraries: imported when drawing, never by `import gitexp` or other commands -----------
def need_plotext() -> Any:
    try:
        import plotext  # type: ignore[import-untyped]
    except ImportError:
        raise BadInput("drawing in the terminal needs plotext, which is not installed", PLOTEXT_HINT) from None
    return plotext


def need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BadInput("pictures (.png, .svg, .pdf) need matplotlib, which is not installed", PLOT_EXTRA) from None


# -- drawing: terminal ------------------------------------------------------------------------------
def terminal_size(width: Optional[int], height: Optional[int], charts: int) -> Tuple[int, int]:
    cols, lines = shutil.get_terminal_size((100, 30))
    w = width or max(40, min(cols, 160))
    h = height or max(10, min(25, (lines - 2 - 2 * charts) // max(charts, 1)))
    return w, h


def render_terminal(fig: Figure, width: int, height: int, color: bool) -> str:
    """Each metric's chart drawn by plotext (braille lines in colour; without colour one
    marker character per run), then a key: run colour or marker, name, id, status."""
    plt = need_plotext()
    out = []
    for metric in fig.metrics:
        curves = fig.curves[metric]
        plt.clf()
        plt.plotsize(width, height)
        plt.theme("clear" if not color else "pro")
        drawn = False
        for curve in curves:  # bands first: the mean curves draw over them
            if curve.band and curve.xs:
                _terminal_band(plt, curve, curves, width, height, color)
        for curve in curves:
            if not curve.xs:
                continue
            marker = "braille" if color else curve.marker
            plt.plot(curve.xs, curve.ys, marker=marker, color=curve.term_color if color else None)
            drawn = True
        title = metric + (" (smoothed)" if any(c.raw for c in curves) else "")
        if fig.dropped.get(metric):
            title += f", {fig.dropped[metric]} point(s) <= 0 not shown on the log scale"
        plt.title(title)
        plt.xlabel(fig.x_label())
        if drawn:
            _terminal_ticks(plt, fig, curves)
        if fig.log_y and drawn:
            plt.yscale("log")
        text = plt.build()
        if not drawn:
            text = f"{metric}: no points yet"
        out.append(text if color else plt.uncolorize(text))
    out.append(key_text(fig, color))
    return "\n".join(out)


BAND_GLYPH = "·"  # lighter than the braille (or marker) of the mean curve drawn over it


def _terminal_band(plt: Any, curve: Curve, curves: Sequence[Curve], width: int, height: int, color: bool) -> None:
    """Shade mean - std to mean + std: a light glyph on a grid of about one point per character
    cell between the edges (plotext has no fill between two curves)."""
    assert curve.band is not None
    xs, lo, hi = curve.band
    if not xs:
        return
    all_x, all_y = _extent(curves)
    dy = (max(all_y) - min(all_y)) / max(height - 4, 1) or 1.0
    dx = (max(all_x) - min(all_x)) / max(2 * width, 1) or 1.0  # finer than a column: no gaps
    px: List[float] = []
    py: List[float] = []
    j = 0
    x = xs[0]
    while x <= xs[-1]:
        while j + 1 < len(xs) and xs[j + 1] < x:
            j += 1
        k = min(j + 1, len(xs) - 1)
        t = 0.0 if xs[k] == xs[j] else (x - xs[j]) / (xs[k] - xs[j])
        low, high = lo[j] + t * (lo[k] - lo[j]), hi[j] + t * (hi[k] - hi[j])
        y = low
        while y <= high:
            px.append(x)
            py.append(y)
            y += dy
        x += dx
    if px:
        plt.scatter(px, py, marker=BAND_GLYPH, color=curve.term_color if color else None)


def _extent(curves: Sequence[Curve]) -> Tuple[List[float], List[float]]:
    """Every x and y a chart shows: the curves' points and their bands' edges."""
    xs = [v for c in curves for v in c.xs] + [v for c in curves if c.band for v in c.band[0]]
    ys = [v for c in curves for v in c.ys] + [v for c in curves if c.band for v in c.band[1] + c.band[2]]
    return xs, ys


def _terminal_ticks(plt: Any, fig: Figure, curves: Sequence[Curve]) -> None:
    xs, ys = _extent(curves)
    ticks = nice_ticks(min(xs), max(xs), 5)
    if ticks:
        plt.xticks(ticks, tick_texts(ticks))
    if not fig.log_y:
        yt = nice_ticks(min(ys), max(ys), 5)
        if yt:
            plt.yticks(yt, tick_texts(yt))


def key_text(fig: Figure, color: bool) -> str:
    """One line per run: its colour (or marker), name, id and status when not finished."""
    from .summary import printable

    seen: Dict[str, Curve] = {}
    for curves in fig.curves.values():
        for curve in curves:
            seen.setdefault(curve.exp.sha, curve)
    lines = []
    for curve in seen.values():
        mark = f"\x1b[38;5;{curve.term_color}m━━\x1b[0m" if color else f"{curve.marker} "
        points = sum(len(c.xs) for cs in fig.curves.values() for c in cs if c.exp.sha == curve.exp.sha)
        lines.append(f"{mark} {printable(label(curve.exp, curve.status))}" + ("" if points else "  (no points)"))
    return "\n".join(lines)


def use_color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- drawing: files ---------------------------------------------------------------------------------
def render_file(fig: Figure, path: str, kind: str, width: int = 0, height: int = 0) -> None:
    """Write the figure to ``path`` (png, svg, pdf through matplotlib; txt: the terminal
    drawing without colour), atomically."""
    if kind == "txt":
        w, h = width or 100, height or 20
        text = render_terminal(fig, w, h, color=False) + "\n"

        def write_text(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
        write_atomically(path, write_text)
        return
    mpl_figure = matplotlib_figure(fig, width, height)
    write_atomically(path, lambda tmp: mpl_figure.savefig(tmp, format=kind, dpi=100))


def matplotlib_figure(fig: Figure, width: int = 0, height: int = 0) -> Any:
    """A matplotlib Figure (no pyplot, so no GUI backend and no global state): one panel per
    metric, a colour per run, the raw curve faint behind the smoothed one, the key on the right."""
    need_matplotlib()
    from matplotlib.figure import Figure as MplFigure

    runs = {c.exp.sha for cs in fig.curves.values() for c in cs}
    panels = len(fig.metrics)
    w_in = (width or 1000) / 100
    h_in = (height or 0) / 100 or (1.0 + 3.0 * panels)
    with_key = len(runs) > 1
    mpl = MplFigure(figsize=(w_in + (3.2 if with_key else 0), h_in), layout="constrained")
    axes = mpl.subplots(panels, 1, squeeze=False, sharex=True)[:, 0]
    handles: Dict[str, Any] = {}
    for ax, metric in zip(axes, fig.metrics):
        for curve in fig.curves[metric]:
            if not curve.xs:
                continue
            if curve.band:
                ax.fill_between(curve.band[0], curve.band[1], curve.band[2], color=curve.color, alpha=0.2,
                                linewidth=0)
            if curve.raw:
                ax.plot(curve.raw[0], curve.raw[1], color=curve.color, alpha=0.25, linewidth=0.8)
            (line,) = ax.plot(curve.xs, curve.ys, color=curve.color, linewidth=1.4, **_mpl_markers(curve))
            handles.setdefault(curve.exp.sha, (line, _mpl_text(label(curve.exp, curve.status))))
        title = _mpl_text(metric) + (" (smoothed)" if any(c.raw for c in fig.curves[metric]) else "")
        if fig.dropped.get(metric):
            title += f"  ({fig.dropped[metric]} point(s) <= 0 left out of the log scale)"
        ax.set_title(title, loc="left", fontsize=11)
        ax.grid(True, alpha=0.3)
        if fig.log_y:
            ax.set_yscale("log")
    axes[-1].set_xlabel(fig.x_label())
    if fig.title:
        mpl.suptitle(_mpl_text(fig.title), fontsize=10)
    if with_key and handles:
        lines, names = zip(*handles.values())
        mpl.legend(lines, names, loc="outside right upper", fontsize=8, frameon=False)
    return mpl




def _mpl_markers(curve: Curve) -> Dict[str, Any]:
    """A marker on each point of a sparse curve (an eval metric every 500 steps, a single
    point): a line alone would show a single point not at all and a few points as bare
    segments, hiding where the values are."""
    n = len(curve.xs)
    if n > SPARSE_POINTS:
        return {}
    return {"marker": "o", "markersize": 5.0 if n <= 3 else 3.0}


def _mpl_text(text: str) -> str:
    """Text from notes for matplotlib: control characters escaped, ``$`` not read as maths."""
    from .summary import printable

    return printable(text).replace("$", r"\$")
