"""gitexp.log cost per point vs a raw buffered json-lines write, in the same process, inside git exp run.

Usage: python bench/bench_log_api.py [points]
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from common import ROOT, gitexp_argv, scratch_repo

PROGRAM = textwrap.dedent('''
    import json, os, sys, time
    import gitexp
    n = int(sys.argv[1])
    assert os.environ.get("GITEXP_METRICS_FILE"), "must run inside git exp run"

    def raw():
        with open("raw.jsonl", "w", buffering=1 << 16) as f:
            t0 = time.perf_counter()
            for i in range(n):
                point = {"loss": 0.5 / (i + 1), "val_err": 0.1, "step": i, "time": time.time()}
                f.write(json.dumps(point) + "\\n")
            return time.perf_counter() - t0

    def api():
        t0 = time.perf_counter()
        for i in range(n):
            gitexp.log(step=i, loss=0.5 / (i + 1), val_err=0.1)
        gitexp.flush()
        return time.perf_counter() - t0

    raws, apis = [], []
    for _ in range(3):
        raws.append(raw()); apis.append(api())
    r, a = min(raws), min(apis)
    print(f"RESULT points={n} raw_us={r / n * 1e6:.3f} api_us={a / n * 1e6:.3f} ratio={a / r:.2f}")
''')


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    repo = scratch_repo({"prog.py": PROGRAM, "c.yaml": f"command: python prog.py {n}\n"})
    env_path = {"PYTHONPATH": str(ROOT)}
    import os

    proc = subprocess.run(gitexp_argv("run", "c.yaml"), cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **env_path})
    line = [text for text in proc.stdout.splitlines() if text.startswith("RESULT")]
    if proc.returncode != 0 or not line:
        print(proc.stdout, proc.stderr)
        sys.exit(1)
    print(line[0])
    rows = json.loads(subprocess.run(gitexp_argv("log", "--format", "json"), cwd=repo, capture_output=True,
                                     text=True, env={**os.environ, **env_path}).stdout)
    print(f"recorded points: {rows[0]['metrics']['loss']['count']}")


if __name__ == "__main__":
    main()
