"""Facts about the machine and environment an experiment ran in."""
from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
import time
from typing import Any, Dict, List

import psutil

from .hostprobe import gpu_models as gpu_models


CACHE_KEEP = 4  # package-list cache files kept (one per interpreter/site-packages state)


def installed_packages() -> List[str]:
    """name==version of every distribution importable here, cached until site-packages change.

    The cache key holds the mtime of every sys.path directory, which changes whenever a
    package is installed or removed there. Each install makes a new key, so only the
    :data:`CACHE_KEEP` most recently used files are kept.
    """
    import hashlib
    import json

    # Not sys.path[0]: the working directory under ``python -m``, the script's own directory
    # otherwise. Its mtime changes with every file made there (a checkpoint, an output, anything
    # in /tmp), and packages are not installed into it.
    stamp = [sys.executable] + [f"{p}:{os.stat(p).st_mtime_ns}" for p in sys.path[1:]
                                if p and os.path.isdir(p)]
    key = hashlib.sha1("\n".join(stamp).encode()).hexdigest()[:16]
    cache = os.path.join(os.path.expanduser("~"), ".cache", "gitexp", f"packages-{key}.json")
    try:
        with open(cache, encoding="utf-8") as handle:
            packages = list(json.load(handle))
        os.utime(cache)  # most recently used: the last to be pruned
        return packages
    except (OSError, ValueError):
        pass
    packages = _scan_packages()
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(packages, handle)
        os.replace(tmp, cache)
        prune_cache(os.path.dirname(cache))
    except OSError:
        pass
    return packages


def prune_cache(directory: str, keep: int = CACHE_KEEP) -> None:
    """Delete all but the ``keep`` newest package lists, and temporary files of dead writers."""
    entries = []
    for name in os.listdir(directory):
        if not name.startswith("packages-"):
            continue
        path = os.path.join(directory, name)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        if name.endswith(".json"):
            entries.append((mtime, path))
        elif time.time() - mtime > 3600:  # a writer's temporary file, left by a crash
            _unlink(path)
    for _mtime, path in sorted(entries, reverse=True)[keep:]:
        _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # another process pruned it first


def _scan_packages() -> List[str]:
    from importlib import metadata

    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if "Name" in dist.metadata else None
        if name:
            seen[name.lower()] = f"{name}=={dist.version}"
    return sorted(seen.values(), key=str.lower)


def collect(git_version: str) -> Dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return {
        "hostname": socket.gethostname(),
        "user": user,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "git": git_version,
        "cpus": os.cpu_count(),
        "ram": psutil.virtual_memory().total,
        "gpus": gpu_models(),
        "packages": installed_packages(),
    }
