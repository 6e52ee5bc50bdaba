"""Which repository on which host an ssh git URL names, spelled any way git accepts.

git takes ``[user@]host:path`` (scp-like; ``[host]:path`` or ``[host:port]:path`` with
brackets) and ``ssh://[user@]host[:port]/path`` (also ``git+ssh://``, ``ssh+git://``). A
relative scp-like path, ``~/path`` and the ``ssh://`` spelling ``/~/path`` all mean the remote
home. The far side (``git-upload-pack``/``receive-pack``) finds the repository with a
``/.git`` or ``.git`` suffix added or not, and the filesystem ignores repeated and trailing
slashes, so ``host:/p/r1``, ``host:/p/r1/``, ``host:/p//r1``, ``host:/p/r1/.git``,
``root@host:/p/r1`` and ``ssh://host:22/p/r1`` all name one repository: :func:`same_repository`
says so. The user part is ignored (another account reaches the same disk); a port counts only
when both sides give one.
"""
from __future__ import annotations

import posixpath
import re
from typing import NamedTuple, Optional

_SCHEMES = ("ssh://", "git+ssh://", "ssh+git://")


class SshLocation(NamedTuple):
    host: str  # lower case, without user@ and brackets
    port: Optional[str]
    path: str  # normalised: see :func:`normalise_path`


def _split_host(text: str) -> "tuple[str, Optional[str]]":
    """``user@host:port``, ``[v6]:port``, ``v6`` or ``host`` -> (host, port)."""
    text = text.rpartition("@")[2]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host.lower(), (rest[1:] or None) if rest.startswith(":") else None
    if text.count(":") > 1:  # a bare IPv6 address
        return text.lower(), None
    host, _, port = text.partition(":")
    return host.lower(), port or None


def normalise_path(path: str) -> str:
    """The repository a path names: home-relative as ``~/...``, slashes collapsed, no trailing
    ``/``, ``/.git`` or ``.git``."""
    if path.startswith("/~"):  # ssh://host/~/p and ssh://host/~user/p
        path = path[1:]
    if not path.startswith(("/", "~")):
        path = "~/" + path
    path = posixpath.normpath(re.sub("/+", "/", path))
    if path.startswith("//"):
        path = path[1:]
    for suffix in ("/.git", ".git"):
        if path.endswith(suffix) and path[:-len(suffix)].rstrip("/") not in ("", "~", "~/."):
            path = path[:-len(suffix)]
    return posixpath.normpath(path)


def parse(url: str) -> Optional[SshLocation]:
    """Host, port and path of an ssh URL in any of git's spellings; None for anything else
    (a local path, ``file://``, ``https://``)."""
    url = url.strip()
    for scheme in _SCHEMES:
        if url.lower().startswith(scheme):
            authority, slash, path = url[len(scheme):].partition("/")
            host, port = _split_host(authority)
            return SshLocation(host, port, normalise_path("/" + path)) if host and slash else None
    if "://" in url:
        return None
    at = url.find("@[")  # git's host_end(): user@[host]:path as well as [user@host:port]:path
    start = at + 1 if at >= 0 else 0
    if url[start:start + 1] == "[":
        close = url.find("]", start)
        if close < 0 or url[close + 1:close + 2] != ":":
            return None
        host, port = _split_host(url[start + 1:close])
        return SshLocation(host, port, normalise_path(url[close + 2:])) if host else None
    colon, first_slash = url.find(":"), url.find("/")
    if colon <= 0 or (0 <= first_slash < colon):  # git's rule: a ':' before any '/' makes it scp-like
        return None
    host = url[:colon].rpartition("@")[2].lower()
    return SshLocation(host, None, normalise_path(url[colon + 1:])) if host else None


def location(host: str, path: str, port: Optional[object] = None) -> SshLocation:
    """A run target's repository (``host`` as ssh takes it, ``path`` there) as a location."""
    name, _ = _split_host(host)
    return SshLocation(name, str(port) if port is not None else None, normalise_path(path))


def same_repository(url: str, where: SshLocation) -> bool:
    found = parse(url)
    if found is None or found.host != where.host or found.path != where.path:
        return False
    return found.port is None or where.port is None or found.port == where.port
