"""Parsing and printing of sizes (``10GB``) and durations (``2h``, ``1-12:00:00``)."""
from __future__ import annotations

import math
import re
from typing import Union

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
    "t": 1000 ** 4, "tb": 1000 ** 4,
    "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
}
# Far above any disk or memory, far below where a float loses whole bytes: a larger value is a
# typo or a forgery (``10^23 PB``), and ``inf``/``nan`` would make every sum of sizes meaningless.
MAX_SIZE = 1000 ** 6  # 1EB
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)\s*(d|h|m|s)")
_CLOCK_RE = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?$")


def parse_size(value: Union[str, int, float]) -> int:
    """Bytes in ``value``: ``10GB`` (powers of 1000) or ``10GiB`` (powers of 1024).

    Only a finite amount from 0 to :data:`MAX_SIZE`: a negative size would cancel others in a
    sum (the pre-push disk check adds them up).
    """
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{shown} is not a size; write it like 10GB or 512MB")
    if isinstance(value, (int, float)):
        number, unit = value, 1
    else:
        match = _SIZE_RE.match(value)
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{shown} is not a size; write it like 10GB, 512MB or 2GiB")
        number, unit = float(match.group(1)), _SIZE_UNITS[match.group(2).lower()]
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{shown} is not a size; write a finite amount like 10GB")
    if number < 0 or number * unit > MAX_SIZE:
        raise ValueError(f"{shown} is not a usable size: it must be from 0 to 1000000TB (1EB)")
    return int(number * unit)


def parse_duration(value: Union[str, int, float]) -> int:
    """Seconds in ``value``: ``2h``, ``90m``, ``1d12h``, ``45s``, ``HH:MM:SS`` or ``D-HH:MM:SS``."""
    text = str(value).strip().lower()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit; write it like 90m, 2h or 01:30:00")
    clock = _CLOCK_RE.match(text)
    if clock:
        days, a, b, c = clock.groups()
        if c is None:  # MM:SS as Slurm reads it
            hours, minutes, seconds = 0, int(a), int(b)
        else:
            hours, minutes, seconds = int(a), int(b), int(c)
        return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
    pos, total = 0, 0.0
    factors = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    for match in _DURATION_PART.finditer(text):
        if text[pos:match.start()].strip():
            break
        total += float(match.group(1)) * factors[match.group(2)]
        pos = match.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"{value!r} is not a duration; write it like 90m, 2h, 1d12h or 01:30:00")
    return int(total)


def format_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000.0
    return f"{n:.1f}TB"


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def slurm_time(seconds: int) -> str:
    """Slurm's ``--time`` form, D-HH:MM:SS, rounded up to whole minutes."""
    minutes = -(-seconds // 60)
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00"
