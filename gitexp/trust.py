"""Which ssh settings of a run target may be used: a tracked ``.gitexp.yaml`` is a claim.

An ssh client config (``ssh -F FILE``) can run commands on this machine before any connection
is made (``ProxyCommand``, ``LocalCommand``, ``Match exec``, ``KnownHostsCommand``). A
``.gitexp.yaml`` arrives with ``git pull`` from anyone who can push to the repository, and
``git exp hosts``, ``pull`` and the pre-push hook contact targets by themselves, so an
``ssh_config`` is used only when it comes from the user:

* from the user's git config (``git config exp.remote.NAME.ssh-config FILE``; ``git exp remote
  add --ssh-config`` writes it there), always;
* from the tracked file only once the user trusted that exact version: ``git exp remote trust``
  records a fingerprint of ``.gitexp.yaml`` and of the ssh config files it names in this
  repository's git config (``exp.trustedTargets``). A change to any of them needs trusting again.

An untrusted target's transport refuses every ssh command before ssh starts
(:class:`UntrustedSshTransport`), so every command that would contact it says why in one line.
"""
from __future__ import annotations

import hashlib
import os
from typing import Dict, Iterable, List, Mapping, Optional

from .errors import BadInput
from .gitconfig import TRUSTED_TARGETS, get_all
from .repo import Repo
from .ssh_transport import SshTransport

# Target settings that can make ssh run a command on this machine.
COMMAND_KEYS = ("ssh_config",)
TRUST_KEY = TRUSTED_TARGETS
KEEP = 10  # fingerprints kept, so switching between a few branches does not ask again each time
TRUST_COMMAND = "git exp remote trust"
_READ_LIMIT = 1 << 20  # an ssh config is a few KB; a larger one is hashed by its first MiB and size


def resolve(repo: Repo, path: str) -> str:
    """A path from the tracked file as ssh will read it: relative to the repository root."""
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.join(repo.root, path)


def fingerprint(repo: Repo, file_path: str, tracked: Mapping[str, str]) -> str:
    """sha256 of the tracked file and of each ssh config file it names (``tracked``: target
    name -> ssh_config as written), so trusting covers what ssh will read."""
    digest = hashlib.sha256(b"gitexp trusted targets v1\0")
    for path in [file_path, *sorted({resolve(repo, p) for p in tracked.values()})]:
        digest.update(path.encode(errors="surrogateescape") + b"\0")
        try:
            with open(path, "rb") as handle:
                data = handle.read(_READ_LIMIT)
                size = os.fstat(handle.fileno()).st_size
            digest.update(b"%d\0" % size + hashlib.sha256(data).digest())
        except OSError:
            digest.update(b"missing\0")
    return "sha256:" + digest.hexdigest()


def trusted(repo: Repo) -> List[str]:
    return [value.strip() for value in get_all(repo, TRUST_KEY) if value.strip()]


def is_trusted(repo: Repo, file_path: str, tracked: Mapping[str, str]) -> bool:
    return fingerprint(repo, file_path, tracked) in trusted(repo)


def record(repo: Repo, value: str) -> None:
    """Add ``value`` to the trusted fingerprints (this repository's git config), keeping the newest."""
    kept = [v for v in trusted(repo) if v != value][-(KEEP - 1):] + [value]
    repo.run(["config", "--local", "--unset-all", TRUST_KEY], check=False)
    for item in kept:
        repo.run(["config", "--local", "--add", TRUST_KEY, item])


def revoke(repo: Repo) -> None:
    repo.run(["config", "--local", "--unset-all", TRUST_KEY], check=False)


def refusal(name: str, value: str, file_name: str) -> BadInput:
    return BadInput(f"run target {name}: its ssh_config {value!r} comes from the tracked {file_name}, and an ssh "
                    f"config can run commands on this machine (ProxyCommand, LocalCommand, Match exec); it is not "
                    f"used until you trust this version of {file_name}",
                    f"read it and the files it names, then run: {TRUST_COMMAND}; or use your own: "
                    f"git config exp.remote.{name}.ssh-config FILE")


def refusals(repo: Repo, file_path: str, shared: Mapping[str, str], used: Iterable[str]) -> Dict[str, BadInput]:
    """Target name -> why its ssh must not start, for each target of ``used`` (those whose
    ssh_config the tracked file gives) unless this version of the file is trusted.
    ``shared``: target name -> ssh_config, every one the tracked file sets (the fingerprint's)."""
    used = [name for name in used if name in shared]
    if not used or is_trusted(repo, file_path, shared):
        return {}
    file_name = os.path.basename(file_path)
    return {name: refusal(name, shared[name], file_name) for name in used}


class UntrustedSshTransport(SshTransport):
    """The transport of a target whose ssh_config is not trusted: every ssh command (ours and
    git's, through ``git_ssh_command``) is refused before ssh starts. Building one costs nothing,
    so listing and ``git exp log`` work as before; only contacting the target is refused."""

    def __init__(self, host: str, refused: BadInput, ssh_config: Optional[str] = None,
                 port: Optional[int] = None) -> None:
        # The untrusted path only keys the control socket (never made), so no master of a
        # trusted configuration is ever taken for this one's.
        super().__init__(host, ssh_config=ssh_config, port=port)
        self.refused = refused

    def options(self) -> List[str]:
        raise BadInput(self.refused.message, self.refused.hint)

    def connect(self) -> None:
        raise BadInput(self.refused.message, self.refused.hint)
