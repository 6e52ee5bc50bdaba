"""``git exp run --profile`` (or ``profile: true``): sample the program from outside with py-spy.

A run watcher (gitexp.watch): once the program's process tree has a Python process, py-spy
attaches to it (``--subprocesses``: DataLoader workers and other children too) and records raw
stacks at :data:`RATE` per second into ``{outdir}/profile/samples.txt`` until the program ends.
Then the samples become a flame graph (``flamegraph.svg``, drawn here) and the top functions by
own time (the frame on top of the stack) and by total time (anywhere on the stack), kept in the
details note under ``profile`` for ``show`` and ``report``.

Where profiling cannot happen (py-spy not installed, no permission to attach, no Python process
in the program), one line says why and the run goes on.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
import zlib
from typing import Any, Dict, List, Optional, Tuple

import psutil

from .watch import RunContext, Watcher

RATE = 100  # samples per second: py-spy's default; about 0.5% of one core's time in the program
TOP = 10
SAMPLES, SVG, LOG = "samples.txt", "flamegraph.svg", "py-spy.log"
HINT = "pip install 'gitexp[profile]'"
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*[a-z]?$")


def py_spy() -> Optional[str]:
    """py-spy beside this Python (its virtual environment's bin), else on the PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.access(here, os.X_OK) else shutil.which("py-spy")


def python_process(pid: int) -> Optional[int]:
    """The first Python process of the tree rooted at ``pid`` (the program may be a shell)."""
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                if _PYTHON.match(os.path.basename(proc.exe())):
                    return proc.pid
            except (psutil.Error, OSError):
                continue
    except psutil.Error:
        return None
    return None


class Profiler(Watcher):
    def __init__(self, ctx: RunContext, binary: str) -> None:
        self.ctx = ctx
        self.binary = binary
        self.folder = os.path.join(ctx.paths.outdir, "profile")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.target: Optional[int] = None
        self.result: Dict[str, Any] = {}
        self.attach()

    def attach(self) -> None:
        target = python_process(self.ctx.pid)
        if target is None:
            return
        os.makedirs(self.folder, exist_ok=True)
        argv = [self.binary, "record", "--pid", str(target), "--rate", str(RATE), "--format", "raw",
                "--function", "--subprocesses", "--output", os.path.join(self.folder, SAMPLES)]
        with open(os.path.join(self.folder, LOG), "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.target = target

    def on_tick(self, now: float) -> None:
        if self.proc is None and not self.result:
            self.attach()
        elif self.proc is not None and self.proc.poll() not in (None, 0) and psutil.pid_exists(self.target or 0):
            self._give_up(f"py-spy could not attach to pid {self.target} ({self._log_line()})")

    def on_end(self, status: str) -> None:
        if self.result:
            return
        if self.proc is None:
            self._give_up("no Python process in the program (py-spy samples Python only)")
            return
        code = self._wait()
        samples = read_samples(os.path.join(self.folder, SAMPLES))
        if not samples:
            self._give_up(f"py-spy recorded no samples (exit {code}: {self._log_line()})")
            return
        write_svg(samples, os.path.join(self.folder, SVG), f"{self.ctx.name}: {sum(samples.values())} samples")
        self.result = {"samples": sum(samples.values()), "rate": RATE, "pid": self.target,
                       "folder": self.folder, "files": [SVG, SAMPLES],
                       "top_self": top(samples, own=True), "top_total": top(samples, own=False)}

    def _wait(self) -> Optional[int]:
        """py-spy ends (and writes its file) once the program is gone; SIGINT also makes it write."""
        assert self.proc is not None
        for sig in (None, signal.SIGINT, signal.SIGKILL):
            if sig is not None:
                self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=10 if sig is None else 5)
            except subprocess.TimeoutExpired:
                continue
        return None

    def _give_up(self, why: str) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.result = {"error": why}
        self.ctx.say(f"gitexp: profile: {why}; the run goes on unprofiled")

    def _log_line(self) -> str:
        try:
            with open(os.path.join(self.folder, LOG), encoding="utf-8", errors="replace") as handle:
                lines = [line.strip() for line in handle if line.strip()]
        except OSError:
            return "no output"
        return lines[-1][:300] if lines else "no output"

    def details_fields(self) -> Dict[str, Any]:
        return {"profile": self.result} if self.result else {}


def factory(ctx: RunContext) -> Optional[Watcher]:
    if not getattr(ctx.config, "profile", False):
        return None
    binary = py_spy()
    if binary is None:
        ctx.say(f"gitexp: profile: py-spy is not installed ({HINT}); the run goes on unprofiled")
        return None
    return Profiler(ctx, binary)


# -- samples -------------------------------------------------------------------------------------
def read_samples(path: str) -> Dict[Tuple[str, ...], int]:
    """py-spy's raw (collapsed) stacks: ``frame;frame;... count``, outermost first; the process
    and thread frames ``--subprocesses`` adds are dropped, so stacks of every process add up."""
    out: Dict[Tuple[str, ...], int] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                frames = tuple(f for f in stack.split(";") if not f.startswith(("process ", "thread (")))
                if frames:
                    out[frames] = out.get(frames, 0) + int(count)
    except OSError:
        return {}
    return out


def top(samples: Dict[Tuple[str, ...], int], own: bool, n: int = TOP) -> List[List[Any]]:
    """[[function, share of samples], ...], largest first: by own time (on top of the stack) or
    by total time (anywhere on it, once per stack however deep the recursion)."""
    total = sum(samples.values()) or 1
    counts: Dict[str, int] = {}
    for stack, count in samples.items():
        for frame in ([stack[-1]] if own else set(stack)):
            counts[frame] = counts.get(frame, 0) + count
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [[frame, round(count / total, 4)] for frame, count in ranked]


def write_svg(samples: Dict[Tuple[str, ...], int], path: str, title: str, width: int = 1200) -> None:
    """A flame graph (outermost frame at the bottom, width = share of samples), each box titled
    with its function and share, so a browser shows them on hover."""
    tree: Dict[str, Any] = {"n": 0, "kids": {}}
    for stack, count in samples.items():
        node = tree
        node["n"] += count
        for frame in stack:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    depth = max((len(s) for s in samples), default=0)
    row, total = 17, tree["n"] or 1
    height = (depth + 2) * row + 30
    boxes: List[str] = []

    def draw(node: Dict[str, Any], x: float, level: int) -> None:
        for frame, kid in sorted(node["kids"].items()):
            w = kid["n"] / total * width
            if w >= 0.5:
                y = height - (level + 2) * row
                hue = 20 + zlib.crc32(frame.encode()) % 40
                label = html.escape(frame[:int(w / 7)]) if w > 25 else ""
                boxes.append(f'<g><title>{html.escape(frame)} ({kid["n"] / total:.1%})</title>'
                             f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="hsl({hue},90%,60%)"/>'
                             f'<text x="{x + 3:.1f}" y="{y + 12}">{label}</text></g>')
                draw(kid, x, level + 1)
            x += w

    draw(tree, 0.0, 0)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">'
           f'<text x="4" y="16" font-size="14">{html.escape(title)}</text>{"".join(boxes)}</svg>\n')
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(svg)
