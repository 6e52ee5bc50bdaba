"""Does a run target have the disk the experiments sent to it need?

The need is the sum of the experiments' ``requires.disk`` (their ``out/`` directories stay
after they end, so queued runs add up) plus the target's ``disk_margin`` (default 1GB). It is
checked against the free disk at the run root there (asked in the same round trip as the
rest of the far side's state) and, for the margin only, at the run root here, where results
come back with ``git exp pull``.
"""
from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, List, Optional, Sequence

from ..paths import runs_root
from ..repo import Repo
from ..resources import _existing
from ..units import format_size

if TYPE_CHECKING:
    from ..config import ExperimentConfig
    from ..targets import Target


def needed(configs: "Sequence[ExperimentConfig]") -> int:
    return sum(config.requires.disk or 0 for config in configs)


def check_fit(repo: Repo, target: "Target", configs: "Sequence[ExperimentConfig]",
              free_there: Optional[int], where_there: str = "its run root") -> List[str]:
    """What does not fit, one line each with the numbers; [] when everything fits."""
    need, margin = needed(configs), target.disk_margin()
    problems = []
    if free_there is not None and free_there < need + margin:
        problems.append(f"{format_size(free_there)} free on {target.host or 'this machine'} at {where_there}, "
                        f"{format_size(need + margin)} needed ({len(configs)} experiment(s): requires.disk "
                        f"{format_size(need)} + margin {format_size(margin)})")
    here = _existing(runs_root(repo))
    free_here = shutil.disk_usage(here).free
    if target.host and free_here < margin:
        problems.append(f"{format_size(free_here)} free here at {here}, the margin is {format_size(margin)}")
    return problems
