"""Costs of `git exp ui` (issue #19), measured in a real headless Chromium (tests/cdp.py).

1. The table's first paint with 10,000 experiments: from the start of navigation to the
   table's rows in the DOM (the page's `gitexp-table-painted` mark), server already started
   (it reads the listing before it prints its URL) and after a restart of the browser tab.
2. Curves of 20 runs x 10,000 points: from selecting them to the chart drawn (the first time:
   histories read from the notes; again: from the server's cache).
3. A live point: from the program printing it to the page showing it (a real running run).
4. The server's memory (RSS) with 10,000 experiments listed.

Usage: python bench/bench_ui.py [experiments runs points]   (default: 10000 20 10000)
       python bench/bench_ui.py cold [runs points]           (default: 20 10000)

``cold`` measures the server's side of the first curves request alone, no browser: a new
``Api`` (no cache) answers ``/api/curves`` for the runs and the answer is serialised, three
times, interleaved with the same work done the way it was before (every record checked by
``summary.load_history``, points by ``plots.points``), so both see the same machine load.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import psutil  # noqa: E402

from bench_analysis import make  # noqa: E402
from cdp import Browser  # noqa: E402
from common import gitexp_argv, scratch_repo, wait_for_gc  # noqa: E402

from gitexp.notes import Store  # noqa: E402
from gitexp.repo import Repo  # noqa: E402

WAIT_PY = (HERE.parent / "tests" / "test_ui.py").read_text().split("WAIT_PY = '''")[1].split("'''")[0]


def chromium() -> str:
    proc = subprocess.run([str(HERE.parent / "scripts" / "chromium-up.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_ui: no Chromium: {proc.stderr.strip()}")
    return proc.stdout.strip().splitlines()[-1]


def cold(runs: int, points: int) -> None:
    import gitexp.watchers  # noqa: F401  (config sections, as the CLI installs them)
    from gitexp import plots
    from gitexp.notes import METRICS_REF
    from gitexp.summary import load_history
    from gitexp.ui import api as api_mod
    from gitexp.ui import runs as runs_mod

    path = scratch_repo({"a.txt": "x\n"})
    repo = Repo.discover(str(path))
    store = Store(repo)
    make(repo, store, runs, points, "curves", with_history=True)
    ids = [e.sha for e in api_mod.Api(repo).listing().exps]
    # The same runs as `git exp run` records them: a summary curve in each details note.
    make(repo, store, runs, points, "recorded", with_history=True, with_curve=True)
    recorded = [e.sha for e in api_mod.Api(repo).listing().exps if e.sha not in set(ids)]

    def cpu() -> float:  # this process's and its waited children's (git cat-file) CPU seconds
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def now(which: List[str]) -> Tuple[float, float]:
        api = api_mod.Api(repo)
        api.listing()
        start, used = time.perf_counter(), cpu()
        api_mod.dumps(runs_mod.curves(api, which, "val_err"))
        return time.perf_counter() - start, cpu() - used

    def before() -> Tuple[float, float]:
        api = api_mod.Api(repo)
        exps = api.listing().exps
        start, used = time.perf_counter(), cpu()
        notes = store.read_notes(METRICS_REF, ids)
        runs_out = []
        for exp in exps:
            xs, ys = plots.points(load_history(exp.sha, notes.get(exp.sha, b""), METRICS_REF), "val_err", "step")
            dx, dy = plots.decimate(xs, ys, api_mod.MAX_POINTS // 2)
            runs_out.append({"x": dx, "y": dy})
        api_mod.dumps(runs_out)
        return time.perf_counter() - start, cpu() - used

    pairs = [(before(), now(ids), now(recorded)) for _ in range(3)]
    print(f"cold curves, server side, {runs} runs x {points} points (load {os.getloadavg()[0]:.1f}); "
          "wall s (CPU s, git's included):")
    for name, k in (("as before (load_history + plots.points)", 0), ("now (chart_history + step_points)", 1),
                    ("now, runs as git exp run records them", 2)):
        print(f"  {name:42s} " + ", ".join(f"{p[k][0]:.2f} ({p[k][1]:.2f})" for p in pairs))


def main() -> None:
    if sys.argv[1:2] == ["cold"]:
        runs_, points_ = (int(a) for a in (sys.argv[2:] + ["20", "10000"][len(sys.argv) - 2:])[:2])
        cold(runs_, points_)
        return
    count, runs, points = (int(a) for a in (sys.argv[1:] + ["10000", "20", "10000"][len(sys.argv) - 1:])[:3])
    import gitexp.watchers  # noqa: F401  (config sections, as the CLI installs them)
    trigger = Path(tempfile.mkdtemp(prefix="gitexp-ui-trigger-"))
    path = scratch_repo({"wait.py": WAIT_PY, "config.yaml": (
        f"name: live\ncommand: {sys.executable} wait.py {trigger}\n"
        "metrics:\n  acc: {regex: 'acc=([0-9.]+)', goal: maximize}\n")})
    repo = Repo.discover(str(path))
    store = Store(repo)
    start = time.perf_counter()
    make(repo, store, count, 16, "listing", with_history=False)
    make(repo, store, runs, points, "curves", with_history=True, with_curve=True)  # as git exp run records them
    print(f"wrote {count} + {runs} experiments in {time.perf_counter() - start:.1f}s", flush=True)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    live = subprocess.run(gitexp_argv("run", "config.yaml", "--detach"), cwd=path, env=env, capture_output=True,
                          text=True, check=True).stdout.split()[-1]
    wait_for_gc()
    server = subprocess.Popen(gitexp_argv("ui", "--port", "0"), cwd=path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    assert server.stdout is not None
    begun = time.perf_counter()
    url = server.stdout.readline().strip()
    print(f"server ready (listing read) in {time.perf_counter() - begun:.2f}s: {url}")
    browser = Browser(chromium(), Path(tempfile.mkdtemp(prefix="gitexp-ui-profile-")))
    try:
        paints = []
        for _ in range(3):
            browser.open(url)
            browser.wait_for("document.body && document.body.dataset.ready === '1'", timeout=120)
            paints.append(browser.evaluate("performance.getEntriesByName('gitexp-table-painted')[0].startTime") / 1000)
            rows = browser.evaluate("document.getElementById('table').dataset.rows")
        print(f"table first paint, {rows} experiments: {', '.join(f'{p:.2f}' for p in paints)} s "
              f"(median {statistics.median(paints):.2f} s)")
        rss = psutil.Process(server.pid).memory_info().rss
        print(f"server RSS with {rows} experiments listed: {rss / 2**20:.0f} MiB")
        ids = browser.evaluate("JSON.stringify(state.rows.filter(r => r.group === 'curves').map(r => r.id))")
        times = []
        for n in range(3):
            if n == 2:  # a new tab of the same server: the page's own cost, histories cached on the server
                browser.open(url)
                browser.wait_for("document.body && document.body.dataset.ready === '1'", timeout=120)
            took = browser.evaluate("""(async () => {
                const ids = %s; const t = performance.now();
                document.getElementById('select-none').click();
                while (document.getElementById('curves-status').dataset.series !== '0')
                    await new Promise(r => setTimeout(r, 5));
                const t0 = performance.now();
                location.hash = '#/?sel=' + ids.join(',');
                while (document.getElementById('curves-status').dataset.series !== String(ids.length))
                    await new Promise(r => setTimeout(r, 5));
                await new Promise(r => requestAnimationFrame(r));
                return (performance.now() - t0) / 1000; })()""" % ids, await_promise=True)
            times.append(took)
        print(f"curves of {runs} runs x {points} points: {', '.join(f'{t:.2f}' for t in times)} s (first: histories "
              "read from the notes; then cached)")
        sha = json.loads(subprocess.run(gitexp_argv("log", "--format", "json", "-f", "name=live"), cwd=path, env=env,
                                        capture_output=True, text=True).stdout)[0]["id"]
        browser.evaluate(f"location.hash = '#/?sel={sha}'; document.getElementById('metric').value = 'acc'; "
                         "document.getElementById('metric').dispatchEvent(new Event('change'))")
        before = int(browser.wait_for("document.getElementById('curves-status').dataset.series === '1' && "
                                      "document.getElementById('curves-status').dataset.last", timeout=60))
        latencies = []
        for n in range(10):
            (trigger / f"go-{n}").write_text("")
            t0 = time.perf_counter()
            browser.wait_for(f"Number(document.getElementById('curves-status').dataset.last) >= {before + n + 1}",
                             timeout=20, interval=0.005)
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.13 * (n % 4))  # not in step with the page's polling
        print(f"live point latency: median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
              f"(10 points; the program prints within 0.01 s of the trigger)")
    finally:
        browser.close()
        (trigger / "stop").write_text("")
        server.terminate()
        server.wait()
        subprocess.run(gitexp_argv("cancel", live), cwd=path, env=env, capture_output=True)


if __name__ == "__main__":
    main()
