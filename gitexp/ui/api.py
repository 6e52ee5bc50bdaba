"""What ``git exp ui`` answers with: plain data built by the library functions the commands use.

Nothing here reads a path a note names, and nothing here writes. Each function takes the
:class:`Api` (the repository, its store and a cache of the listing) and returns JSON-ready
data; :mod:`gitexp.ui.server` turns requests into calls and checks who may ask.

The listing (``Store.experiments``: three git processes whatever the count) is cached under a
fingerprint of the experiment refs and the summary notes tip (one ``for-each-ref``), so a
browser polling every second costs one git process per poll while nothing changes.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import live as live_mod
from .. import plots
from ..errors import BadInput
from ..metrics import finite_number, parse_spark
from ..notes import DETAILS_REF, EXP_PREFIX, METRICS_REF, QUEUE_PREFIX, SUMMARY_REF, Experiment, Store
from ..paths import run_paths
from ..query import known_keys, parse_filter, sort_experiments
from ..repo import Repo
from ..status import live_statuses
from ..summary import json_safe, json_safe_dict, load_history
from ..timing import start_of

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_POINTS = 1200  # per curve sent to the browser: min/max decimated beyond (plots.decimate); a
# 1280-pixel-wide chart shows no more, and 20 runs x 4,000 points cost the browser 1.3 s
LOG_TAIL_BYTES = 64 * 1024
DIFF_BYTES = 1 << 20
OPEN = ("pending", "starting", "running")


SETTLED_NOT = OPEN + ("created", "queued")  # statuses live_statuses may change: asked at every request


class RawJson:
    """An answer already serialised (the server sends it as it is)."""

    def __init__(self, body: bytes) -> None:
        self.body = body


class Listing:
    """One snapshot of every experiment: the experiments, and the fingerprint it was read at.

    ``settled``: the JSON rows of experiments whose status no runner changes (ended runs),
    serialised once per snapshot, so that a page load with 10,000 experiments serialises only
    the few open ones.
    """

    def __init__(self, version: str, exps: List[Experiment]) -> None:
        self.version = version
        self.exps = exps
        self.by_sha = {e.sha: e for e in exps}
        self.settled: Optional[Tuple[str, Dict[str, str], List[str], List[str]]] = None


FAR_INTERVAL = 10.0  # seconds between asking run targets on other hosts (git exp ui --refresh-targets)


class Api:
    def __init__(self, repo: Repo, far_interval: float = FAR_INTERVAL) -> None:
        self.repo = repo
        self.far_interval = far_interval
        self._far: Dict[str, Tuple[str, Optional[str]]] = {}  # sha -> (status, why) as its target last said
        self._far_at = -math.inf
        self._far_lock = threading.Lock()
        self.store = Store(repo)
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._listing: Optional[Listing] = None
        self._histories: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
        self._points: Dict[Tuple[str, str, str], Tuple[List[Dict[str, Any]], List[float], List[float]]] = {}

    # -- the listing ----------------------------------------------------------------------
    def fingerprint(self) -> str:
        refs = self.repo.refs(EXP_PREFIX, SUMMARY_REF, QUEUE_PREFIX)
        digest = hashlib.sha1()
        for ref in sorted(refs):
            digest.update(f"{ref} {refs[ref]}\n".encode())
        return digest.hexdigest()[:16]

    def listing(self) -> Listing:
        version = self.fingerprint()
        with self._lock:
            if self._listing is None or self._listing.version != version:
                self._listing = Listing(version, self.store.experiments())
            return self._listing

    def find(self, sha: str, listing: Optional[Listing] = None) -> Experiment:
        """A listed experiment by its full sha, or an earlier attempt of one (by its chain)."""
        if not SHA_RE.match(sha or ""):
            raise BadInput("an experiment id is 40 hex digits")
        listing = listing or self.listing()
        if sha in listing.by_sha:
            return listing.by_sha[sha]
        return self.store.find(sha)  # an earlier attempt: Store checks its chain


def experiments(api: Api) -> RawJson:
    """Every experiment as a table row, with its live status and (running here) live metrics."""
    listing = api.listing()
    with api._lock:
        if listing.settled is None:
            settled = [e for e in listing.exps if e.status not in SETTLED_NOT]
            rows = [_row(api, e, e.status) for e in settled]
            listing.settled = (dumps(rows)[1:-1], *_columns(settled, rows))
    settled_json, goals, metrics, params = listing.settled
    open_exps = [e for e in listing.exps if e.status in SETTLED_NOT]
    statuses = _statuses(api, open_exps)
    open_rows = [_row(api, e, statuses[e.sha]) for e in open_exps]
    more_goals, more_metrics, more_params = _columns(open_exps, open_rows)
    rows_json = ",".join(part for part in (dumps(open_rows)[1:-1], settled_json) if part)
    head = {"version": listing.version, "host": api.host, "goals": {**goals, **more_goals},
            "metrics": list(dict.fromkeys(metrics + more_metrics)), "params": list(dict.fromkeys(params + more_params))}
    return RawJson((dumps(head)[:-1] + ',"rows":[' + rows_json + "]}").encode())


def _columns(exps: Sequence[Experiment], rows: Sequence[Dict[str, Any]]) -> Tuple[Dict[str, str], List[str], List[str]]:
    """The goals, metric names (goal ones first) and param names of these rows."""
    goals: Dict[str, str] = {}
    for exp in exps:
        found = exp.summary.get("goals")
        for name, goal in (found.items() if isinstance(found, dict) else ()):
            goals.setdefault(str(name), str(goal))
    metrics: Dict[str, None] = dict.fromkeys(goals)
    params: Dict[str, None] = {}
    for row in rows:
        metrics.update(dict.fromkeys(row["metrics"]))
        params.update(dict.fromkeys(str(k) for k in row["params"]))
    return goals, list(metrics), list(params)


def dumps(data: Any) -> str:
    """Strict JSON (NaN and infinities from notes become null): the values are walked only when
    the fast encoder finds one (160,000 curve points cost that walk 0.5 s)."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return json.dumps(json_safe(data), separators=(",", ":"), allow_nan=False, default=str)


