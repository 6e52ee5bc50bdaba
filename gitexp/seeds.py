"""Results over seeds: runs that differ only in some params (``--over seed``) folded into one.

A *fold* is the experiments with the same parent commit, the same metrics declared and the
same params apart from the ``over`` params (the seeds). Each metric of a fold is the mean
and sample standard deviation (n - 1) of its finished runs' values (best by the metric's
goal, else last); runs still in progress and runs that failed, were killed or lost are
counted apart and never averaged in.

Whether two folds differ beyond their spread: Welch's t-test (unequal variances), with the
t distribution's CDF from the regularized incomplete beta function (standard library only).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .lifecycle import OPEN, Status
from .notes import Experiment
from .summary import printable



@dataclass(frozen=True)
class Stat:
    n: int
    mean: float
    std: Optional[float]  # sample standard deviation; None for one value
    lo: float
    hi: float

    def to_json(self) -> Dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "min": self.lo, "max": self.hi}


def stat(values: Sequence[float]) -> Optional[Stat]:
    if not values:
        return None
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Stat(n, mean, std, min(values), max(values))


@dataclass
class Fold:
    params: Dict[str, Any]  # the params the runs share (the ``over`` params left out)
    runs: List[Experiment] = field(default_factory=list)  # finished: the ones averaged
    open: List[Experiment] = field(default_factory=list)  # in progress: counted, not averaged
    ended_badly: List[Experiment] = field(default_factory=list)  # failed, killed, lost...: counted
    over: Dict[str, List[Any]] = field(default_factory=dict)  # over param -> values of the finished runs
    metrics: Dict[str, Stat] = field(default_factory=dict)  # of each run's best (by goal) or last
    last: Dict[str, Stat] = field(default_factory=dict)  # of each run's last value
    duration: Optional[Stat] = None
    goals: Dict[str, str] = field(default_factory=dict)

    @property
    def first(self) -> Experiment:
        return (self.runs or self.open or self.ended_badly)[0]

    def as_experiment(self) -> Experiment:
        """A stand-in whose metrics are the means: what log's --filter and --sort act on."""
        metrics = {m: {"best": s.mean, "last": self.last[m].mean if m in self.last else s.mean,
                       "goal": self.goals.get(m), "count": s.n} for m, s in self.metrics.items()}
        status = Status.FINISHED if self.runs else self.first.status
        summary = {**self.first.summary, "params": self.params, "metrics": metrics, "status": status,
                   "duration": self.duration.mean if self.duration else None}
        return Experiment(self.first.sha, self.first.name, summary)

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.first.sha, "name": self.first.name, "group": self.first.summary.get("group"),
                "params": self.params, "over": self.over, "n": len(self.runs),
                "in_progress": len(self.open), "failed": len(self.ended_badly),
                "metrics": {m: s.to_json() for m, s in self.metrics.items()},
                "last": {m: s.to_json() for m, s in self.last.items()},
                "duration": self.duration.to_json() if self.duration else None,
                "runs": [e.sha for e in self.runs], "others": [e.sha for e in self.open + self.ended_badly]}


def fold(exps: Sequence[Experiment], statuses: Mapping[str, str], over: Sequence[str]) -> List[Fold]:
    """The experiments folded over the ``over`` params, in the order of their first member."""
    folds: Dict[str, Fold] = {}
    for exp in exps:
        params = exp.summary.get("params") or {}
        shared = {k: v for k, v in params.items() if k not in over}
        key = json.dumps([exp.summary.get("parent"), shared, sorted(exp.summary.get("goals") or {})],
                         sort_keys=True, default=str)
        f = folds.setdefault(key, Fold(shared))
        status = statuses.get(exp.sha, exp.status)
        if status == Status.FINISHED:
            f.runs.append(exp)
            for name in over:
                f.over.setdefault(name, []).append(params.get(name))
        elif status in OPEN:
            f.open.append(exp)
        else:
            f.ended_badly.append(exp)
    for f in folds.values():
        _measure(f)
    return list(folds.values())


