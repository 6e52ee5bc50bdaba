"""``git exp remote setup``: a run target's repository on its host, and gitexp installed there.

The checks every ``run --on`` makes (git, Python and a gitexp that reads this one's notes),
then ``git init`` there when the repository is missing; ``--install`` first puts this gitexp
into a virtual environment there, from wheels built here (no package index needed there). A
failed setup leaves nothing created there.
"""
from __future__ import annotations

from typing import Any, List, Optional

from .. import __version__
from ..errors import BadInput
from ..summary import printable
from ..transport import TransportError
from .ssh import SshRunner


def setup_target(repo: Any, store: Any, target: Any, install: bool = False,
                 install_dir: Optional[str] = None) -> List[str]:
    """``git exp remote setup``: the checks every ``run --on`` makes, then the repository there
    (``git init`` when missing). A failed setup leaves nothing created there. ``install``: first
    put this gitexp into a virtual environment there (see :func:`install_there`)."""
    if not target.host:
        raise BadInput(f"run target {target.name} is this machine (no --host): there is nothing to set up")
    runner = SshRunner(repo, store, target)
    transport = runner.transport
    lines: List[str] = []
    try:
        version = transport.run(["git", "--version"], timeout=runner.timeout)
        if version.returncode != 0:
            raise BadInput(f"run target {target.name}: git is not installed on {runner.host}", "install git there")
        if install:
            lines.append(install_there(repo, runner, install_dir))
            from ..targets import get_target

            runner = SshRunner(repo, store, get_target(repo, target.name))
            transport = runner.transport
        info = runner.preflight(in_repo=False)  # Python and gitexp there, before anything is made
        path = runner.path
        if path == "~" or path.startswith("~/"):
            path = transport.home() + path[1:]  # argv words are never expanded
        existed = transport.run(["git", "-C", path, "rev-parse", "--git-dir"], timeout=runner.timeout).returncode == 0
        if not existed:
            _init_there(runner, path)
    except TransportError as exc:
        raise BadInput(str(exc)) from None
    return lines + [f"{target.name}: {'using the' if existed else 'created a'} git repository at {runner.host}:{path}",
            f"{target.name}: {printable(version.stdout.decode(errors='replace').strip())}, "
            f"Python {printable(str(info.get('python')))} ({printable(str(info.get('executable')))}), "
            f"gitexp {printable(str(info.get('version')))} (agent protocol {info.get('protocol')}): ready"]


def install_there(repo: Any, runner: SshRunner, install_dir: Optional[str]) -> str:
    """This gitexp and its dependencies into a virtual environment on the target's host.

    Wheels rebuilt here from what is installed (:mod:`gitexp.wheelhouse`) go over the target's
    shared ssh connection; ``<python> -m venv`` and ``pip install --no-index`` there need no
    package index. The venv's python is recorded as the target's ``python`` in this
    repository's git config (a per-user setting: the venv is yours). If anything fails, what
    was created there goes again.
    """
    from .. import wheelhouse

    transport, name, host = runner.transport, runner.target.name, runner.host
    folder = install_dir or f"~/.gitexp/venv-{__version__}"
    if folder == "~" or folder.startswith("~/"):
        folder = transport.home() + folder[1:]
    wheels = wheelhouse.build()
    top = transport.run(["sh", "-c", FIRST_MISSING, "sh", folder], timeout=runner.timeout).stdout.decode().strip()
    try:
        made = transport.run(["mkdir", "-p", "--", f"{folder}/wheels"], timeout=runner.timeout)
        if made.returncode != 0:
            raise BadInput(f"run target {name}: cannot create {folder} on {host}: "
                           f"{printable(made.stderr.decode(errors='replace').strip()[-300:])}")
        for file_name, data in wheels:
            transport.write_file(f"{folder}/wheels/{file_name}", data)
        venv = transport.run([runner.python, "-m", "venv", f"{folder}/venv"], timeout=runner.timeout)
        if venv.returncode != 0:
            raise BadInput(f"run target {name}: {runner.python} on {host} cannot make a virtual environment: "
                           f"{printable(venv.stderr.decode(errors='replace').strip()[-300:])}",
                           "install Python 3 with venv there (Debian: apt install python3-venv), or give "
                           "--python")
        python = f"{folder}/venv/bin/python"
        pip = transport.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             "--no-index", "--force-reinstall", "--find-links", f"{folder}/wheels",
                             f"gitexp=={__version__}"], timeout=max(runner.timeout, 300.0))
        if pip.returncode != 0:
            raise BadInput(f"run target {name}: installing gitexp {__version__} on {host} failed: "
                           f"{printable(' '.join(pip.stderr.decode(errors='replace').split())[-300:])}",
                           "the wheels are built from this machine's packages: the Python there must match "
                           "its version and platform, or install gitexp there yourself")
    except BaseException:
        if top and top != "/":
            transport.run(["rm", "-rf", "--", top], timeout=runner.timeout)
        raise
    repo.run(["config", f"exp.remote.{name}.python", python])
    return (f"{name}: installed gitexp {__version__} and {len(wheels) - 1} dependencies into {host}:{folder}/venv "
            f"(its python is now this target's python, in your git config)")


# What `git init $1` will create: the outermost folder of $1 that does not exist yet, or $1/.git.
FIRST_MISSING = r"""p=$1; top=; while [ ! -e "$p" ]; do top=$p; p=$(dirname -- "$p"); done
[ -n "$top" ] || [ -e "$1/.git" ] || top="$1/.git"
printf '%s\n' "$top"
"""


def _init_there(runner: SshRunner, path: str) -> None:
    """``git init`` at ``path`` there and check it; on failure, what it created goes again."""
    transport, name = runner.transport, runner.target.name
    top = transport.run(["sh", "-c", FIRST_MISSING, "sh", path], timeout=runner.timeout).stdout.decode().strip()
    try:
        made = transport.run(["git", "init", "-q", "--", path], timeout=runner.timeout)
        if made.returncode != 0:
            raise BadInput(f"run target {name}: could not create a git repository at {path} on "
                           f"{runner.host}: {printable(made.stderr.decode(errors='replace').strip())}")
        runner.preflight()
    except BaseException:
        if top and top != "/":  # a relative one is in the home folder there, where ssh starts
            transport.run(["rm", "-rf", "--", top], timeout=runner.timeout)
        raise