def running(api: Api) -> Dict[str, Any]:
    """The cheap poll: the listing's version and the rows of runs in progress (live metrics)."""
    listing = api.listing()
    open_exps = [e for e in listing.exps if e.status in OPEN or e.status in ("created", "queued")]
    statuses = _statuses(api, open_exps)
    rows = [_row(api, e, statuses[e.sha]) for e in open_exps]
    return {"version": listing.version, "rows": rows}


def _statuses(api: Api, exps: Sequence[Experiment]) -> Dict[str, str]:
    statuses = {sha: status for sha, (status, _why) in live_statuses(api.repo, exps).items()}
    _far_statuses(api, exps, statuses)
    live_mod.refresh(api.repo, exps, statuses)  # runs in progress here: their points so far
    return statuses


def _far_statuses(api: Api, exps: Sequence[Experiment], statuses: Dict[str, str]) -> None:
    """Runs on targets on other hosts (ssh; Slurm or Grid Engine over ssh) as their target says:
    asked at most every ``far_interval`` seconds, one round trip per target for all its runs
    (as ``git exp queue --on``); between asks, the last answer. Their notes change only with
    ``git exp pull``, so without this a run there would show its recorded status for ever."""
    from ..runners import group

    asked = [e for e in exps if e.summary.get("target") and statuses[e.sha] in SETTLED_NOT]
    if api.far_interval <= 0 or not asked:
        return
    if time.monotonic() - api._far_at >= api.far_interval and api._far_lock.acquire(blocking=False):
        try:  # one request asks; the others meanwhile use the last answer
            api._far_at = time.monotonic()
            for runner, members in group(api.repo, api.store, asked):
                if runner.REMOTE:
                    api._far.update(runner.states(members))
        finally:
            api._far_lock.release()
    for exp in asked:
        if exp.sha in api._far:
            statuses[exp.sha] = api._far[exp.sha][0]


def _row(api: Api, exp: Experiment, status: str) -> Dict[str, Any]:
    s = exp.summary
    metrics = s.get("metrics") if isinstance(s.get("metrics"), dict) else {}
    alerts = s.get("alerts")
    return {
        "id": exp.sha, "name": exp.name, "group": s.get("group"), "status": status,
        "params": s.get("params") if isinstance(s.get("params"), dict) else {},
        "metrics": {str(n): {"best": m.get("best"), "last": m.get("last"), "spark": parse_spark(m.get("spark"))}
                    for n, m in (metrics or {}).items() if isinstance(m, dict)},
        "created": s.get("created"), "started": s.get("started"), "ended": s.get("ended"),
        "duration": s.get("duration"), "host": s.get("host"), "target": s.get("target"),
        "attempt": exp.attempt, "alerts": len(alerts) if isinstance(alerts, list) else 0,
    }