def _measure(f: Fold) -> None:
    best: Dict[str, List[float]] = {}
    last: Dict[str, List[float]] = {}
    for exp in f.runs:
        for name, entry in (exp.summary.get("metrics") or {}).items():
            if not isinstance(entry, dict):
                continue
            if entry.get("goal") in ("minimize", "maximize"):
                f.goals[name] = entry["goal"]
            value, final = _number(entry.get("best", entry.get("last"))), _number(entry.get("last"))
            if value is not None:
                best.setdefault(name, []).append(value)
            if final is not None:
                last.setdefault(name, []).append(final)
    f.metrics = {m: s for m, s in ((m, stat(v)) for m, v in best.items()) if s}
    f.last = {m: s for m, s in ((m, stat(v)) for m, v in last.items()) if s}
    durations = [_number(e.summary.get("duration")) for e in f.runs]
    f.duration = stat([d for d in durations if d is not None])


def _number(value: Any) -> Optional[float]:
    """A finite number as a float, else None (notes are untrusted)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


# -- Welch's t-test -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Welch:
    t: float
    df: float
    p: float  # two-sided

    def to_json(self) -> Dict[str, Any]:
        return {"test": "welch", "t": self.t, "df": self.df, "p": self.p}


def welch(a: Stat, b: Stat) -> Optional[Welch]:
    """Welch's t-test of two means; None when either side has fewer than two values."""
    if a.n < 2 or b.n < 2 or a.std is None or b.std is None:
        return None
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    if va + vb == 0:
        same = a.mean == b.mean
        return Welch(0.0 if same else math.copysign(math.inf, a.mean - b.mean), float(a.n + b.n - 2),
                     1.0 if same else 0.0)
    t = (a.mean - b.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return Welch(t, df, t_two_sided_p(t, df))


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    return betainc(df / 2, 0.5, df / (df + t * t))


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, modified Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < eps:
            break
    return h


# -- mean curves ----------------------------------------------------------------------------------
def mean_curve(histories: Sequence[Sequence[Mapping[str, Any]]], metric: str
               ) -> List[Tuple[float, float, float, int]]:
    """(step, mean, sample std (0 for one run), n) at each step some run logged ``metric``."""
    at: Dict[float, List[float]] = {}
    for history in histories:
        for record in history:
            step, value = _number(record.get("step")), _number(record.get(metric))
            if step is not None and value is not None:
                at.setdefault(step, []).append(value)
    out = []
    for step in sorted(at):
        s = stat(at[step])
        assert s is not None
        out.append((step, s.mean, s.std or 0.0, s.n))
    return out


def fold_label(f: Fold, over: Sequence[str]) -> str:
    """A fold's shared params, and the runs not averaged in (in progress, ended badly)."""
    shared = " ".join(f"{k}={short_value(v)}" for k, v in f.params.items() if k not in over)[:40]
    apart = ", ".join(part for part in (f"{len(f.open)} in progress" if f.open else "",
                                        f"{len(f.ended_badly)} failed" if f.ended_badly else "") if part)
    return f"{shared or f.first.name} mean ± std (n={len(f.runs)}" + (f"; {apart}: not averaged)" if apart else ")")


def short_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else printable(str(value))


Bands = Dict[str, Dict[str, List[Tuple[float, float, float, int]]]]  # sha -> metric -> mean_curve rows


def band_curves(folds: Sequence[Fold], hists: Mapping[str, Sequence[Mapping[str, Any]]], over: Sequence[str],
                metrics: Sequence[str]
                ) -> Tuple[List[Experiment], Dict[str, List[Dict[str, Any]]], Dict[str, str], Bands]:
    """Per fold with finished runs a stand-in experiment (its first run's id, a label saying n
    and the runs left out) whose history is the mean at each step, and its band: the
    :func:`mean_curve` rows by metric. Runs in progress or ended badly are never in a mean."""
    exps: List[Experiment] = []
    out_hists: Dict[str, List[Dict[str, Any]]] = {}
    bands: Bands = {}
    for f in folds:
        if not f.runs:
            continue
        sha = f.first.sha
        records: Dict[float, Dict[str, Any]] = {}
        for m in metrics:
            rows = mean_curve([hists.get(e.sha) or [] for e in f.runs], m)
            bands.setdefault(sha, {})[m] = rows
            for step, mean, _std, _n in rows:
                records.setdefault(step, {"step": step})[m] = mean
        exps.append(Experiment(sha, fold_label(f, over), {**f.first.summary, "status": Status.FINISHED.value, "started": None}))
        out_hists[sha] = [records[s] for s in sorted(records)]
    return exps, out_hists, {e.sha: Status.FINISHED.value for e in exps}, bands
