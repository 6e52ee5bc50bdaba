"""The settings of a run target: :class:`Option` (how one is checked) and :func:`check_option`.

Each runner declares its settings as ``OPTIONS`` (name -> :class:`Option`);
:mod:`gitexp.targets` checks a target's settings against them. This module sits below both,
so targets does not import the runners it describes (it finds their schemas through
:mod:`gitexp.runners.registry`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional

from ..summary import printable
from ..units import parse_duration, parse_size

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 controls
ENV_ITEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Option:
    """One setting of a run target: ``kind`` says how it is checked (see :func:`check_option`)."""

    kind: str  # "text", "count" (whole number >= 1), "duration", "size", "list", "env" (KEY=VALUE list), "gpus"
    help: str


def check_option(key: str, value: Any, option: Option) -> Optional[str]:
    """What is wrong with ``value`` for ``key``, or None."""
    for item in value if isinstance(value, list) else [value]:
        # A newline or escape in a path, host or setup line would reach a shell, a script or
        # git's URL parser there as something else than what was typed.
        if isinstance(item, str) and CONTROL.search(item):
            return (f"{key} '{printable(item)[:120]}' holds a control character (newline, tab, escape...); "
                    "give it as one line of plain text")
    if option.kind == "env":
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if not isinstance(v, str) or not ENV_ITEM.match(v)]
        if bad:
            return f"{key} '{printable(str(bad[0]))[:120]}' is not KEY=VALUE (KEY: letters, digits, _)"
        return None
    if option.kind == "list":
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items):
            return f"{key} must be a list of strings"
        return None
    if isinstance(value, (list, dict)):
        return f"{key} must be a single value, got {value!r}"
    try:
        if option.kind == "count":
            if isinstance(value, bool) or int(value) < 1:
                raise ValueError
        elif option.kind == "duration":
            parse_duration(value)
        elif option.kind == "size":
            parse_size(value)
        elif option.kind == "gpus":
            parse_gpu_list(value)
    except (ValueError, TypeError) as exc:
        if option.kind == "count":
            return f"{key} must be a whole number of at least 1, got {value!r}"
        return f"{key}: {exc}" if str(exc) else f"{key}: not a usable value: {value!r}"
    return None


def parse_gpu_list(value: Any) -> List[int]:
    """``0,1`` (or a number) as distinct GPU indices."""
    text = str(value)
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected GPU indices like 0,1, got {text!r}") from None
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"expected distinct GPU indices like 0,1, got {text!r}")
    return ids
