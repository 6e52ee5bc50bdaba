"""Curves of experiments: which runs, which points, smoothing, x axes, bands.

Used by ``git exp plot`` (drawn by :mod:`gitexp.plot_draw`: terminal through plotext; PNG,
SVG and PDF through matplotlib) and by ``git exp report`` (which draws the same
:class:`Curve` objects as inline SVG itself, :mod:`gitexp.report_svg`).

The data side is plain Python (no NumPy): selecting experiments (the latest sweep by
default), reading their histories in one batched ``cat-file`` call (a run in progress on this
machine is read from its run directory, :mod:`gitexp.live`), turning a history into x/y points
for an x axis (step, time since the run started, epoch), exponential smoothing, and min/max
decimation so that a curve of 10,000 points costs what the picture can show.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import live as live_mod
from .config import closest
from .errors import BadInput
from .metrics import finite_number, is_number
from .lifecycle import OPEN as OPEN  # what plot_cmd asks live states for
from .lifecycle import Status
from .notes import Experiment, Store
from .repo import Repo
from .timing import start_of

X_AXES = ("step", "time", "epoch")
FILE_FORMATS = ("png", "svg", "pdf", "txt")
PLOT_EXTRA = "pip install 'gitexp[plot]' (or: pip install matplotlib)"
PLOTEXT_HINT = "pip install 'plotext>=5.2,<6'"

# 256-colour terminal codes (plotext takes them as ints) and, in the same order, hex colours for
# pictures: a run has the same colour in every chart of one plot or report.
TERM_COLORS = [33, 208, 34, 196, 129, 94, 205, 244, 142, 37, 27, 214, 40, 160, 99, 130, 213, 250, 184, 44]
HEX_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf", "#393b79", "#e6550d", "#31a354", "#a50f15", "#756bb1", "#843c39",
              "#de9ed6", "#636363", "#8c6d31", "#3182bd"]
MARKERS = "•+x*o#@%&=~^"  # one per run where colours are off (NO_COLOR, a pipe, -o x.txt)


# -- which experiments ----------------------------------------------------------------------------
def latest_group(exps: Sequence[Experiment]) -> Tuple[Optional[str], List[Experiment]]:
    """The newest experiment's group (a sweep's id) and its members; a newest experiment
    without a group stands alone."""
    dated = [e for e in exps if is_number(e.summary.get("created"))]
    if not dated:
        return None, []
    newest = max(dated, key=lambda e: (e.summary["created"], e.name))
    group = newest.summary.get("group")
    if not isinstance(group, str) or not group:
        return None, [newest]
    return group, [e for e in exps if e.summary.get("group") == group]


def in_order(exps: Iterable[Experiment]) -> List[Experiment]:
    """Oldest first, then by name; each experiment once."""
    seen: Dict[str, Experiment] = {}
    for exp in exps:
        seen.setdefault(exp.sha, exp)
    return sorted(seen.values(), key=lambda e: (e.summary.get("created") if is_number(e.summary.get("created"))
                                                else 0, e.name))


def select(store: Store, exps: Sequence[Experiment], idents: Sequence[str],
           group: Optional[str]) -> Tuple[List[Experiment], str]:
    """The experiments named by ``idents`` and/or ``group``, else the latest sweep; and words
    saying what was chosen (for titles). Unknown ids and empty groups are BadInput."""
    if not exps:
        raise BadInput("no experiments here yet", "git exp run config.yaml records one")
    by_sha = {e.sha: e for e in exps}
    chosen: List[Experiment] = []
    for ident in idents:
        found = store.find(ident)  # BadInput for unknown or ambiguous ids
        chosen.append(by_sha.get(found.sha, found))
    what = []
    if group is not None:
        members = [e for e in exps if e.summary.get("group") == group]
        if not members:
            groups = sorted({g for g in (e.summary.get("group") for e in exps) if isinstance(g, str)})
            raise BadInput(f"no experiment in group {group!r}", closest(group, groups) if groups else
                           "no experiment has a group")
        chosen += members
        what.append(f"group {group}")
    if idents:
        what.append(f"{len(idents)} experiment(s)")
    if not idents and group is None:
        latest, chosen = latest_group(exps)
        what.append(f"group {latest}" if latest else chosen[0].name)
    return in_order(chosen), ", ".join(what)


def known_metrics(exps: Iterable[Experiment]) -> List[str]:
    """Metrics the experiments have: recorded (their summaries) or declared (their goals)."""
    names: Dict[str, None] = {}
    for exp in exps:
        for source in (exp.summary.get("goals"), exp.summary.get("metrics")):
            if isinstance(source, dict):
                for name in source:
                    names.setdefault(str(name), None)
    return list(names)


def default_metrics(exps: Iterable[Experiment]) -> List[str]:
    """The first metric declared with a goal (``git exp log`` shows it first too)."""
    for exp in exps:
        goals = exp.summary.get("goals")
        if isinstance(goals, dict) and goals:
            return [str(next(iter(goals)))]
    names = known_metrics(exps)
    return names[:1]


def check_metrics(exps: Sequence[Experiment], wanted: Sequence[str]) -> None:
    """BadInput naming a metric none of ``exps`` has, and listing the ones they have."""
    have = known_metrics(exps)
    for name in wanted:
        if name not in have:
            listed = ", ".join(sorted(have)) if have else "none yet"
            hint = closest(name, sorted(have)) if have else ""
            raise BadInput(f"no selected experiment has a metric {name!r} (they have: {listed})",
                           hint if hint.startswith("did you mean") else None)


def split_args(store: Store, exps: Sequence[Experiment], args: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``git exp plot val_err train_err a1b2 c3d4``: (metrics, ids). A word that is a metric
    of any experiment is a metric; else it must name an experiment."""
    if not exps:
        raise BadInput("no experiments here yet", "git exp run config.yaml records one")
    metrics_all = set(known_metrics(exps))
    metrics: List[str] = []
    idents: List[str] = []
    for word in args:
        if word in metrics_all:
            metrics.append(word)
            continue
        try:
            store.find(word)
        except BadInput:
            listed = ", ".join(sorted(metrics_all)) or "none recorded yet"
            hint = closest(word, sorted(metrics_all)) if metrics_all else ""
            raise BadInput(f"{word!r} is neither a metric nor an experiment id (metrics: {listed})",
                           hint if hint.startswith("did you mean") else "see `git exp log` for ids and names") from None
        idents.append(word)
    return metrics, idents


