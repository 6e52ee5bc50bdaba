"""Runner names and their classes: the one table, below everything that runs or describes runs.

A runner's name (as recorded in a summary's ``runner``) names its class here; classes are
imported on first use (``git exp log`` should not import the executor), so this module
imports no runner and :mod:`gitexp.targets` can look up a runner's ``OPTIONS`` through it.
Which runner speaks for an experiment is :mod:`gitexp.runners` (``runner_for``).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Dict, Optional, Tuple, Type

if TYPE_CHECKING:
    from .base import Runner

# runner name -> (module under gitexp.runners, class)
RUNNERS: Dict[str, Tuple[str, str]] = {
    "local": ("local", "LocalRunner"),
    "slurm": ("slurm", "SlurmRunner"),
    "sge": ("sge", "SgeRunner"),
}
DEFAULT = "local"


def runner_class(name: Optional[str]) -> "Type[Runner]":
    """The class of runner ``name`` (an unknown or missing name: the local runner)."""
    module, attr = RUNNERS.get(name or DEFAULT, RUNNERS[DEFAULT])
    cls: Type[Runner] = getattr(importlib.import_module(f"gitexp.runners.{module}"), attr)
    return cls
