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
import re
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import live as live_mod
from ..errors import BadInput
from ..metrics import parse_spark
from ..notes import EXP_PREFIX, QUEUE_PREFIX, SUMMARY_REF, Experiment, Store
from ..query import known_keys, parse_filter, sort_experiments
from ..repo import Repo
from ..status import live_statuses
from ..summary import json_safe, json_safe_dict
from .. import lifecycle

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_POINTS = 1200  # per curve sent to the browser: min/max decimated beyond (plots.decimate); a
# 1280-pixel-wide chart shows no more, and 20 runs x 4,000 points cost the browser 1.3 s
DIFF_BYTES = 1 << 20
OPEN = lifecycle.ACTIVE  # handed to an executor or a scheduler, not ended
SETTLED_NOT = lifecycle.OPEN  # statuses live_statuses may change (every one not final): asked at every request


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
    statuses = current_statuses(api, open_exps)
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
    open_exps = [e for e in listing.exps if e.status in SETTLED_NOT]
    statuses = current_statuses(api, open_exps)
    rows = [_row(api, e, statuses[e.sha]) for e in open_exps]
    return {"version": listing.version, "rows": rows}


def current_statuses(api: Api, exps: Sequence[Experiment]) -> Dict[str, str]:
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
                if runner.asks_another_host():
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
    statuses = current_statuses(api, exps) if parsed else {e.sha: e.status for e in exps}
    exps = [e for e in exps if all(f.matches(e, statuses[e.sha]) for f in parsed)]
    return {"ids": [e.sha for e in sort_experiments(exps, sort or None)]}


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
    statuses.update(current_statuses(api, open_exps))
    out = []
    for f in seeds.fold(listing.exps, statuses, over):
        data = f.to_json()
        data["label"] = seeds.fold_label(f, over)
        data["open"] = [e.sha for e in f.open]
        out.append(data)
    return {"over": list(over), "folds": out}


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
