"""Numbers as gitexp reads them from notes and outputs, and the sparkline curve a metric's
summary keeps (its 16 values, as text). Small and import-light: ``git exp log`` uses these
without loading the config and metric-capture machinery (:mod:`gitexp.metrics` re-exports them).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


SPARK_POINTS = 16  # values in a summary's downsampled curve: ~150 bytes of JSON per metric


def spark_series(values: List[float], points: int = SPARK_POINTS) -> List[Optional[float]]:
    """The curve in at most ``points`` values: the mean of the finite values of each of
    ``points`` equal runs of consecutive values (None where a run has none, e.g. all NaN),
    each rounded to 4 significant digits to keep the summary note small."""
    n = len(values)
    if n == 0:
        return []
    buckets = min(points, n)
    out: List[Optional[float]] = []
    for b in range(buckets):
        chunk = [f for f in map(finite_number, values[b * n // buckets:(b + 1) * n // buckets]) if f is not None]
        if not chunk:
            out.append(None)
            continue
        mean = math.fsum(v / len(chunk) for v in chunk)  # each scaled first: the sum cannot overflow
        rounded = float(f"{mean:.4g}")
        out.append(rounded if math.isfinite(rounded) else mean)
    return out


def spark_text(series: List[Optional[float]]) -> str:
    """The downsampled curve as it is kept in a metric's summary: ``"0.91,0.5,,0.12"`` (an
    empty field: no finite value there). A string, not a list: a metric summary is a flat
    mapping of scalars (``summary.py`` checks notes so, also in older gitexp versions that
    read notes pulled from newer ones)."""
    return ",".join("" if v is None else f"{v:.4g}" for v in series)


def parse_spark(text: Any) -> List[Optional[float]]:
    """The values of a summary's ``spark`` (notes are untrusted: anything else gives [])."""
    if not isinstance(text, str) or not text or len(text) > 64 * SPARK_POINTS:
        return []
    try:
        out = [float(field) if field else None for field in text.split(",")[:4 * SPARK_POINTS]]
    except ValueError:
        return []
    if "n" in text or "N" in text:  # nan, inf, Infinity: only those spell a value that is not finite
        out = [v if v is not None and math.isfinite(v) else None for v in out]
    return out


def finite_number(value: Any) -> Optional[float]:
    """``value`` as a finite float, or None (not a number, a bool, NaN, inf, an int beyond float)."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence (statistics.median without importing statistics, whose
    decimal and fractions cost every run ~5 ms)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


SPARK_CHARS = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-=*^"  # where the output cannot carry the block characters


def sparkline(values: List[Optional[float]], chars: str = SPARK_CHARS) -> str:
    """One character per value, scaled from the row's lowest to its highest (a blank for a
    missing value); a flat curve is a flat line in the middle."""
    known: List[float] = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    top = len(chars) - 1
    if hi <= lo:
        return "".join([chars[top // 2] if v is not None else " " for v in values])
    span = hi - lo
    return "".join([" " if v is None else chars[round((v - lo) / span * top)] for v in values])


def spark_line(text: Any, chars: str = SPARK_CHARS, memo: Optional[Dict[str, str]] = None) -> str:
    """The sparkline of a summary's ``spark`` text ("" for none). ``memo`` maps texts to their
    block-character lines already drawn (:mod:`gitexp.summary_cache` keeps them with the
    summaries: drawing 10,000 of them is ~0.2 s of a listing, looking them up ~5 ms)."""
    if memo is not None and chars == SPARK_CHARS and text.__class__ is str:
        line = memo.get(text)
        if line is not None:
            return line
    return sparkline(parse_spark(text), chars)
