"""The built-in run watchers and the config sections they own: the one list of each, in order.

Nothing registers itself by being imported: this module names every watcher factory the
executor builds (:func:`factories`, in the order they are built and fed: the resource sampler
before diagnostics, which reads its samples) and every config section parsed outside
:mod:`gitexp.config` (:func:`owned_sections`), and installs the latter in
:mod:`gitexp.sections`, the registry config calls. It sits above config and the watchers;
the CLI and the executor import it. Importing it is cheap: the watcher modules load when a
config is first parsed or a run first watched, so ``git exp log`` does not pay for them.
"""
from __future__ import annotations

from typing import List

from . import sections
from .watch import Factory


def factories() -> List[Factory]:
    """The built-in watchers' factories, in the order the executor builds and feeds them."""
    from . import checkpoints, diagnostics, monitor, notify, profiler

    return [
        checkpoints.factory,
        monitor.factory,  # resource sampling; before diagnostics, which reads its samples
        diagnostics.factory,
        notify.factory,
        profiler.factory,  # git exp run --profile
    ]


def owned_sections() -> List[sections.Section]:
    """The config sections other modules parse: ``checkpoints:``, ``diagnostics:``, ``notify:``, ``budget:``."""
    from . import checkpoints, diagnostics, notify, timing

    return [checkpoints.SECTION, diagnostics.SECTION, notify.SECTION, timing.SECTION]


sections.install(owned_sections)
