"""What this machine has: GPUs, RAM, disk. The one place gitexp asks NVML or ``nvidia-smi``.

GPUs are read through nvidia-ml-py (``pynvml``, ``gitexp[gpu]``) when it and a driver are
there, else through ``nvidia-smi`` (10 s at most: a hung driver must not hang a run); no
library, no driver and no GPU all read as "cannot be queried here" (None or []). Disk
figures are those of the nearest existing folder of a path, so a run root that is not made
yet is measured on the disk it will be made on.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set

MIB = 1 << 20
SMI_TIMEOUT = 10.0


def nearest_existing(path: str) -> str:
    """``path``, or its nearest parent that exists (the root at worst)."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


@dataclass(frozen=True)
class Disk:
    path: str   # the existing folder measured
    free: int   # bytes this user may still write
    total: int


def disk(path: str) -> Disk:
    """Free and total bytes of the disk that holds (or will hold) ``path``."""
    existing = nearest_existing(path)
    usage = shutil.disk_usage(existing)
    return Disk(existing, usage.free, usage.total)


@dataclass(frozen=True)
class Ram:
    available: int
    total: int


def ram() -> Ram:
    import psutil  # where it is used: a run without `requires: ram` starts without it

    memory = psutil.virtual_memory()
    return Ram(memory.available, memory.total)


def _nvml_each(read: Callable[[Any, Any], Any]) -> Optional[List[Any]]:
    """``read(pynvml, handle)`` of every GPU; None when NVML (library or driver) is not there."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver, no GPU: all mean "not through NVML"
        return None
    try:
        return [read(pynvml, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _smi(*fields: str) -> Optional[List[List[str]]]:
    """``nvidia-smi --query-gpu=FIELDS``, one row of stripped cells per GPU; None when it cannot answer."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=SMI_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [[cell.strip() for cell in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def gpu_free_memory() -> Optional[List[int]]:
    """Free bytes per visible NVIDIA GPU, or None when GPUs cannot be queried here."""
    free = _nvml_each(lambda nvml, handle: nvml.nvmlDeviceGetMemoryInfo(handle).free)
    if free is not None:
        return free
    rows = _smi("memory.free")
    return None if rows is None else [int(float(row[0])) * MIB for row in rows]


def gpu_total_memory() -> List[int]:
    """Total bytes of memory per GPU ([] when unknown)."""
    try:
        totals = _nvml_each(lambda nvml, handle: nvml.nvmlDeviceGetMemoryInfo(handle).total)
    except Exception:  # noqa: BLE001 - a driver that cannot answer: ask nvidia-smi
        totals = None
    if totals is not None:
        return totals
    try:
        return [int(float(row[0])) * MIB for row in _smi("memory.total") or []]
    except ValueError:
        return []


def _name(nvml: Any, handle: Any) -> str:
    name = nvml.nvmlDeviceGetName(handle)
    return name.decode() if isinstance(name, bytes) else str(name)


def gpu_models() -> List[str]:
    """Names of the NVIDIA GPUs here ([] if none can be seen)."""
    try:
        names = _nvml_each(_name)
    except Exception:  # noqa: BLE001 - no library, no driver, no GPU: all mean "none seen here"
        names = None
    if names is not None:
        return names
    return [row[0] for row in _smi("name") or [] if row[0]]


def gpu_table() -> Optional[List[Dict[str, Any]]]:
    """Per GPU: index, name, free and total memory, utilisation; None when none can be queried."""
    rows = _smi("index", "name", "memory.free", "memory.total", "utilization.gpu")
    if rows is None:
        return None
    table = []
    for parts in rows:
        if len(parts) != 5:
            continue
        try:
            table.append({"index": int(parts[0]), "name": parts[1], "mem_free": int(float(parts[2])) << 20,
                          "mem_total": int(float(parts[3])) << 20,
                          "util": int(float(parts[4])) if parts[4].replace(".", "").isdigit() else None})
        except ValueError:
            continue
    return table


class Gpus:
    """Per-GPU utilisation and memory through NVML, held open for sampling; ``available``
    False without it."""

    def __init__(self, indices: Optional[List[int]] = None) -> None:
        self.nvml: Any = None
        self.handles: Dict[int, Any] = {}
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            wanted = [i for i in (indices if indices is not None else range(count)) if 0 <= i < count]
            self.handles = {i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in wanted}
            self.nvml = pynvml
        except Exception:  # noqa: BLE001 - no library, no driver, no GPU: no GPU fields
            self.nvml = None

    @property
    def available(self) -> bool:
        return self.nvml is not None and bool(self.handles)

    def sample(self, pids: Optional[Set[int]] = None) -> Dict[str, float]:
        out: Dict[str, float] = {}
        if not self.available:
            return out
        nvml = self.nvml
        for index, handle in self.handles.items():
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                out[f"gpu{index}_mem"] = float(memory.used)
                out[f"gpu{index}_mem_total"] = float(memory.total)
                out[f"gpu{index}_util"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # noqa: BLE001 - one GPU that cannot answer is skipped
                continue
            if pids:
                try:
                    procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                    out[f"gpu{index}_mem_run"] = float(sum(p.usedGpuMemory or 0 for p in procs if p.pid in pids))
                except Exception:  # noqa: BLE001 - not every driver tells per process
                    pass
        return out

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self.nvml = None


__all__ = ["nearest_existing", "Disk", "disk", "Ram", "ram", "gpu_free_memory", "gpu_total_memory", "gpu_models",
           "gpu_table", "Gpus"]