def select(api: Api, filters: Sequence[str], sort: Optional[str]) -> Dict[str, Any]:
    """The ids that ``git exp log --filter ... --sort ...`` would list, in its order."""
    listing = api.listing()
    exps = list(listing.exps)
    parsed = [parse_filter(text) for text in filters if text.strip()]
    keys = known_keys(exps)
    for name in [f.key for f in parsed] + ([sort.lstrip("-")] if sort else []):
        if exps and name not in keys and not (name.endswith(".last") and name[:-5] in keys):
            raise BadInput(f"unknown param or metric {name!r}")
    statuses = _statuses(api, exps) if parsed else {e.sha: e.status for e in exps}
    exps = [e for e in exps if all(f.matches(e, statuses[e.sha]) for f in parsed)]
    return {"ids": [e.sha for e in sort_experiments(exps, sort or None)]}


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
    statuses = _statuses(api, exps)
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


def _history(api: Api, exp: Experiment, status: str) -> List[Dict[str, Any]]:
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
        done = [m for m in members if m["status"] == "finished"]
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


def folds(api: Api, over: Sequence[str]) -> Dict[str, Any]:
    """``git exp log --over``'s folds of every listed experiment: each metric's mean ± std of the
    finished runs, and the ids of the runs in each (those not finished counted apart)."""
    from .. import seeds

    listing = api.listing()
    if not over or not all(over):
        raise BadInput("over: name a param, e.g. seed")
    known = {k for e in listing.exps for k in (e.summary.get("params") or {})}
    for name in over:
        if listing.exps and name not in known:
            raise BadInput(f"no experiment has a param {name!r}")
    open_exps = [e for e in listing.exps if e.status in SETTLED_NOT]
    statuses = {e.sha: e.status for e in listing.exps}
    statuses.update(_statuses(api, open_exps))
    out = []
    for f in seeds.fold(listing.exps, statuses, over):
        data = f.to_json()
        data["label"] = seeds.fold_label(f, over)
        data["open"] = [e.sha for e in f.open]
        out.append(data)
    return {"over": list(over), "folds": out}


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
    history = _history(api, exp, status)
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


def diff(api: Api, a: str, b: str) -> Dict[str, Any]:
    """Params, config and metrics of A against B, and the code as ``git diff`` shows it."""
    from ..notes import CONFIG_PATH

    left, right = api.find(a), api.find(b)
    config_a, config_b = _flat(api.store.config_of(left.sha)), _flat(api.store.config_of(right.sha))
    # Only full shas of listed experiments reach git's argv, never text from notes.
    text = api.repo.out(["diff", left.sha, right.sha, "--", ".", f":(exclude){CONFIG_PATH}"])
    return json_safe_dict({
        "a": {"id": left.sha, "name": left.name}, "b": {"id": right.sha, "name": right.name},
        "params": _changed(_flat(left.summary.get("params")), _flat(right.summary.get("params"))),
        "config": _changed(config_a, config_b),
        "code": text[:DIFF_BYTES], "code_cut": len(text) > DIFF_BYTES,
    })


def _flat(data: Any, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and len(name) < 200:
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def _changed(left: Dict[str, Any], right: Dict[str, Any]) -> List[List[Any]]:
    return [[k, left.get(k), right.get(k)] for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)]


# -- the queue and the hosts --------------------------------------------------------------------
def queue(api: Api, on: Optional[str] = None) -> Dict[str, Any]:
    """What ``git exp queue`` lists here, or (``on``) on an ssh run target in one round trip."""
    from ..queue import listing

    if on:
        return json_safe_dict({"target": on, **_far(api, on).queue_report(False)})
    exps = api.listing().exps
    view = listing(api.repo, api.store, exps, show_all=False)
    return json_safe_dict({"target": None, "host": api.host, "queued": view.items("queued"),
                      "running": view.items("running"), "done": view.items("done")})


def hosts(api: Api, on: Optional[str] = None) -> Dict[str, Any]:
    """Free GPUs, RAM and disk: this machine, or one ssh run target (as ``git exp hosts``)."""
    from ..runners.agent import resources

    if on:
        report = _far(api, on).queue_report(False)
        return json_safe_dict({"name": on, "host": report.get("host"), "resources": report.get("resources") or {}})
    return json_safe_dict({"name": "here", "host": api.host, "resources": resources(api.repo)})


def targets(api: Api) -> Dict[str, Any]:
    """The run targets: their names, where they are, and why one is not contacted."""
    from ..targets import load_targets_leniently

    found, problems, unreadable = load_targets_leniently(api.repo)
    rows = [{"name": name, "runner": t.runner, "host": t.host, "refusal": str(t.refusal) if t.refusal else None}
            for name, t in sorted(found.items())]
    rows += [{"name": name, "runner": None, "host": None, "refusal": problem} for name, problem in problems.items()]
    return {"targets": rows, "unreadable": unreadable}


def _far(api: Api, name: str) -> Any:
    from ..runners import far_runner
    from ..targets import get_target

    return far_runner(api.repo, api.store, get_target(api.repo, name))
