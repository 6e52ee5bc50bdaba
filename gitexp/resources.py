"""Preflight checks of an experiment's ``requires`` against this machine, with the numbers."""
from __future__ import annotations

import os
from typing import List, Optional

from .config import Requires
from .hostprobe import disk, gpu_free_memory, ram
from .units import format_size


def check(requires: Requires, disk_path: str, gpu_ids: Optional[List[int]] = None) -> List[str]:
    """What does not fit now, one readable line each; [] when everything fits."""
    problems = []
    if requires.disk:
        here = disk(disk_path)
        if here.free < requires.disk:
            problems.append(f"not enough free disk at {here.path}: "
                            f"{format_size(here.free)} free, {format_size(requires.disk)} required")
    if requires.ram:
        available = ram().available
        if available < requires.ram:
            problems.append(f"not enough free RAM: {format_size(available)} available, "
                            f"{format_size(requires.ram)} required")
    if requires.cpus and (os.cpu_count() or 1) < requires.cpus:
        problems.append(f"not enough CPUs: {os.cpu_count()} here, {requires.cpus} required")
    if requires.gpu_mem or requires.gpus:
        gpu_free = gpu_free_memory()
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
