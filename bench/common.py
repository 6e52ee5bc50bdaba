"""Shared helpers for the benchmarks: a scratch repository and a timer."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

ROOT = Path(__file__).resolve().parents[1]


def scratch_repo(files: dict) -> Path:
    path = Path(tempfile.mkdtemp(prefix="gitexp-bench-"))
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@x"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    for name, text in files.items():
        (path / name).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=path, check=True, env=env)
    return path


def gitexp_argv(*args: str) -> List[str]:
    return [sys.executable, "-m", "gitexp", *args]


def median_of(n: int, fn: Callable[[], None]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def wait_for_gc() -> None:
    """Wait until no `git gc` or `git pack-refs` runs (gitexp starts them detached after writes;
    they skew timings)."""
    import psutil

    while any({"gc", "pack-refs"} & set((p.info["cmdline"] or [])[1:3]) and "git" in (p.info["name"] or "")
              for p in psutil.process_iter(["name", "cmdline"])):
        time.sleep(0.2)
