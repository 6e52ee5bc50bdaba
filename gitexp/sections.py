"""The config sections that other modules own: the registry :mod:`gitexp.config` calls.

``checkpoints:``, ``diagnostics:``, ``notify:`` and ``budget:`` are parsed by the modules that
act on them (:mod:`gitexp.checkpoints`, :mod:`gitexp.diagnostics`, :mod:`gitexp.notify`,
:mod:`gitexp.timing`). Those sit above config (they read configs), so config must not import
them: it calls the parsers installed here, in the order of :data:`ORDER`. The one list of
them is :mod:`gitexp.watchers`, which installs it when imported; the CLI and the executor
import it, so every gitexp process has it before it reads a config (the owning modules load
on the first parse). A process that parses a
config without it gets a :class:`RuntimeError` saying so, never a config with a section
silently left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

Fail = Callable[[str, str, Optional[str]], Exception]

# The owned sections, in the order config parses them (so which error a config with two bad
# sections gets is fixed). ExperimentConfig has one field for each.
ORDER = ("checkpoints", "diagnostics", "notify", "budget")


@dataclass(frozen=True)
class Given:
    """What a section's parser gets besides its own value."""

    data: Mapping[str, Any]  # the whole config mapping (``budget:`` names one of its params)
    fail: Fail  # fail(key, message, hint) makes the config error naming the file and line
    stored: bool  # read back from an experiment commit: it was checked when it was recorded


@dataclass(frozen=True)
class Section:
    key: str
    parse: Callable[[Any, Given], Any]  # (the section's value or None, given) -> the parsed value
    # (the parsed value, the whole ExperimentConfig, fail): checks against the rest of a new
    # config (not a stored one), once it is built
    check: Optional[Callable[[Any, Any, Fail], None]] = None


_loader: List[Callable[[], Sequence[Section]]] = []  # the one installed loader
_installed: Dict[str, Section] = {}


def install(loader: Callable[[], Sequence[Section]]) -> None:
    """Set what gives the parsers of every section of :data:`ORDER`; it is called when a config
    is first parsed (so a command that parses none does not import the modules that own them)."""
    _loader[:] = [loader]
    _installed.clear()


def installed() -> List[Section]:
    """The installed sections in :data:`ORDER`."""
    if not _installed:
        if not _loader:
            raise RuntimeError("no config section parsers are installed: import gitexp.watchers before parsing a "
                               "config (gitexp.cli and gitexp.executor do)")
        given = list(_loader[0]())
        keys = sorted(section.key for section in given)
        if keys != sorted(ORDER):
            raise ValueError(f"config sections {keys} installed; expected each of {sorted(ORDER)} once")
        _installed.update((section.key, section) for section in given)
    return [_installed[key] for key in ORDER]
