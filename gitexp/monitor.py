"""Resource sampling of a run: its process tree, the host, the disk, the GPUs.

:class:`ResourceWatcher` samples every ``GITEXP_SAMPLE_INTERVAL`` seconds (default 5; 0
turns it off) from the executor's watch thread:

* the program's process tree (the process group the executor started, children included):
  CPU (percent of one core, summed) and resident memory;
* the host: RAM in use and in total;
* free disk on the filesystem of the run's output directory;
* per GPU, through NVML (``pip install 'gitexp[gpu]'`` for nvidia-ml-py): utilisation, memory
  in use and in total, and the memory the run's own processes hold. Without the library, a
  driver or a GPU the GPU fields are absent and nothing fails. With ``CUDA_VISIBLE_DEVICES``
  set to indices, only those GPUs (NVML's numbering: set ``CUDA_DEVICE_ORDER=PCI_BUS_ID``).

Where it goes: every sample is a flat record (``time``, ``cpu``, ``rss``, ``ram_used``,
``ram_total``, ``disk_free``, ``gpu<i>_util``, ``gpu<i>_mem``, ``gpu<i>_mem_total``,
``gpu<i>_mem_run``); the history is kept in the details note under ``resources.samples``
(at most :data:`MAX_SAMPLES`: when full, every other one is dropped and sampling keeps half
as many from then on, so a week-long run keeps its whole shape); the peaks go in the
summary note's ``resources`` (``show`` prints them); the latest sample and the peaks are in
``<run dir>/resources.json`` for ``git exp top`` (replaced atomically at each sample).

Cost: one sample reads /proc for each process of the tree and makes one statvfs and a few
NVML calls: about a millisecond, far under 1% of a core at one sample per 5 s.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from typing import Any, Dict, List, Optional

import psutil

from .hostprobe import Gpus, disk
from .watch import RunContext, Watcher

DEFAULT_INTERVAL = 5.0
# Seconds after the start at which a run is sampled besides every interval: a run of a few
# seconds still gets its CPU and memory measured (the first sample only starts CPU timing).
EARLY_SAMPLES = (0.25, 0.5, 1.0, 2.0)
MAX_SAMPLES = 1000
LIVE_FILE = "resources.json"


def interval_setting() -> float:
    raw = os.environ.get("GITEXP_SAMPLE_INTERVAL", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def visible_gpu_indices() -> Optional[List[int]]:
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None or not raw.strip():
        return None
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        return None  # UUIDs or MIG names: every GPU is sampled


class Sampler:
    """One run's samples: its process tree (by process group), the host, its disk, its GPUs."""

    def __init__(self, pid: int, disk_path: str, gpus: Optional[Gpus] = None) -> None:
        self.pid = pid
        self.disk_path = disk_path
        self.gpus = gpus if gpus is not None else Gpus(visible_gpu_indices())
        self.procs: Dict[int, psutil.Process] = {}

    def tree(self) -> List[psutil.Process]:
        """The main process and every descendant, the same Process objects from one sample to
        the next (cpu_percent measures since the previous call on the same object)."""
        found: List[psutil.Process] = []
        try:
            main = self.procs.get(self.pid) or psutil.Process(self.pid)
            found = [main, *main.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        fresh: Dict[int, psutil.Process] = {}
        for proc in found:
            fresh[proc.pid] = self.procs.get(proc.pid, proc)
        self.procs = fresh
        return list(fresh.values())

    def sample(self, now: Optional[float] = None) -> Dict[str, float]:
        record: Dict[str, float] = {"time": now if now is not None else time.time()}
        cpu = rss = 0.0
        pids = set()
        for proc in self.tree():
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                pids.add(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        record.update(cpu=round(cpu, 1), rss=rss, procs=float(len(pids)))
        memory = psutil.virtual_memory()
        record.update(ram_used=float(memory.total - memory.available), ram_total=float(memory.total))
        try:
            usage = disk(self.disk_path)
            record.update(disk_free=float(usage.free), disk_total=float(usage.total))
        except OSError:
            pass
        record.update(self.gpus.sample(pids))
        return record


class History:
    """At most ``limit`` samples over the whole run: when full, every other one goes and only
    every ``stride``-th new sample is kept (the stride doubles)."""

    def __init__(self, limit: int = MAX_SAMPLES) -> None:
        self.limit = limit
        self.samples: List[Dict[str, float]] = []
        self.stride = 1
        self.offered = 0

    def add(self, sample: Dict[str, float]) -> None:
        self.offered += 1
        if (self.offered - 1) % self.stride:
            return
        self.samples.append(sample)
        if len(self.samples) > self.limit:
            del self.samples[1::2]
            self.stride *= 2


def peaks(samples: List[Dict[str, float]], into: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """Summary numbers: highest CPU, RSS, host RAM in use, GPU use; lowest free disk."""
    out = dict(into or {})
    for sample in samples:
        for key, value in sample.items():
            if key in ("time", "procs") or not isinstance(value, (int, float)):
                continue
            if key == "disk_free":
                out["disk_free_min"] = min(out.get("disk_free_min", value), value)
            elif key.endswith("_total"):
                out[key] = value
            else:
                name = f"{key}_peak"
                out[name] = max(out.get(name, value), value)
    gpu_mem = [v for k, v in out.items() if k.startswith("gpu") and k.endswith("_mem_peak")]
    if gpu_mem:
        out["gpu_mem_peak"] = max(gpu_mem)
    return out


class ResourceWatcher(Watcher):
    def __init__(self, ctx: RunContext, interval: float, sampler: Optional[Sampler] = None) -> None:
        self.ctx = ctx
        self.interval = interval
        self.sampler = sampler or Sampler(ctx.pid, ctx.paths.outdir)
        self.history = History()
        self.recent_samples: List[Dict[str, float]] = []  # the last ten minutes, for diagnostics
        self.peak: Dict[str, float] = {}
        self.next_at = 0.0
        self.live_path = os.path.join(ctx.paths.root, LIVE_FILE)
        self.lock = threading.Lock()  # the early samples come from a thread of their own
        self.ended = threading.Event()
        self.take(time.time())  # the start: also where CPU timing begins
        if interval > max(EARLY_SAMPLES):
            threading.Thread(target=self._early, daemon=True, name="gitexp-early-samples").start()

    def _early(self) -> None:
        begun = time.monotonic()
        for at in EARLY_SAMPLES:
            if self.ended.wait(max(0.0, at - (time.monotonic() - begun))):
                return
            self.take(time.time())

    def on_tick(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.interval
        self.take(now)

    def take(self, now: float) -> Dict[str, float]:
        with self.lock:
            sample = self.sampler.sample(now)
            self.history.add(sample)
            self.peak = peaks([sample], self.peak)
            self.recent_samples.append(sample)
            while self.recent_samples and now - self.recent_samples[0]["time"] > 600:
                self.recent_samples.pop(0)
            self._write_live(sample)
        return sample

    def recent(self) -> List[Dict[str, float]]:
        with self.lock:
            return list(self.recent_samples)

    def _write_live(self, sample: Dict[str, float]) -> None:
        tmp = f"{self.live_path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"latest": sample, "peaks": self.peak, "interval": self.interval}, handle)
            os.replace(tmp, self.live_path)
        except OSError:
            pass  # a full disk: the notes still get the peaks

    def on_end(self, status: str) -> None:
        self.ended.set()
        self.take(time.time())  # the end: host memory and disk as the run leaves them
        self.sampler.gpus.close()

    def summary_fields(self) -> Dict[str, Any]:
        if not self.history.samples:
            return {}
        out: Dict[str, Any] = {k: (round(v, 1) if k.startswith("cpu") else v) for k, v in self.peak.items()}
        out.update(samples=len(self.history.samples), interval=self.interval)
        return {"resources": out}

    def details_fields(self) -> Dict[str, Any]:
        if not self.history.samples:
            return {}
        return {"resources": {"samples": list(self.history.samples)}}


def read_live(run_root: str) -> Dict[str, Any]:
    """``resources.json`` of a run in progress here: {"latest": {...}, "peaks": {...}}, or {}."""
    try:
        with open(os.path.join(run_root, LIVE_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def factory(ctx: RunContext) -> Optional[Watcher]:
    interval = interval_setting()
    if interval <= 0:
        return None
    watcher = ResourceWatcher(ctx, interval)
    ctx.monitor = watcher  # read by diagnostics (disk, RAM, GPU rules)
    return watcher
