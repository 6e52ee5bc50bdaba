"""Run targets: named places to run experiments (``git exp remote add/list/remove/setup``).

Not git remotes: a git remote is where ``git push``/``git fetch`` send commits; a run target
says where and how gitexp runs experiments (a runner, and optionally an ssh host and the path
of a git repository there). ``git exp pull <target>`` fetches results from a target's
repository over the same ssh connection.

Kept in ``.gitexp.yaml`` at the repository root (committed, shared by a team)::

    targets:
      triton:                     # Slurm from this machine (a login node)
        runner: slurm
        partition: gpu
        time: 4h
      gpu3:                       # a GPU box over ssh, its own detached worker
        runner: local
        host: gpu3                # any ssh destination: user@host, an alias from ~/.ssh/config
        path: /scratch/me/myproj  # a git repository there (git exp remote setup gpu3 creates it)
        gpus: 0,1
        jobs: 2

(``remotes:``, the older name of the section, is still read.) A user overrides any key
without touching the shared file: ``git config exp.remote.triton.account my-project``.
``ssh_config`` can run commands on this machine (``ProxyCommand``...), so it is kept in the
user's git config, and one in the shared file is used only once the user trusted that version
of the file (:mod:`gitexp.trust`, ``git exp remote trust``).
Settings are checked against the runner's own schema (``Runner.OPTIONS``): a Slurm key on a
local target, a misspelt key or a bad value is one line naming the key.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

from .config import closest, load_yaml
from . import trust
from .errors import BadInput
from .giturls import location, same_repository
from .gitconfig import TARGET_PREFIX, matching
from .repo import Repo
from .runners.options import Option as Option, check_option
from .ssh_transport import SshTransport
from .transport import LocalTransport, Transport

TARGETS_FILE = ".gitexp.yaml"
SECTION = "targets"
LEGACY_SECTION = "remotes"
CONFIG_PREFIX = TARGET_PREFIX  # git config exp.remote.<name>.<key>, as the CLI names them
DEFAULT_DISK_MARGIN = "1GB"

# Settings every target has, whatever its runner.
COMMON: Dict[str, Option] = {
    "runner": Option("text", "how experiments are scheduled there: local, slurm or sge (Grid Engine)"),
    "host": Option("text", "run on this host over ssh (user@host, or an alias from ~/.ssh/config); "
                           "none: this machine"),
    "path": Option("text", "with host: the git repository there (git exp remote setup creates it)"),
    "python": Option("text", "the Python that has gitexp there (default: python3 over ssh; for Slurm or Grid "
                             "Engine without host, this interpreter)"),
    "ssh_config": Option("text", "with host: an ssh client config file (ssh -F)"),
    "port": Option("count", "with host: the ssh port"),
    "disk_margin": Option("size", f"free disk to keep there beyond requires.disk (default {DEFAULT_DISK_MARGIN})"),
    "ssh_timeout": Option("duration", "with host: how long one round trip there may take, e.g. 2m (default 5m)"),
}
SSH_ONLY = ("path", "ssh_config", "port", "ssh_timeout")


@dataclass
class Target:
    """A run target: a name, a runner, where (``host``, ``path``), and the runner's settings."""

    name: str
    runner: str = "local"
    options: Dict[str, Any] = field(default_factory=dict)
    # Why ssh to it must not start: its ssh_config comes from an untrusted tracked file.
    refusal: Optional[BadInput] = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def list(self, key: str) -> List[str]:
        value = self.options.get(key) or []
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    @property
    def host(self) -> Optional[str]:
        host = self.options.get("host")
        return str(host) if host else None

    @property
    def path(self) -> Optional[str]:
        path = self.options.get("path")
        return str(path) if path else None

    @property
    def python(self) -> Optional[str]:
        python = self.options.get("python")
        return str(python) if python else None

    def transport(self) -> Transport:
        """Where this target's commands run: this machine, or its host over ssh."""
        if not self.host:
            return LocalTransport()
        port = self.options.get("port")
        if self.refusal is not None:
            return trust.UntrustedSshTransport(self.host, self.refusal, ssh_config=self.get("ssh_config"),
                                               port=int(port) if port is not None else None)
        return SshTransport(self.host, ssh_config=self.get("ssh_config"),
                            port=int(port) if port is not None else None)

    def disk_margin(self) -> int:
        from .units import parse_size

        return parse_size(self.get("disk_margin") or DEFAULT_DISK_MARGIN)


def _file(repo: Repo) -> str:
    return os.path.join(repo.root, TARGETS_FILE)