# -- their histories --------------------------------------------------------------------------------
def histories(repo: Repo, store: Store, exps: Sequence[Experiment],
              statuses: Mapping[str, str]) -> Dict[str, List[Dict[str, Any]]]:
    """sha -> history (:func:`gitexp.live.histories`: runs in progress here from their run
    directory, a resumed experiment across its chain, the rest from their notes in one call)."""
    return live_mod.histories(repo, store, exps, statuses)


def epoch_of_steps(history: Sequence[Mapping[str, Any]]) -> Optional[List[Tuple[float, float]]]:
    """(step, epoch) where the program logged ``epoch`` (gitexp.log(step=i, epoch=e)), in step
    order; None when it never did."""
    marks = []
    for record in history:
        step, epoch = finite_number(record.get("step")), finite_number(record.get("epoch"))
        if step is not None and epoch is not None:
            marks.append((step, epoch))
    return sorted(marks) or None


def _interp(marks: Sequence[Tuple[float, float]], x: float, keys: Sequence[float]) -> float:
    """Piecewise-linear through ``marks`` (sorted by x), held flat beyond the ends."""
    import bisect

    i = bisect.bisect_right(keys, x)
    if i == 0:
        return marks[0][1]
    if i == len(marks):
        return marks[-1][1]
    (x0, y0), (x1, y1) = marks[i - 1], marks[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def points(history: Sequence[Mapping[str, Any]], metric: str, x: str,
           start: Optional[float] = None) -> Tuple[List[float], List[float]]:
    """The metric's finite values against the x axis: ``step``; ``time`` (seconds since
    ``start``); ``epoch`` (the logged ``epoch`` values, interpolated by step in between)."""
    xs: List[float] = []
    ys: List[float] = []
    marks = epoch_of_steps(history) if x == "epoch" else None
    keys = [m[0] for m in marks] if marks else []
    for record in history:
        y = finite_number(record.get(metric))
        if y is None:
            continue
        if x == "time":
            when = finite_number(record.get("time"))
            if when is None or start is None:
                continue
            xs.append(when - start)
        else:
            step = finite_number(record.get("step"))
            if step is None:
                continue
            if x == "epoch":
                if not marks:
                    continue
                own = finite_number(record.get("epoch"))
                xs.append(own if own is not None else _interp(marks, step, keys))
            else:
                xs.append(step)
        ys.append(y)
    if x == "time" and xs:
        order = sorted(range(len(xs)), key=xs.__getitem__)
        xs, ys = [xs[i] for i in order], [ys[i] for i in order]
    return xs, ys


def smooth(ys: Sequence[float], weight: float) -> List[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): weight 0
    is the raw curve, 0.9 very smooth; the first points are not pulled towards zero."""
    if weight <= 0 or not ys:
        return list(ys)
    out: List[float] = []
    last = 0.0
    for n, y in enumerate(ys, 1):
        last = last * weight + (1 - weight) * y
        out.append(last / (1 - weight ** n))
    return out


def decimate(xs: Sequence[float], ys: Sequence[float], buckets: int) -> Tuple[List[float], List[float]]:
    """At most ~2 points per bucket of consecutive points: each bucket's lowest and highest
    (in x order), so spikes survive while 10,000 points shrink to what a picture shows."""
    n = len(xs)
    if buckets <= 0 or n <= 2 * buckets:
        return list(xs), list(ys)
    out_x: List[float] = []
    out_y: List[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        chunk = range(lo, hi)
        i_min = min(chunk, key=ys.__getitem__)
        i_max = max(chunk, key=ys.__getitem__)
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


# -- curves -------------------------------------------------------------------------------------------
@dataclass
class Curve:
    exp: Experiment
    metric: str
    xs: List[float]
    ys: List[float]
    raw: Optional[Tuple[List[float], List[float]]] = None  # before smoothing, when smoothed
    index: int = 0  # the run's place in the selection: its colour and marker
    status: str = ""
    band: Optional[Tuple[List[float], List[float], List[float]]] = None  # (xs, mean - std, mean + std)

    @property
    def color(self) -> str:
        return HEX_COLORS[self.index % len(HEX_COLORS)]

    @property
    def term_color(self) -> int:
        return TERM_COLORS[self.index % len(TERM_COLORS)]

    @property
    def marker(self) -> str:
        return MARKERS[self.index % len(MARKERS)]


@dataclass
class Figure:
    """What to draw: curves by metric, the x axis, and words for titles."""
    metrics: List[str]
    curves: Dict[str, List[Curve]]
    x: str
    log_y: bool
    title: str
    time_unit: Tuple[str, float] = ("s", 1.0)
    dropped: Dict[str, int] = field(default_factory=dict)  # metric -> points left out (log-y: <= 0)

    @property
    def empty(self) -> bool:
        return not any(c.xs for curves in self.curves.values() for c in curves)

    def x_label(self) -> str:
        if self.x == "time":
            return f"time since start ({self.time_unit[0]})"
        return self.x


def time_unit(seconds: float) -> Tuple[str, float]:
    """The unit that keeps the numbers on a time axis short: s, min or h."""
    if seconds >= 3 * 3600:
        return "h", 3600.0
    if seconds >= 300:
        return "min", 60.0
    return "s", 1.0


def build(exps: Sequence[Experiment], hists: Mapping[str, List[Dict[str, Any]]], metrics: Sequence[str],
          x: str = "step", log_y: bool = False, smoothing: float = 0.0, title: str = "",
          statuses: Optional[Mapping[str, str]] = None, buckets: int = 0) -> Figure:
    """The curves of ``metrics`` for ``exps``. ``buckets`` > 0 decimates each curve to about
    that many min/max pairs (after smoothing, so smoothing sees every point)."""
    if x == "epoch" and not any(epoch_of_steps(hists.get(e.sha) or []) for e in exps):
        raise BadInput("no selected experiment logged an epoch",
                       "log it with gitexp.log(step=..., epoch=...), or use --x step or --x time")
    fig = Figure(list(metrics), {m: [] for m in metrics}, x, log_y, title)
    longest = 0.0
    for index, exp in enumerate(exps):
        history = hists.get(exp.sha) or []
        start = start_of(history, exp.summary)
        for metric in metrics:
            xs, ys = points(history, metric, x, start)
            if log_y:
                kept = [(a, b) for a, b in zip(xs, ys) if b > 0]
                if len(kept) < len(xs):
                    fig.dropped[metric] = fig.dropped.get(metric, 0) + len(xs) - len(kept)
                xs, ys = [a for a, _ in kept], [b for _, b in kept]
            raw = None
            if smoothing > 0 and ys:
                raw = (xs, ys)
                ys = smooth(ys, smoothing)
            if buckets:
                xs, ys = decimate(xs, ys, buckets)
                if raw is not None:
                    raw = decimate(raw[0], raw[1], buckets)
            if xs and x == "time":
                longest = max(longest, xs[-1])
            fig.curves[metric].append(Curve(exp, metric, xs, ys, raw, index,
                                            (statuses or {}).get(exp.sha, exp.status)))
    if x == "time":
        fig.time_unit = time_unit(longest)
        unit = fig.time_unit[1]
        if unit != 1.0:
            for curves in fig.curves.values():
                for curve in curves:
                    curve.xs = [v / unit for v in curve.xs]
                    if curve.raw:
                        curve.raw = ([v / unit for v in curve.raw[0]], curve.raw[1])
    return fig


Band = List[Tuple[float, float, float, int]]  # (step, mean, std, n): gitexp.seeds.mean_curve


def attach_bands(fig: Figure, bands: Mapping[str, Mapping[str, Band]], buckets: int = 0) -> None:
    """Give each curve of a mean over seeds (sha -> metric -> (step, mean, std, n)) its band,
    mean - std to mean + std, on the figure's x axis (step; epoch and time have no band)."""
    if fig.x != "step":
        return
    for metric, curves in fig.curves.items():
        for curve in curves:
            rows = (bands.get(curve.exp.sha) or {}).get(metric)
            if not rows:
                continue
            xs = [r[0] for r in rows]
            lo, hi = [r[1] - r[2] for r in rows], [r[1] + r[2] for r in rows]
            if fig.log_y:
                kept = [i for i in range(len(xs)) if lo[i] > 0]
                xs, lo, hi = [xs[i] for i in kept], [lo[i] for i in kept], [hi[i] for i in kept]
            curve.band = decimate_band(xs, lo, hi, buckets)


def decimate_band(xs: Sequence[float], lo: Sequence[float], hi: Sequence[float], buckets: int
                  ) -> Tuple[List[float], List[float], List[float]]:
    """At most 2 points per bucket: its first and last x, both with the bucket's lowest lower
    edge and highest upper edge (the envelope: a decimated band never looks narrower)."""
    n = len(xs)
    if buckets <= 0 or n <= 2 * buckets:
        return list(xs), list(lo), list(hi)
    out: Tuple[List[float], List[float], List[float]] = ([], [], [])
    for b in range(buckets):
        first, end = b * n // buckets, (b + 1) * n // buckets
        if first >= end:
            continue
        low, high = min(lo[first:end]), max(hi[first:end])
        for i in sorted({first, end - 1}):
            out[0].append(xs[i])
            out[1].append(low)
            out[2].append(high)
    return out


def label(exp: Experiment, status: str = "") -> str:
    text = f"{exp.name} ({exp.sha[:8]})"
    return text + (f" {status}" if status and status != Status.FINISHED else "")


# -- axes ---------------------------------------------------------------------------------------------
def nice_ticks(lo: float, hi: float, count: int = 5) -> List[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) covering [lo, hi], about ``count`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + step * len(ticks)
    return ticks


def log_ticks(lo: float, hi: float) -> List[float]:
    """Powers of ten in [lo, hi] (with 2 and 5 between when the range is narrow); at least the ends."""
    if lo <= 0 or hi <= 0 or not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if b - a <= 2 else (1,)
    ticks = [m * 10.0 ** e for e in range(a, b + 1) for m in mults if lo <= m * 10.0 ** e <= hi]
    return ticks if len(ticks) >= 2 else [lo, hi]


def tick_text(value: float, digits: int = 0) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.{digits}e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")
    return f"{value:.{max(4, digits + 1)}g}"


def tick_texts(values: Sequence[float]) -> List[str]:
    """Labels for ticks, with as many digits as it takes for neighbours to differ (8.1e10,
    8.2e10 rather than 8e10 twice)."""
    for digits in range(0, 10):
        texts = [tick_text(v, digits) for v in values]
        if len(set(texts)) == len(texts):
            return texts
    return [repr(v) for v in values]


# -- output paths -------------------------------------------------------------------------------------
def output_kind(path: str) -> str:
    """The format an output path asks for, by its extension; BadInput for others."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FILE_FORMATS:
        raise BadInput(f"cannot tell what to write to {path!r} from its extension",
                       "give a name ending in " + ", ".join("." + f for f in FILE_FORMATS))
    return ext


def check_writable(path: str) -> None:
    """BadInput when ``path`` cannot be written (missing or read-only directory, a directory
    in its place), before any work is done and before anything is written."""
    full = os.path.abspath(path)
    parent = os.path.dirname(full)
    if os.path.isdir(full):
        raise BadInput(f"cannot write {path}: it is a directory", "give a file name")
    if not os.path.isdir(parent):
        raise BadInput(f"cannot write {path}: the directory {parent} does not exist", "create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (os.path.exists(full) and not os.access(full, os.W_OK)):
        raise BadInput(f"cannot write {path}: permission denied", "choose a writable place")


def write_atomically(path: str, write: Any) -> None:
    """Call ``write(tmp_path)``, then rename the file into place: a failed write leaves
    nothing behind (no half-written picture, no old one replaced)."""
    full = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".gitexp-", suffix=os.path.splitext(full)[1], dir=os.path.dirname(full))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, full)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


SPARSE_POINTS = 60  # a curve with at most this many points gets a marker on each

