"""Writing a small file whole or not at all: a temporary file beside it, then a rename."""
from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, never
    half of one; ``durable`` also syncs it to disk first. The temporary file is removed when a
    write fails (a full disk), and the error is raised."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
