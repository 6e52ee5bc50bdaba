"""The pre-push check: a push to a run target must leave it the disk its experiments need.

git runs ``pre-push <name> <url>`` with one line per ref on stdin (``<local ref> <local sha>
<remote ref> <remote sha>``). When the push goes to a run target on another host (a git
remote of the target's name, or the target's URL), the experiments it carries (commits pushed
to ``refs/exps/*``, and the parents of ``refs/exps-inbox/*`` commits) are read, and the free
disk at the run root there (one ssh round trip) and here is checked against their
``requires.disk`` plus the target's ``disk_margin`` (see :mod:`gitexp.hooks.disk`). A push to
anything else is not looked at.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ..errors import GitExpError
from ..notes import EXP_PREFIX, Store
from ..repo import Repo
from ..summary import printable
from ..targets import Target, find_by_url, load_targets
from .disk import check_fit

ZERO = "0" * 40


def target_for(repo: Repo, name: str, url: str) -> Optional[Target]:
    targets = load_targets(repo)
    named = targets.get(name)
    if named is not None and named.host:
        return named
    return find_by_url(targets, url)


def pushed_experiments(repo: Repo, lines: Sequence[str]) -> List[str]:
    from ..runners.agent import INBOX_PREFIX

    shas: List[str] = []
    for line in lines:
        parts = line.split()
        if len(parts) != 4 or parts[1] == ZERO:
            continue
        local_sha, remote_ref = parts[1], parts[2]
        if remote_ref.startswith(EXP_PREFIX):
            shas.append(local_sha)
        elif remote_ref.startswith(INBOX_PREFIX):
            shas += [p.decode() for p in repo.commit_object(local_sha).parents]
    return list(dict.fromkeys(shas))


def check(repo: Repo, name: str, url: str, lines: Sequence[str]) -> Tuple[int, List[str]]:
    """(exit code, lines for stderr)."""
    from ..executor import load_experiment_config
    from ..runners.ssh import SshRunner

    target = target_for(repo, name, url)
    if target is None:
        return 0, []
    configs = []
    for sha in pushed_experiments(repo, lines):
        try:
            configs.append(load_experiment_config(repo, sha))
        except (GitExpError, ValueError):
            continue  # not an experiment commit: nothing to run there
    runner = SshRunner(repo, Store(repo), target)
    try:
        free, where = runner.check_there()  # one ssh round trip
    except GitExpError as exc:
        return 0, [f"gitexp pre-push: could not check the free disk on run target {target.name}: "
                   f"{printable(str(exc))}; pushing without the check"]
    problems = check_fit(repo, target, configs, free, where)
    if not problems:
        return 0, []
    return 1, [f"gitexp pre-push: refusing the push to run target {target.name}: " + "; ".join(problems),
               "gitexp pre-push: free some space there, lower requires.disk or the target's disk_margin, "
               "or skip this check with git push --no-verify"]
