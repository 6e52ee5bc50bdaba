"""Named places to run: ``.gitexp.yaml`` (committed, shared by a team) plus per-user git config.

``.gitexp.yaml``::

    remotes:
      triton:
        runner: slurm
        partition: gpu
        time: 4h
        gres: gpu:1
        modules: [python-env]
        setup: ["source ~/venvs/torch/bin/activate"]

A user overrides any key without touching the shared file:
``git config exp.remote.triton.account my-project``. A remote with no ``host`` is this
machine (for Slurm: the login node you are on).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List

import yaml

from .config import closest, load_yaml
from .errors import BadInput
from .repo import Repo
from .units import parse_duration, parse_size

REMOTES_FILE = ".gitexp.yaml"
RUNNERS = ("local", "slurm")
LIST_KEYS = ("modules", "setup", "sbatch")
REMOTE_KEYS = ("runner", "host", "path", "partition", "account", "qos", "time", "mem", "cpus", "gres",
               "constraint", "max_parallel", "signal_warning", "python") + LIST_KEYS


@dataclass
class Remote:
    name: str
    runner: str = "local"
    options: Dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def list(self, key: str) -> List[str]:
        value = self.options.get(key) or []
        return [str(v) for v in (value if isinstance(value, list) else [value])]


def _file(repo: Repo) -> str:
    return os.path.join(repo.root, REMOTES_FILE)


def _read_file(repo: Repo) -> Dict[str, Any]:
    path = _file(repo)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = load_yaml(handle.read()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"{REMOTES_FILE}: malformed YAML: {exc}".splitlines()[0], "fix the file")
    if not isinstance(data, dict) or not isinstance(data.get("remotes", {}) or {}, dict):
        raise BadInput(f"{REMOTES_FILE}: expected a 'remotes:' mapping of name to settings")
    return data


def _user_overrides(repo: Repo) -> Dict[str, Dict[str, Any]]:
    proc = repo.run(["config", "--get-regexp", r"^exp\.remote\."], check=False)
    out: Dict[str, Dict[str, Any]] = {}
    for line in proc.stdout.decode().splitlines():
        key, _, value = line.partition(" ")
        parts = key.split(".")
        if len(parts) < 4:
            continue
        name, option = ".".join(parts[2:-1]), parts[-1]
        entry = out.setdefault(name, {})
        if option in LIST_KEYS:
            entry.setdefault(option, []).append(value)
        else:
            entry[option] = value
    return out


def load_remotes(repo: Repo) -> Dict[str, Remote]:
    shared = (_read_file(repo).get("remotes") or {})
    merged: Dict[str, Dict[str, Any]] = {str(k): dict(v or {}) for k, v in shared.items()}
    for name, options in _user_overrides(repo).items():
        merged.setdefault(name, {}).update(options)
    remotes = {}
    for name, options in merged.items():
        validate(name, options)
        remotes[name] = Remote(name, str(options.get("runner", "local")), options)
    return remotes


def validate(name: str, options: Dict[str, Any]) -> None:
    for key in options:
        if key not in REMOTE_KEYS:
            raise BadInput(f"remote {name}: unknown setting '{key}'", closest(str(key), REMOTE_KEYS))
    runner = options.get("runner", "local")
    if not isinstance(runner, str) or runner not in RUNNERS:
        raise BadInput(f"remote {name}: unknown runner {runner!r}", closest(str(runner), RUNNERS))
    for key, value in options.items():
        if key in LIST_KEYS:
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, (str, int, float)) for v in items):
                raise BadInput(f"remote {name}: {key} must be a list of strings")
        elif isinstance(value, (list, dict)):
            raise BadInput(f"remote {name}: {key} must be a single value, got {value!r}")
    try:
        if options.get("time") is not None:
            parse_duration(options["time"])
        if options.get("mem") is not None:
            parse_size(options["mem"])
        for key in ("cpus", "max_parallel", "signal_warning"):
            if options.get(key) is not None and (isinstance(options[key], bool) or int(options[key]) < 1):
                raise ValueError(f"{key} must be a whole number of at least 1, got {options[key]!r}")
    except (ValueError, TypeError) as exc:
        raise BadInput(f"remote {name}: {exc}")
    if options.get("host"):
        raise BadInput(f"remote {name}: remotes on other hosts (host: ...) are not supported yet",
                       "run gitexp on that machine, or leave host out for this machine")


def get_remote(repo: Repo, name: str) -> Remote:
    remotes = load_remotes(repo)
    if name not in remotes:
        defined = ", ".join(sorted(remotes)) or "none"
        raise BadInput(f"no remote named '{name}' (defined: {defined})",
                       f"add it with: git exp remote add {name} --runner slurm --partition <partition>")
    return remotes[name]


def add_remote(repo: Repo, name: str, options: Dict[str, Any], user: bool = False) -> str:
    """Add or replace a remote; in ``.gitexp.yaml`` or, with ``user``, in git config."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise BadInput(f"remote name {name!r} may only hold letters, digits, '-', '_' and '.'")
    options = {k: v for k, v in options.items() if v not in (None, [], ())}
    validate(name, options)
    if user:
        for key, value in options.items():
            values = value if isinstance(value, list) else [value]
            repo.run(["config", "--unset-all", f"exp.remote.{name}.{key}"], check=False)
            for item in values:
                repo.run(["config", "--add", f"exp.remote.{name}.{key}", str(item)])
        return "git config (this repository, this user)"
    data = _read_file(repo)
    remotes = data.setdefault("remotes", {}) or {}
    data["remotes"] = remotes
    remotes[name] = options
    _write_file(repo, data)
    return REMOTES_FILE


def remove_remote(repo: Repo, name: str) -> None:
    data = _read_file(repo)
    remotes = data.get("remotes") or {}
    found = name in remotes
    if found:
        del remotes[name]
        _write_file(repo, data)
    proc = repo.run(["config", "--remove-section", f"exp.remote.{name}"], check=False)
    if not found and proc.returncode != 0:
        raise BadInput(f"no remote named '{name}'", "see git exp remote list")


def _write_file(repo: Repo, data: Dict[str, Any]) -> None:
    path = _file(repo)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("# gitexp remotes: named places to run (git exp remote add/list/remove)\n")
        yaml.safe_dump(data, handle, sort_keys=False, default_flow_style=False)
    os.replace(tmp, path)


def describe(remote: Remote) -> str:
    parts = [remote.runner]
    for key in ("partition", "account", "qos", "time", "mem", "cpus", "gres", "constraint", "max_parallel"):
        if remote.get(key) is not None:
            parts.append(f"{key}={remote.get(key)}")
    return " ".join(parts)