def _read_file(repo: Repo) -> Dict[str, Any]:
    path = _file(repo)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = load_yaml(handle.read()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"{TARGETS_FILE}: malformed YAML: {exc}".splitlines()[0], "fix the file") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(key, {}) or {}, dict)
                                         for key in (SECTION, LEGACY_SECTION)):
        raise BadInput(f"{TARGETS_FILE}: expected a '{SECTION}:' mapping of name to settings")
    return data


def _sections(data: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    merged = {str(k): dict(v or {}) for k, v in (data.get(LEGACY_SECTION) or {}).items()}
    merged.update({str(k): dict(v or {}) for k, v in (data.get(SECTION) or {}).items()})
    return merged


def _shared_ssh_configs(shared: Dict[str, Dict[str, Any]]) -> Dict[str, str]:
    return {name: str(options["ssh_config"]) for name, options in shared.items() if options.get("ssh_config")}


def trust_shared_file(repo: Repo, revoke: bool = False) -> str:
    """``git exp remote trust``: use the ssh_config settings of this version of the shared file."""
    if revoke:
        trust.revoke(repo)
        return f"no version of {TARGETS_FILE} is trusted now: its ssh_config settings are not used"
    tracked = _shared_ssh_configs(_sections(_read_file(repo)))
    if not tracked:
        return f"nothing to trust: {TARGETS_FILE} sets no ssh_config"
    trust.record(repo, trust.fingerprint(repo, _file(repo), tracked))
    named = ", ".join(f"{name}: {trust.resolve(repo, path)}" for name, path in sorted(tracked.items()))
    return (f"trusted this version of {TARGETS_FILE} and the ssh config files it names ({named}); "
            f"a change to any of them needs {trust.TRUST_COMMAND} again")


def _user_overrides(repo: Repo) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for key, value in matching(repo, "^" + re.escape(TARGET_PREFIX)):
        parts = key.split(".")
        if len(parts) < 4:
            continue
        name, option = ".".join(parts[2:-1]), parts[-1].replace("-", "_")  # git keys cannot hold '_'
        entry = out.setdefault(name, {})
        if _schema(entry.get("runner", "local")).get(option, Option("text", "")).kind in ("list", "env"):
            entry.setdefault(option, []).append(value)
        else:
            entry[option] = value
    return out


def load_targets(repo: Repo) -> Dict[str, Target]:
    """Every run target; the first one with a bad setting is one line naming it (BadInput)."""
    return _build(repo, _read_file(repo), strict=True)[0]


def load_targets_leniently(repo: Repo) -> Tuple[Dict[str, Target], Dict[str, str], Optional[str]]:
    """(targets, target name -> what is wrong with it, what is wrong with the file): one bad
    target, or an unreadable file, leaves the others usable (the pre-push hook)."""
    try:
        data, unreadable = _read_file(repo), None
    except BadInput as exc:
        data, unreadable = {}, str(exc)
    targets, problems = _build(repo, data, strict=False)
    return targets, problems, unreadable


def _build(repo: Repo, data: Dict[str, Any], strict: bool) -> Tuple[Dict[str, Target], Dict[str, str]]:
    shared = _sections(data)
    merged = {name: dict(options) for name, options in shared.items()}
    overrides = _user_overrides(repo)
    for name, options in overrides.items():
        merged.setdefault(name, {}).update(options)
    tracked = _shared_ssh_configs(shared)
    # the targets whose ssh_config comes from the shared file (a user's own setting wins)
    used = [name for name in tracked if "ssh_config" not in overrides.get(name, {})]
    refusals = trust.refusals(repo, _file(repo), tracked, used)
    targets: Dict[str, Target] = {}
    problems: Dict[str, str] = {}
    for name, options in merged.items():
        try:
            validate(name, options)
        except BadInput as exc:
            if strict:
                raise
            problems[name] = str(exc)
        if name in used:
            options["ssh_config"] = trust.resolve(repo, tracked[name])  # as it was fingerprinted
        targets[name] = Target(name, str(options.get("runner", "local")), options, refusals.get(name))
    return targets, problems


def _schema(runner: str) -> Dict[str, Option]:
    from .runners.registry import runner_class

    return {**COMMON, **runner_class(runner).OPTIONS}


def validate(name: str, options: Dict[str, Any]) -> None:
    """One line naming the key at fault; nothing is checked over the network here."""
    from .runners.registry import RUNNERS, runner_class

    where = f"git exp remote {name}"
    runner = options.get("runner", "local")
    if not isinstance(runner, str) or runner not in RUNNERS:
        raise BadInput(f"{where}: unknown runner {runner!r}", closest(str(runner), sorted(RUNNERS)))
    schema = _schema(runner)
    for key in options:
        if key in schema:
            continue
        owners = [other for other in sorted(RUNNERS) if key in runner_class(other).OPTIONS]
        if owners:
            raise BadInput(f"{where}: '{key}' is a setting of the {owners[0]} runner, not of the {runner} runner",
                           f"drop it, or use --runner {owners[0]}")
        raise BadInput(f"{where}: unknown setting '{key}'", closest(str(key), sorted(schema)))
    for key, value in options.items():
        problem = check_option(key, value, schema[key])
        if problem:
            raise BadInput(f"{where}: {problem}")
    if options.get("host"):
        host = str(options["host"])
        if host.startswith("-") or any(c.isspace() or ord(c) < 32 for c in host):
            raise BadInput(f"{where}: host {host!r} is not an ssh destination")
        if not options.get("path"):
            raise BadInput(f"{where}: a target on another host needs --path, the git repository there",
                           "e.g. --path ~/exps/myproj (git exp remote setup creates it)")
    else:
        for key in SSH_ONLY:
            if options.get(key):
                raise BadInput(f"{where}: '{key}' needs --host (without a host the target is this machine)")


def get_target(repo: Repo, name: str) -> Target:
    targets = load_targets(repo)
    if name not in targets:
        defined = ", ".join(sorted(targets)) or "none"
        raise BadInput(f"no run target named '{name}' (defined: {defined})",
                       f"add it with: git exp remote add {name} --runner slurm --partition <partition>, "
                       f"or --host <ssh host> --path <repository there>")
    return targets[name]


def add_target(repo: Repo, name: str, options: Dict[str, Any], user: bool = False) -> str:
    """Add or replace a target; in ``.gitexp.yaml`` or, with ``user``, in git config.

    Settings that can run commands here (``ssh_config``) always go to the user's git config:
    the shared file is read by everyone who pulls it (see :mod:`gitexp.trust`)."""
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith((".", "-")):
        raise BadInput(f"target name {name!r} may only hold letters, digits, '-', '_' and '.'")
    options = {k: v for k, v in options.items() if v not in (None, [], ())}
    validate(name, options)
    personal = {k: v for k, v in options.items() if user or k in trust.COMMAND_KEYS}
    data = {} if user else _read_file(repo)
    for key, value in personal.items():
        variable = f"{CONFIG_PREFIX}{name}.{key.replace('_', '-')}"
        repo.run(["config", "--unset-all", variable], check=False)
        for item in value if isinstance(value, list) else [value]:
            repo.run(["config", "--add", variable, str(item)])
    if user:
        return "git config (this repository, this user)"
    legacy = data.get(LEGACY_SECTION) or {}
    legacy.pop(name, None)
    if not legacy:
        data.pop(LEGACY_SECTION, None)
    section = data.get(SECTION) or {}
    section[name] = {k: v for k, v in options.items() if k not in personal}
    data[SECTION] = section
    _write_file(repo, data)
    if personal:
        return f"{TARGETS_FILE} (its {', '.join(sorted(personal))} in your git config: it can run commands here)"
    return TARGETS_FILE


def remove_target(repo: Repo, name: str) -> None:
    data = _read_file(repo)
    found = False
    for key in (SECTION, LEGACY_SECTION):
        section = data.get(key) or {}
        if name in section:
            del section[name]
            found = True
    if found:
        _write_file(repo, data)
    proc = repo.run(["config", "--remove-section", f"{CONFIG_PREFIX}{name}"], check=False)
    if not found and proc.returncode != 0:
        raise BadInput(f"no run target named '{name}'", "see git exp remote list")


def _write_file(repo: Repo, data: Dict[str, Any]) -> None:
    path = _file(repo)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("# gitexp run targets: named places to run (git exp remote add/list/remove)\n")
        yaml.safe_dump(data, handle, sort_keys=False, default_flow_style=False)
    os.replace(tmp, path)


def describe(target: Target) -> str:
    parts = [target.runner]
    if target.host:
        parts.append(f"on {target.host}:{target.path}")
    for key, value in target.options.items():
        if key not in ("runner", "host", "path", "modules", "setup", "sbatch", "qsub") and value is not None:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def find_by_url(targets: Dict[str, Target], url: str) -> Optional[Target]:
    """The ssh target whose repository ``url`` names, in any of git's spellings of it
    (``host:path``, ``user@host:path/``, ``ssh://host[:port]/path.git``: :mod:`gitexp.giturls`)."""
    for target in targets.values():
        if target.host and same_repository(url, location(target.host, target.path or "", target.get("port"))):
            return target
    return None
