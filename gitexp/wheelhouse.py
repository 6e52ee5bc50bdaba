"""Wheels of this gitexp and what it needs at runtime, rebuilt from what is installed here.

``git exp remote setup NAME --install`` sends them over the target's ssh connection and
installs them into a virtual environment there with ``pip --no-index``: nothing there needs a
package index, and the far side runs exactly this version. A distribution's wheel is rebuilt
from the files its installed RECORD lists (its own tags kept, so a compiled one such as psutil
says which Pythons and platforms it fits); gitexp itself, often an editable install, is
packed from its package directory.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import zipfile
from importlib import metadata
from typing import Dict, Iterable, List, Optional, Set, Tuple

from .errors import GitExpError

SKIP_META = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_line(path: str, data: bytes) -> List[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [path, f"sha256={digest}", str(len(data))]


def _wheel(name: str, version: str, tag: str, files: Iterable[Tuple[str, bytes]], meta: Dict[str, bytes]) -> Tuple[str, bytes]:
    """(file name, bytes) of a wheel holding ``files`` and the dist-info ``meta`` files."""
    info = f"{_normalized(name)}-{version}.dist-info"
    buffer = io.BytesIO()
    rows: List[List[str]] = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in [*files, *((f"{info}/{key}", value) for key, value in meta.items())]:
            archive.writestr(path, data)
            rows.append(_record_line(path, data))
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([*rows, [f"{info}/RECORD", "", ""]])
        archive.writestr(f"{info}/RECORD", out.getvalue())
    return f"{_normalized(name)}-{version}-{tag}.whl", buffer.getvalue()


def _wheel_meta(root_is_purelib: bool, tags: List[str]) -> bytes:
    lines = ["Wheel-Version: 1.0", "Generator: gitexp", f"Root-Is-Purelib: {'true' if root_is_purelib else 'false'}"]
    return ("\n".join(lines + [f"Tag: {t}" for t in tags]) + "\n").encode()


def _tag_set(tags: List[str]) -> str:
    """The compressed tag set of a wheel's file name (``cp36.cp37-abi3-manylinux...``)."""
    parts = [t.split("-") for t in tags if t.count("-") == 2]
    if not parts:
        return "py3-none-any"
    return "-".join(".".join(sorted({p[i] for p in parts})) for i in range(3))


def own_wheel() -> Tuple[str, bytes]:
    """This gitexp: its package directory (editable or not), with its installed metadata."""
    import gitexp

    package = os.path.dirname(os.path.abspath(gitexp.__file__))
    base = os.path.dirname(package)
    files: List[Tuple[str, bytes]] = []
    for folder, dirs, names in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                files.append((os.path.relpath(full, base).replace(os.sep, "/"), handle.read()))
    dist = metadata.distribution("gitexp")  # a dist-info or a source tree's egg-info: both say what it needs
    lines = ["Metadata-Version: 2.1", "Name: gitexp", f"Version: {gitexp.__version__}",
             *(f"Requires-Dist: {spec}" for spec in dist.requires or [])]
    meta = {"METADATA": ("\n".join(lines) + "\n").encode(), "WHEEL": _wheel_meta(True, ["py3-none-any"])}
    entry = dist.read_text("entry_points.txt")
    if entry:
        meta["entry_points.txt"] = entry.encode()
    return _wheel("gitexp", gitexp.__version__, "py3-none-any", files, meta)


def installed_wheel(name: str) -> Tuple[str, bytes]:
    """A wheel of installed distribution ``name``, rebuilt from the files its RECORD lists."""
    dist = metadata.distribution(name)
    listed = [f for f in (dist.files or []) if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info_dir = next((str(f).split("/")[0] for f in listed if str(f).endswith(".dist-info/WHEEL")), None)
    if info_dir is None:
        raise GitExpError(f"cannot pack {name} {dist.version}: it was not installed from a wheel here",
                          f"install gitexp's dependencies there yourself (pip install {name})")
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    purelib = "Root-Is-Purelib: true" in wheel_text
    files: List[Tuple[str, bytes]] = []
    meta: Dict[str, bytes] = {}
    for entry in listed:
        path = str(entry)
        with open(entry.locate(), "rb") as handle:
            data = handle.read()
        if path.startswith(info_dir + "/"):
            key = path[len(info_dir) + 1:]
            if key not in SKIP_META:
                meta[key] = data
        else:
            files.append((path, data))
    return _wheel(dist.metadata["Name"], dist.version, _tag_set(tags), files,
                  {**meta, "WHEEL": _wheel_meta(purelib, tags or ["py3-none-any"])})


def requirements(name: str = "gitexp") -> List[str]:
    """The distributions ``name`` needs at runtime (no extras), recursively, as installed here."""
    seen: Set[str] = set()
    order: List[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        for spec in metadata.requires(current) or []:
            if ";" in spec and "extra" in spec.split(";", 1)[1]:
                continue
            dep = re.split(r"[\s<>=!~\[;(]", spec, maxsplit=1)[0]
            key = _normalized(dep)
            if key in seen:
                continue
            seen.add(key)
            try:
                metadata.distribution(dep)
            except metadata.PackageNotFoundError:
                continue  # a marker excluded it here (another Python or platform)
            order.append(dep)
            todo.append(dep)
    return order


def build(extra: Optional[Iterable[str]] = None) -> List[Tuple[str, bytes]]:
    """This gitexp's wheel and its runtime dependencies' (rebuilt from what is installed here)."""
    return [own_wheel(), *(installed_wheel(dep) for dep in [*requirements(), *(extra or [])])]
