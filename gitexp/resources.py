"""Preflight checks of an experiment's ``requires`` against this machine, with the numbers."""
from __future__ import annotations

import os
import shutil
from typing import List, Optional

import psutil

from .config import Requires
from .units import format_size


def free_gpu_memory() -> Optional[List[int]]:
    """Free bytes per visible NVIDIA GPU, or None when GPUs cannot be queried here."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - library or driver missing
        return _free_gpu_memory_smi()
    try:
        return [pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).free
                for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _free_gpu_memory_smi() -> Optional[List[int]]:
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [int(float(x)) * 1024 * 1024 for x in out.stdout.split()]


def _existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check(requires: Requires, disk_path: str, gpu_ids: Optional[List[int]] = None) -> List[str]:
    """What does not fit now, one readable line each; [] when everything fits."""
    problems = []
    if requires.disk:
        free = shutil.disk_usage(_existing(disk_path)).free
        if free < requires.disk:
            problems.append(f"not enough free disk at {_existing(disk_path)}: "
                            f"{format_size(free)} free, {format_size(requires.disk)} required")
    if requires.ram:
        available = psutil.virtual_memory().available
        if available < requires.ram:
            problems.append(f"not enough free RAM: {format_size(available)} available, "
                            f"{format_size(requires.ram)} required")
    if requires.cpus and (os.cpu_count() or 1) < requires.cpus:
        problems.append(f"not enough CPUs: {os.cpu_count()} here, {requires.cpus} required")
    if requires.gpu_mem or requires.gpus:
        gpu_free = free_gpu_memory()
        if gpu_free is None:
            problems.append("requires a GPU but no NVIDIA GPU can be queried here "
                            "(no nvidia-smi; pip install 'gitexp[gpu]' for nvidia-ml-py)")
            return problems
        if gpu_ids is not None:
            gpu_free = [gpu_free[i] for i in gpu_ids if i < len(gpu_free)]
        if requires.gpus and len(gpu_free) < requires.gpus:
            problems.append(f"not enough GPUs: {len(gpu_free)} visible, {requires.gpus} required")
        if requires.gpu_mem and (not gpu_free or max(gpu_free) < requires.gpu_mem):
            most = format_size(max(gpu_free)) if gpu_free else "0B"
            problems.append(f"not enough free GPU memory: {most} free on the best GPU, "
                            f"{format_size(requires.gpu_mem)} required")
    return problems
