"""The pre-push check: a push to a run target must leave it the disk its experiments need.

git runs ``pre-push <name> <url>`` with one line per ref on stdin (``<local ref> <local sha>
<remote ref> <remote sha>``). When the push goes to a run target on another host (a git
remote of the target's name, or any of git's spellings of the target's URL: see
:mod:`gitexp.giturls`), the experiments it carries (commits pushed to ``refs/exps/*``, and the
parents of ``refs/exps-inbox/*`` commits) are read, and the free disk at the run root there
(one ssh round trip) and here is checked against their ``requires.disk`` plus the target's
``disk_margin`` (see :mod:`gitexp.hooks.disk`). A push to anything else is not looked at.

Every line says it comes from gitexp's pre-push hook. Refused, each in one line naming what is
at fault: a push to a target whose own settings are invalid (a push elsewhere is not affected),
and a push carrying an experiment whose ``requires.disk`` cannot be read. A target that cannot
be asked (down, or its ssh_config is not trusted: :mod:`gitexp.trust`) is pushed to without the
check, with a warning; the hook never runs ssh with an untrusted ssh config.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from ..errors import GitExpError
from ..notes import EXP_PREFIX, Store
from ..repo import Repo
from ..summary import printable
from ..targets import TARGETS_FILE, Target, find_by_url, load_targets_leniently
from .disk import check_fit, pushed_configs

if TYPE_CHECKING:
    from ..config import ExperimentConfig

ZERO = "0" * 40
SAID = "gitexp pre-push hook"
SKIP = "or skip gitexp's check with git push --no-verify"


def target_for(targets: Dict[str, Target], name: str, url: str) -> Optional[Target]:
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
    targets, problems, unreadable = load_targets_leniently(repo)
    target = target_for(targets, name, url)
    if target is None:
        if unreadable:
            return 0, [f"{SAID}: {printable(unreadable)}; pushes to its run targets are not checked until it is fixed"]
        return 0, []
    refusing = f"{SAID}: refusing the push to run target {printable(target.name)}"
    if target.name in problems:
        return 1, [f"{refusing}: {printable(problems[target.name])}; fix the target in {TARGETS_FILE} "
                   f"(or your git config: git exp remote list), {SKIP}"]
    configs, unreadable_disks = pushed_configs(repo, pushed_experiments(repo, lines))
    if unreadable_disks:
        return 1, [f"{refusing}: {problem}; fix it, {SKIP}" for problem in unreadable_disks]
    if target.refusal is not None:
        return 0, [f"{SAID}: no disk check of run target {printable(target.name)}, pushing without it: "
                   f"{printable(str(target.refusal))}"]
    return _check_there(repo, target, configs, refusing)


def _check_there(repo: Repo, target: Target, configs: "Sequence[ExperimentConfig]",
                 refusing: str) -> Tuple[int, List[str]]:
    from ..runners.ssh import SshRunner

    runner = SshRunner(repo, Store(repo), target)
    try:
        free, where = runner.check_there()  # one ssh round trip
    except GitExpError as exc:
        return 0, [f"{SAID}: could not check the free disk on run target {printable(target.name)}: "
                   f"{printable(str(exc))}; pushing without the check"]
    problems = check_fit(repo, target, configs, free, where)
    if not problems:
        return 0, []
    return 1, [f"{refusing}: " + "; ".join(problems),
               f"{SAID}: free some space there, lower requires.disk or the target's disk_margin, {SKIP}"]
