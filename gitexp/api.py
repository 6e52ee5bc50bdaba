"""The training-script side: ``log`` appends JSON lines to a buffered file, flushed each second.

Cost per call is one ``json.dumps`` and a buffered write (see bench/bench_log.py).  A daemon
thread flushes the buffer at least once a second, so a crash loses at most the last second;
``atexit`` flushes the rest on a normal exit.  The executor reads the file while the program
runs and tolerates a torn last line.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from typing import Any, Dict, Optional

ENV_METRICS = "GITEXP_METRICS_FILE"
ENV_CHECKPOINTS = "GITEXP_CHECKPOINTS_FILE"
ENV_OUTPUT = "GITEXP_OUTPUT_DIR"
ENV_PARAMS = "GITEXP_PARAMS"
FLUSH_SECONDS = 1.0


class _Writer:
    def __init__(self, path: str) -> None:
        self.handle = open(path, "ab", buffering=1 << 16)
        self.dirty = False
        self.lock = threading.Lock()
        thread = threading.Thread(target=self._flush_loop, name="gitexp-flush", daemon=True)
        thread.start()
        atexit.register(self.flush)

    def write(self, line: bytes) -> None:
        self.handle.write(line)  # BufferedWriter is thread-safe
        self.dirty = True

    def flush(self) -> None:
        with self.lock:
            if self.dirty and not self.handle.closed:
                self.dirty = False
                self.handle.flush()

    def _flush_loop(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except (OSError, ValueError):
                return


_writer: Optional[_Writer] = None
_resolved = False
_dumps = json.dumps


def _get_writer() -> Optional[_Writer]:
    global _writer, _resolved
    if not _resolved:
        _resolved = True
        path = os.environ.get(ENV_METRICS)
        _writer = _Writer(path) if path else None
    return _writer


def log(step: Optional[int] = None, **values: Any) -> None:
    """Record metric values (numbers) at ``step``; a no-op outside gitexp."""
    writer = _writer if _resolved else _get_writer()
    if writer is None:
        return
    values["step"] = step
    values["time"] = time.time()
    writer.write((_dumps(values) + "\n").encode())


def flush() -> None:
    """Push buffered points to disk now (done each second and at exit anyway)."""
    writer = _get_writer()
    if writer is not None:
        writer.flush()


def checkpoint(path: str, step: Optional[int] = None, **meta: Any) -> Optional[Dict[str, Any]]:
    """Record a pointer to a checkpoint file (host, path, step, size, time); never its bytes.

    Wrong types raise here, at the call, rather than spoil the record ``show`` reads later.
    """
    _check_checkpoint(path, step, meta)
    target = os.environ.get(ENV_CHECKPOINTS)
    if not target:
        return None
    full = os.path.abspath(os.fspath(path))
    record: Dict[str, Any] = {
        "path": full, "step": step, "time": time.time(), "host": socket.gethostname(),
        "size": os.path.getsize(full) if os.path.exists(full) else None,
    }
    record.update(meta)
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    return record


def _check_checkpoint(path: Any, step: Any, meta: Dict[str, Any]) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"gitexp.checkpoint: path must be a str or path, not {type(path).__name__}")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise TypeError(f"gitexp.checkpoint: step must be an int or None, not {step!r}")
    size = meta.get("size")
    if "size" in meta and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError(f"gitexp.checkpoint: size must be a non-negative int (bytes), not {size!r}")
    if "time" in meta and (not isinstance(meta["time"], (int, float)) or isinstance(meta["time"], bool)):
        raise TypeError(f"gitexp.checkpoint: time must be a number (seconds since the epoch), not {meta['time']!r}")
    if "host" in meta and not isinstance(meta["host"], str):
        raise TypeError(f"gitexp.checkpoint: host must be a str, not {meta['host']!r}")


def log_norms(model: Any, step: Optional[int] = None, grads: Any = None, by: str = "layer",
              prefix: str = "") -> Dict[str, float]:
    """Record per-layer weight norms, and gradient norms where gradients are present, as
    metrics (``weight_norm``, ``weight_norm/<layer>``, ``grad_norm``, ``grad_norm/<layer>``)
    at ``step``; returns them (also outside gitexp, where nothing is recorded).

    ``model``: a PyTorch module (or anything with ``named_parameters()``), a mapping of names
    to arrays (a state dict, NumPy arrays), or (name, array) pairs. ``grads``: gradients for
    a mapping (a module's come from its parameters' ``.grad``). ``by="tensor"``: one value per
    parameter instead of per layer. See gitexp/norms.py.
    """
    from .norms import norms  # imported on the first call: `import gitexp` stays light

    values = norms(model, grads=grads, by=by, prefix=prefix)
    if values:
        log(step=step, **values)
    return values


def params() -> Dict[str, Any]:
    """The experiment's params as gitexp resolved them ({} outside gitexp)."""
    raw = os.environ.get(ENV_PARAMS)
    return json.loads(raw) if raw else {}


def resume_from() -> Optional[Dict[str, Any]]:
    """None on a fresh run; on a resumed one (``git exp resume``, ``auto_resume``) the
    checkpoint it continues from: ``{"path": ..., "step": ...}`` (step None when unknown)."""
    path = os.environ.get("GITEXP_RESUME_FROM")
    if not path:
        return None
    step = os.environ.get("GITEXP_RESUME_STEP")
    return {"path": path, "step": int(step) if step and step.lstrip("-").isdigit() else None}


def output_dir() -> Optional[str]:
    """The experiment's persistent output directory (None outside gitexp)."""
    return os.environ.get(ENV_OUTPUT)
