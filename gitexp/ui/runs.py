"""What ``git exp ui`` shows of chosen runs: their curves (chains of attempts joined, decimated,
with checkpoints and alerts marked, bands over a param) and one run's page. Like
:mod:`gitexp.ui.api` (the listing and its cache), nothing here reads a path a note names, and
nothing here writes.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..lifecycle import Status
from .. import live as live_mod
from .. import plots
from ..errors import BadInput
from ..metrics import finite_number
from ..notes import DETAILS_REF, METRICS_REF, Experiment
from ..paths import run_paths
from ..status import live_statuses
from ..summary import json_safe_dict, load_history
from ..timing import start_of
from .api import MAX_POINTS, OPEN, Api, current_statuses

LOG_TAIL_BYTES = 64 * 1024

# -- curves -------------------------------------------------------------------------------------
def curves(api: Api, ids: Sequence[str], metric: str, x: str = "step", smooth: float = 0.0,
           band: Optional[str] = None, full: bool = False) -> Dict[str, Any]:
    """The metric's curve of each run (its chain of attempts joined), decimated, with the
    checkpoints and alerts to mark; with ``band``, mean and std of runs differing only in it."""
    if x not in ("step", "time", "epoch"):
        raise BadInput(f"x {x!r}: step, time or epoch")
    if not 0 <= smooth < 1:
        raise BadInput("smooth is in [0, 1)")
    listing = api.listing()
    exps = [api.find(sha, listing) for sha in dict.fromkeys(ids)][:200]
    statuses = current_statuses(api, exps)
    histories = _histories(api, exps, statuses, full)
    runs = []
    for exp in exps:
        history = histories[exp.sha]
        start = start_of(history, exp.summary)
        key = (exp.sha, metric, x)
        cached = api._points.get(key)
        if cached is not None and cached[0] is history:  # the same cached history: same points
            xs, ys = cached[1], cached[2]
        else:
            xs, ys = step_points(history, metric) if x == "step" else plots.points(history, metric, x, start)
            if len(api._points) > 512:
                api._points.clear()
            api._points[key] = (history, xs, ys)
        ys = plots.smooth(ys, smooth)
        dx, dy = plots.decimate(xs, ys, MAX_POINTS // 2)
        runs.append({"id": exp.sha, "name": exp.name, "status": statuses[exp.sha], "x": dx, "y": dy,
                     "count": len(xs), "params": exp.summary.get("params") or {},
                     "marks": _marks(exp, history, x, start), "full": (xs, ys)})
    bands = _bands(runs, band) if band else []
    for run in runs:
        del run["full"]
    return {"metric": metric, "x": x, "runs": runs, "bands": bands}  # made strict JSON once, when sent


def run_history(api: Api, exp: Experiment, status: str) -> List[Dict[str, Any]]:
    return _histories(api, [exp], {exp.sha: status})[exp.sha]


def _histories(api: Api, exps: Sequence[Experiment], statuses: Mapping[str, str], full: bool = False
               ) -> Dict[str, List[Dict[str, Any]]]:
    """sha -> history, its chain of attempts joined: live from the run directory for a run in
    progress here; else from the notes, all in one ``cat-file`` call, cached per notes tip (a
    finished run's history is read once): a run's summary curve where it has one, unless
    ``full`` (every point)."""
    from ..attempts import chain_shas, join_histories

    out: Dict[str, List[Dict[str, Any]]] = {}
    rest = []
    for exp in exps:
        run = live_mod.read(api.repo, exp, statuses[exp.sha]) if statuses[exp.sha] in live_mod.OPEN else None
        if run is not None:
            out[exp.sha] = _joined(api, exp, run.history)
        else:
            rest.append(exp)
    if not rest:
        return out
    tips = api.repo.refs(METRICS_REF, DETAILS_REF)
    tip = f"{tips.get(METRICS_REF, '')}:{tips.get(DETAILS_REF, '')}:{'full' if full else 'curve'}"
    missing = [e for e in rest if (tip, e.sha) not in api._histories]
    chains = {e.sha: chain_shas(e.summary, e.sha) for e in missing}
    curves = {} if full else _summary_curves(api, [e for e in missing if len(chains[e.sha]) == 1])
    wanted = [sha for shas in chains.values() for sha in shas if sha not in curves]
    notes = api.store.read_notes(METRICS_REF, wanted) if wanted else {}
    if len(api._histories) > 256:
        api._histories.clear()
    for exp in missing:
        parts = [curves[sha] if sha in curves else chart_history(sha, notes.get(sha, b"")) for sha in chains[exp.sha]]
        api._histories[(tip, exp.sha)] = parts[0] if len(parts) == 1 else join_histories(parts)
    for exp in rest:
        out[exp.sha] = api._histories[(tip, exp.sha)]
    return out


def _summary_curves(api: Api, exps: Sequence[Experiment]) -> Dict[str, List[Dict[str, Any]]]:
    """The summary curves (at most 2,000 points per metric: each stretch's first, last, lowest
    and highest) of runs whose summary says they have one, from their details notes in one
    ``cat-file`` call (``history_file.curve_from_details``: checked); the rest read in full."""
    from ..history_file import curve_from_details
    from ..summary import load_details

    curved = [e.sha for e in exps if e.summary.get("curve") is True]
    out: Dict[str, List[Dict[str, Any]]] = {}
    for sha, data in (api.store.read_notes(DETAILS_REF, curved) if curved else {}).items():
        curve = curve_from_details(sha, load_details(sha, data, DETAILS_REF))
        if curve is not None:
            out[sha] = curve
    return out


def chart_history(sha: str, data: bytes) -> List[Dict[str, Any]]:
    """A metric-history note's records for the charts: one decode of all its lines, each line
    one JSON object, else the checked reading (``summary.load_history``: torn and bad lines).
    The values are not checked here: every value a chart takes is checked as it is read
    (:func:`step_points`, ``plots.points``), and nothing else of a record is used or sent."""
    body = data.strip()
    if not body:
        return []
    try:
        values = json.loads(b"[" + body.replace(b"\n", b",") + b"]")
    except (ValueError, RecursionError):
        values = None
    if isinstance(values, list) and len(values) == body.count(b"\n") + 1 and \
            all(v.__class__ is dict for v in values):
        return values
    return load_history(sha, data, METRICS_REF)


def step_points(history: Sequence[Mapping[str, Any]], metric: str) -> Tuple[List[float], List[float]]:
    """``plots.points(history, metric, "step")`` in one pass: finite numbers only (no bools)."""
    number = (int, float)
    finite = math.isfinite
    try:
        pairs = [(s, y) for r in history
                 if (y := r.get(metric)).__class__ in number and (s := r.get("step")).__class__ in number
                 and finite(y) and finite(s)]
    except OverflowError:  # an int beyond a float's range: the careful reading leaves it out
        return plots.points(history, metric, "step")
    return [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]


def _joined(api: Api, exp: Experiment, own: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    from ..attempts import chain_shas, join_histories

    earlier = chain_shas(exp.summary, exp.sha)[:-1]
    if not earlier:
        return own
    notes = api.store.read_notes(METRICS_REF, earlier)
    return join_histories([load_history(sha, notes.get(sha, b""), METRICS_REF) for sha in earlier] + [own])


def _marks(exp: Experiment, history: Sequence[Mapping[str, Any]], x: str, start: Optional[float]
           ) -> List[Dict[str, Any]]:
    """Checkpoints and alerts on the x axis (by step, or seconds since the start)."""
    marks = []
    for kind, items in (("checkpoint", exp.summary.get("checkpoints")), ("alert", exp.summary.get("alerts"))):
        for item in (items if isinstance(items, list) else [])[-200:]:
            if not isinstance(item, dict):
                continue
            at: Optional[float] = None
            if x == "time":
                when = finite_number(item.get("time"))
                at = when - start if when is not None and start is not None else None
            else:
                at = finite_number(item.get("step"))
            if at is not None:
                text = item.get("message") or item.get("rule") or item.get("path") or ""
                marks.append({"kind": kind, "x": at, "text": str(text)[:300]})
    return marks


def _bands(runs: List[Dict[str, Any]], param: str) -> List[Dict[str, Any]]:
    """Mean and sample std at each x any member logged, for finished runs whose params differ
    only in ``param`` (gitexp.seeds' rule); runs in progress or ended badly are counted in the
    label, never averaged in."""
    from .. import seeds

    groups: Dict[str, List[Dict[str, Any]]] = {}
    for run in runs:
        params = run["params"] if isinstance(run["params"], dict) else {}
        key = repr(sorted((k, repr(v)) for k, v in params.items() if k != param))
        groups.setdefault(key, []).append(run)
    out = []
    for members in groups.values():
        done = [m for m in members if m["status"] == Status.FINISHED]
        apart = len(members) - len(done)
        if len(done) < 2:
            continue
        at: Dict[float, List[float]] = {}
        for member in done:
            for x, y in zip(*member["full"]):
                at.setdefault(x, []).append(y)
        common = sorted(at)
        stats = [s for s in (seeds.stat(at[x]) for x in common) if s is not None]  # none is empty
        xs, mean_d = plots.decimate(common, [s.mean for s in stats], MAX_POINTS // 2)
        index = {x: i for i, x in enumerate(common)}
        std_d = [stats[index[x]].std or 0.0 for x in xs]
        params = done[0]["params"] if isinstance(done[0]["params"], dict) else {}
        label = " ".join(f"{k}={v}" for k, v in params.items() if k != param) or "all"
        note = f"; {apart} not finished, not averaged" if apart else ""
        out.append({"label": f"{label} (mean ± std of {len(done)} over {param}{note})", "x": xs, "mean": mean_d,
                    "std": std_d, "n": [stats[index[x]].n for x in xs],
                    "ids": [m["id"] for m in done], "apart": [m["id"] for m in members if m not in done]})
    return out




# -- one run ------------------------------------------------------------------------------------
def run_page(api: Api, sha: str) -> Dict[str, Any]:
    """Everything ``git exp show`` says about one run, plus resources over time and the log tail."""
    from ..attempts import chain_rows
    from ..monitor import read_live
    from ..timing import analyze

    exp = api.find(sha)
    status, why = live_statuses(api.repo, [exp])[exp.sha]
    live_mod.refresh(api.repo, [exp], {exp.sha: status})
    details = api.store.details(exp.sha)
    paths = run_paths(api.repo, exp.sha, exp.summary)  # this machine's directory, never a note's path
    resources = details.get("resources") if isinstance(details.get("resources"), dict) else {}
    samples = resources.get("samples") if isinstance(resources, dict) else None
    live_res = read_live(paths.root) if status in OPEN else {}
    history = run_history(api, exp, status)
    s = exp.summary
    return json_safe_dict({
        "id": exp.sha, "name": exp.name, "status": status, "reason": why or s.get("reason"),
        "summary": s, "config": api.store.config_of(exp.sha), "facts": details.get("facts") or {},
        "log_tail": _log_tail(paths.log) if status in OPEN else None,
        "note_log_tail": details.get("log_tail") or "",
        "samples": samples if isinstance(samples, list) else [], "live_resources": live_res,
        "attempts": chain_rows(api.store, exp, status), "timing": analyze(history, s),
        "checkpoints": s.get("checkpoints") if isinstance(s.get("checkpoints"), list) else [],
        "alerts": s.get("alerts") if isinstance(s.get("alerts"), list) else [],
        "notify": s.get("notify") if isinstance(s.get("notify"), dict) else None,
        "profile": _profile(details.get("profile")),
    })


def _profile(value: Any) -> Optional[Dict[str, Any]]:
    """The profile a run's details note holds (``--profile``): its top functions, checked (a note
    is a claim: only [name, share] pairs come through, as text and numbers)."""
    if not isinstance(value, dict):
        return None

    def rows(key: str) -> List[List[Any]]:
        items = value.get(key)
        return [[str(item[0]), float(item[1])] for item in (items if isinstance(items, list) else [])[:20]
                if isinstance(item, list) and len(item) == 2 and isinstance(item[1], (int, float))
                and not isinstance(item[1], bool)]

    samples = value.get("samples")
    return {"samples": samples if isinstance(samples, int) and not isinstance(samples, bool) else None,
            "top_self": rows("top_self"), "top_total": rows("top_total")}


def _log_tail(path: str) -> Optional[str]:
    """The last 64 KiB of this machine's output.log of the run (the path is ours, not a note's)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            data = handle.read(LOG_TAIL_BYTES)
    except OSError:
        return None
    return data.decode(errors="replace")
