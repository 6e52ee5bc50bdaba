"""Does a run target have the disk the experiments sent to it need?

The need is the sum of the experiments' ``requires.disk`` (their ``out/`` directories stay
after they end, so queued runs add up) plus the target's ``disk_margin`` (default 1GB). It is
checked against the free disk at the run root there (asked in the same round trip as the
rest of the far side's state) and, for the margin only, at the run root here, where results
come back with ``git exp pull``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import yaml

from ..errors import GitExpError
from ..notes import CONFIG_PATH
from ..paths import runs_root
from ..repo import Repo
from ..hostprobe import disk
from ..summary import printable
from ..units import format_size, parse_size
from ..values import short
from ..yamlsafe import load_yaml

if TYPE_CHECKING:
    from ..config import ExperimentConfig
    from ..targets import Target


def needed(configs: "Sequence[ExperimentConfig]") -> int:
    return sum(config.requires.disk or 0 for config in configs)


def pushed_configs(repo: Repo, shas: Sequence[str]) -> "Tuple[List[ExperimentConfig], List[str]]":
    """The configs of the experiments among ``shas`` and, for each experiment whose
    ``requires.disk`` cannot be read, a line naming it and the value.

    Commits that are not experiments are left out, and so are experiments whose config is
    invalid for another reason (their run fails at once there, using no disk): an unreadable
    size must never make an experiment count as needing nothing.
    """
    from ..storedconfig import parse_stored, stored_bytes

    configs, problems = [], []
    for sha in shas:
        raw = stored_bytes(repo, sha)
        if raw is None:
            continue  # not an experiment commit: nothing to run there
        try:
            configs.append(parse_stored(raw, sha))
        except (GitExpError, ValueError):
            problem = _unreadable_disk(raw, sha)
            if problem:
                problems.append(problem)
    return configs, problems


def _unreadable_disk(raw: bytes, sha: str) -> Optional[str]:
    try:
        data: Any = load_yaml(raw.decode("utf-8", errors="replace"))
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return f"experiment {short(sha, 12)}: its stored config ({CONFIG_PATH}) cannot be read, so its requires.disk is unknown"
    name = data.get("name")
    label = f"experiment {printable(name)} ({short(sha, 12)})" if isinstance(name, str) else f"experiment {short(sha, 12)}"
    requires = data.get("requires")
    if requires is not None and not isinstance(requires, dict):
        return f"{label}: requires {_shown(requires)} is not a mapping, so its requires.disk is unknown"
    disk = requires.get("disk") if isinstance(requires, dict) else None
    if disk is None:
        return None
    try:
        parse_size(disk)
    except ValueError:
        return f"{label}: requires.disk {_shown(disk)} is not a size from 0 to 1EB (write it like 10GB or 2GiB)"
    return None


def _shown(value: Any) -> str:
    text = printable(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def check_fit(repo: Repo, target: "Target", configs: "Sequence[ExperimentConfig]",
              free_there: Optional[int], where_there: str = "its run root") -> List[str]:
    """What does not fit, one line each with the numbers; [] when everything fits."""
    need, margin = needed(configs), target.disk_margin()
    problems = []
    if free_there is not None and free_there < need + margin:
        problems.append(f"{format_size(free_there)} free on {target.host or 'this machine'} at {where_there}, "
                        f"{format_size(need + margin)} needed ({len(configs)} experiment(s): requires.disk "
                        f"{format_size(need)} + margin {format_size(margin)})")
    measured = disk(runs_root(repo))
    here, free_here = measured.path, measured.free
    if target.host and free_here < margin:
        problems.append(f"{format_size(free_here)} free here at {here}, the margin is {format_size(margin)}")
    return problems
