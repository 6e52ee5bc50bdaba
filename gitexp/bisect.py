"""``git exp bisect``: find the commit that moved a metric, by running the config on commits.

GOOD and BAD are experiments of one config; the commits searched are the user's commits
between the commits they were made on, along the first-parent line as
``git bisect --first-parent`` walks it. Each probe is GOOD's stored config, with GOOD's
params, on a probed commit's tracked tree, recorded as an ordinary experiment in the group
``bisect-<good7>-<bad7>`` (:mod:`gitexp.bisect_probes` records and runs them). A probe is
judged good or bad by ``threshold`` or by which of GOOD's and BAD's values it is closer to;
a probe that fails is skipped as ``git bisect skip`` does, so the answer may be a range.

:func:`plan` checks the input and writes nothing; :func:`search` runs the probes, round by
round (one probe a round, or ``parallel`` of them: a k-ary search), and returns a
:class:`Result`. Probes already recorded (same commit, same config hash, finished) are
reused, so a search stopped by Ctrl-C continues where it was.
"""
from __future__ import annotations

import math
from .lifecycle import RETRYABLE, Status
from .summary import INVALID
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from .config import ExperimentConfig
from .errors import BadInput, GitExpError
from .notes import Experiment, Store
from .storedconfig import load_experiment_config
from .repo import Repo
from .values import short

IGNORED_KEYS = ("params", "name", "group", "description", "source_root")
Say = Callable[[str], None]


class Interrupted(GitExpError):
    """A probe was stopped (Ctrl-C): the search ends; running it again continues it."""

    exit_code = 130


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str

    @property
    def short(self) -> str:
        return self.sha[:7]

    def to_json(self) -> Dict[str, str]:
        return {"sha": self.sha, "subject": self.subject, "author": self.author}


@dataclass
class Plan:
    """Checked input of a search: nothing is written until :func:`search`."""

    good: Experiment
    bad: Experiment
    config: ExperimentConfig  # GOOD's stored config, with GOOD's params
    metric: str
    goal: Optional[str]
    use_last: bool
    good_value: float
    bad_value: float
    threshold: Optional[float]
    line: List[Commit]  # [GOOD's commit, c1 .. cn]; cn is BAD's commit
    repeat: int = 1
    seed_param: str = "seed"
    notes: List[str] = field(default_factory=list)  # said before the search starts

    @property
    def group(self) -> str:
        return f"bisect-{self.line[0].short}-{self.line[-1].short}"

    @property
    def cut(self) -> float:
        """Where good ends: the threshold, else halfway between GOOD's and BAD's values."""
        return self.threshold if self.threshold is not None else (self.good_value + self.bad_value) / 2

    def verdict(self, value: Optional[float]) -> str:
        if value is None or not math.isfinite(value):
            return "skip"
        return "bad" if (value - self.cut) * (self.bad_value - self.good_value) > 0 else "good"

    def configs_for(self, commit: Commit) -> List[ExperimentConfig]:
        """The probe's configs: GOOD's config, once per seed with ``repeat``."""
        base = f"{self.good.name}-bisect-{commit.short}"
        if self.repeat == 1:
            configs = [self.config.with_params({}, name=base)]
        else:
            seed0 = self.config.params[self.seed_param]
            assert isinstance(seed0, int)
            configs = [self.config.with_params({self.seed_param: seed0 + i}, name=f"{base}-s{seed0 + i}")
                       for i in range(self.repeat)]
        for config in configs:
            config.group = self.group
        return configs

    def value_of(self, summary: Dict[str, Any]) -> Optional[float]:
        entry = (summary.get("metrics") or {}).get(self.metric)
        if not isinstance(entry, dict):
            return None
        value = entry.get("last" if self.use_last else "best")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class Probe:
    """One probed commit: its runs (one per seed), their values, the verdict."""

    index: int  # position in Plan.line
    commit: Commit
    round: int
    runs: List[Experiment] = field(default_factory=list)
    values: List[float] = field(default_factory=list)
    verdict: str = "skip"
    reused: bool = False
    why: str = ""  # why a probe was skipped

    @property
    def mean(self) -> Optional[float]:
        return sum(self.values) / len(self.values) if self.values else None

    def to_json(self) -> Dict[str, Any]:
        return {"commit": self.commit.to_json(), "round": self.round, "verdict": self.verdict,
                "mean": self.mean, "values": self.values, "reused": self.reused, "why": self.why or None,
                "runs": [{"id": e.sha, "name": e.name, "status": e.status} for e in self.runs]}


@dataclass
class Result:
    plan: Plan
    probes: List[Probe]
    last_good: Commit
    candidates: List[Commit]  # one commit: the first bad one; more: the range it is in
    last_good_value: Optional[float]
    first_bad_value: Optional[float]
    rounds: int
    overlap: Optional[str]  # said when the two sides' runs overlap (--repeat): not trustworthy

    @property
    def first_bad(self) -> Optional[Commit]:
        return self.candidates[0] if len(self.candidates) == 1 else None

    def to_json(self) -> Dict[str, Any]:
        p = self.plan
        return {"metric": p.metric, "value": "last" if p.use_last else "best", "goal": p.goal,
                "threshold": p.threshold, "cut": p.cut, "group": p.group,
                "good": {"id": p.good.sha, "name": p.good.name, "commit": p.line[0].to_json(), "value": p.good_value},
                "bad": {"id": p.bad.sha, "name": p.bad.name, "commit": p.line[-1].to_json(), "value": p.bad_value},
                "first_bad": self.first_bad.to_json() if self.first_bad else None,
                "candidates": [c.to_json() for c in self.candidates],
                "last_good": self.last_good.to_json(), "last_good_value": self.last_good_value,
                "first_bad_value": self.first_bad_value, "rounds": self.rounds,
                "probes_run": sum(1 for x in self.probes if not x.reused), "overlap": self.overlap,
                "probes": [x.to_json() for x in self.probes]}


# -- the input --------------------------------------------------------------------------------
def plan(repo: Repo, store: Store, good_id: str, bad_id: str, metric: str, threshold: Optional[float] = None,
         last: bool = False, repeat: int = 1, seed_param: str = "seed") -> Plan:
    """Check GOOD, BAD and the options; BadInput names what is wrong. Nothing is written."""
    good, bad = store.find(good_id), store.find(bad_id)
    _same_config(store, good, bad)
    line = first_parent_line(repo, _parent(repo, good), _parent(repo, bad))
    config = _stored_config(repo, good)
    goal = _goal(config, good, bad, metric)
    use_last = last or goal is None
    values = []
    for role, exp in (("GOOD", good), ("BAD", bad)):
        entry = (exp.summary.get("metrics") or {}).get(metric) or {}
        value = entry.get("last" if use_last else "best") if isinstance(entry, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise BadInput(f"{role} ({exp.name}) has no {'last' if use_last else 'best'} value of {metric}",
                           "bisect from two finished experiments that logged it")
        values.append(float(value))
    if values[0] == values[1]:
        raise BadInput(f"GOOD and BAD have the same {metric} ({values[0]:.6g}): nothing moved, nothing to bisect")
    if threshold is not None and not min(values) < threshold < max(values):
        raise BadInput(f"--threshold {threshold:g} is not between GOOD's {metric} ({values[0]:.6g}) and BAD's "
                       f"({values[1]:.6g})", "give a threshold strictly between the two")
    if repeat < 1:
        raise BadInput(f"--repeat {repeat}: must be at least 1")
    seed = config.params.get(seed_param)
    if repeat > 1 and (not isinstance(seed, int) or isinstance(seed, bool)):
        params = ", ".join(sorted(config.params)) or "none"
        raise BadInput(f"--repeat {repeat}: the config has no whole-number param '{seed_param}' to vary "
                       f"(params: {params})", "name the seed param with --seed-param")
    notes = []
    if use_last and not last:
        notes.append(f"{metric} has no goal in the config: comparing its last values")
    if bad.summary.get("parent_dirty"):
        notes.append(f"BAD ({bad.name}) was made from a working tree with uncommitted edits; its commit "
                     f"{line[-1].short} is taken as bad")
    return Plan(good, bad, config, metric, goal, use_last, values[0], values[1], threshold, line,
                repeat, seed_param, notes)


def _parent(repo: Repo, exp: Experiment) -> str:
    parents = repo.commit_object(exp.sha).parents
    if not parents:
        raise BadInput(f"{exp.name} ({short(exp.sha)}) has no parent commit: it was not made on a commit")
    return parents[0].decode()


def _stored_config(repo: Repo, exp: Experiment) -> ExperimentConfig:
    return load_experiment_config(repo, exp.sha, errors="replace", missing=BadInput)


def _same_config(store: Store, good: Experiment, bad: Experiment) -> None:
    a, b = (_comparable(store.config_of(e.sha)) for e in (good, bad))
    if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise BadInput(f"GOOD ({good.name}) and BAD ({bad.name}) are of different configs: "
                       f"{', '.join(keys)} differ", "bisect two runs of the same config")


def _comparable(config: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


def _goal(config: ExperimentConfig, good: Experiment, bad: Experiment, metric: str) -> Optional[str]:
    have = [e for e in (good, bad) if metric in (e.summary.get("metrics") or {})]
    if not have and metric not in config.metrics:
        known = sorted(set(good.summary.get("metrics") or {}) | set(bad.summary.get("metrics") or {}))
        raise BadInput(f"neither GOOD nor BAD has a metric '{metric}'",
                       "metrics they have: " + (", ".join(known) or "none"))
    spec = config.metrics.get(metric)
    if spec is not None and spec.goal:
        return spec.goal
    for exp in have:
        goal = (exp.summary.get("metrics") or {})[metric].get("goal")
        if goal in ("minimize", "maximize"):
            return str(goal)
    return None


def first_parent_line(repo: Repo, good: str, bad: str) -> List[Commit]:
    """[good, c1 .. cn]: the commits after ``good`` up to ``bad`` along bad's first parents."""
    if good == bad:
        raise BadInput(f"GOOD and BAD were made on the same commit ({short(good)}): no commits between them")
    if not repo.is_ancestor(good, bad):
        after = repo.is_ancestor(bad, good)
        raise BadInput(f"BAD's commit {short(bad)} is not after GOOD's commit {short(good)}",
                       "swap GOOD and BAD" if after else "they are on different lines of history")
    text = repo.out(["log", "--first-parent", "--reverse", "--no-show-signature", "--format=%H%x1f%an <%ae>%x1f%s",
                     f"{good}..{bad}"])
    line = [_commit(row) for row in text.splitlines() if row]
    head = repo.out(["log", "-1", "--no-show-signature", "--format=%H%x1f%an <%ae>%x1f%s", good]).strip()
    return [_commit(head), *line]


def _commit(row: str) -> Commit:
    sha, author, subject = (row.split("\x1f") + ["", ""])[:3]
    return Commit(sha, subject, author)


# -- the search -------------------------------------------------------------------------------
class Launcher:
    """Records and runs a round of probes (see :mod:`gitexp.bisect_probes`)."""

    def run_round(self, plan: Plan, probes: Sequence[Probe], known: "Known") -> None:
        """Fill each probe's ``runs`` with its experiments, ended (reused ones as they are)."""
        raise NotImplementedError


class Known:
    """Probe runs recorded before: (commit, config hash) -> finished or still running runs."""

    def __init__(self, store: Store, group: str) -> None:
        self.by_key: Dict[Tuple[str, str], List[Experiment]] = {}
        for exp in store.experiments():
            s = exp.summary
            if s.get("parent_dirty") or exp.status in RETRYABLE or exp.status == INVALID:
                continue
            if exp.status != Status.FINISHED and s.get("group") != group:
                continue  # only this search's own unfinished probes are waited for
            self.by_key.setdefault((str(s.get("parent")), str(s.get("config_hash"))), []).append(exp)

    def find(self, commit: str, config: ExperimentConfig) -> Optional[Experiment]:
        runs = self.by_key.get((commit, config.config_hash()), [])
        finished = [e for e in runs if e.status == Status.FINISHED]
        chosen = finished or runs
        return chosen[0] if chosen else None


def search(repo: Repo, store: Store, plan: Plan, launcher: Launcher, parallel: int = 1,
           say: Optional[Say] = None) -> Result:
    """Probe commits round by round until the first bad commit (or the range it is in) is known."""
    say = say or (lambda _text: None)
    known = Known(store, plan.group)
    probes: Dict[int, Probe] = {}
    rounds = 0
    while True:
        lo, hi = _bounds(plan, probes)
        chosen = choose(lo, hi, set(probes), parallel)
        if not chosen:
            break
        rounds += 1
        batch = [Probe(i, plan.line[i], rounds) for i in chosen]
        launcher.run_round(plan, batch, known)
        for probe in batch:
            _judge(plan, probe)
            probes[probe.index] = probe
            lo, hi = _bounds(plan, probes)
            left = len([i for i in range(lo + 1, hi) if i not in probes])
            say(_progress(plan, probe, left))
        stopped = [e for p in batch for e in p.runs if e.status == Status.KILLED]
        if stopped:
            raise Interrupted(f"bisect stopped: {stopped[0].name} was killed",
                              f"{len(probes)} probe(s) recorded in group {plan.group}; run the same command "
                              "again to continue from them")
    return _result(plan, sorted(probes.values(), key=lambda p: (p.round, p.index)), rounds)


def _bounds(plan: Plan, probes: Dict[int, Probe]) -> Tuple[int, int]:
    """The last good position before the first bad one, and the first bad one."""
    n = len(plan.line) - 1
    hi = min([i for i, p in probes.items() if p.verdict == "bad"] + [n])
    lo = max([i for i, p in probes.items() if p.verdict == "good" and i < hi] + [0])
    return lo, hi


def choose(lo: int, hi: int, tested: Set[int], k: int) -> List[int]:
    """Up to ``k`` untested positions strictly between ``lo`` and ``hi``, as near as may be to
    the points that cut the interval in k+1 equal parts (a skipped one's neighbour instead)."""
    free = [i for i in range(lo + 1, hi) if i not in tested]
    chosen: List[int] = []
    for j in range(1, k + 1):
        target = lo + (hi - lo) * j / (k + 1)
        left = [i for i in free if i not in chosen]
        if not left:
            break
        chosen.append(min(left, key=lambda i: (abs(i - target), i)))
    return sorted(chosen)


def _judge(plan: Plan, probe: Probe) -> None:
    values, failed = [], []
    for exp in probe.runs:
        value = plan.value_of(exp.summary) if exp.status == Status.FINISHED else None
        if value is None or not math.isfinite(value):
            failed.append(exp)
        else:
            values.append(value)
    probe.values = values
    probe.verdict = plan.verdict(probe.mean) if values else "skip"
    if not values:
        first = failed[0] if failed else None
        if first is None:
            probe.why = "no run"
        elif first.status == Status.FINISHED:
            probe.why = f"finished without a value of {plan.metric}"
        else:
            reason = first.summary.get("reason") or (f"exit {first.summary.get('exit_code')}"
                                                     if first.summary.get("exit_code") is not None else "")
            probe.why = f"{first.status}" + (f": {reason}" if reason else "")


def _progress(plan: Plan, probe: Probe, left: int) -> str:
    value = f"{plan.metric} {probe.mean:.6g}" if probe.mean is not None else probe.why
    seeds = f" (mean of {len(probe.values)})" if len(probe.runs) > 1 else ""
    reused = ", recorded before" if probe.reused else ""
    subject = probe.commit.subject if len(probe.commit.subject) <= 50 else probe.commit.subject[:49] + "…"
    return (f"gitexp: bisect: round {probe.round}: {probe.commit.short} {subject}: {value}{seeds} -> "
            f"{probe.verdict}{reused}; {left} commit(s) left to test")


def _result(plan: Plan, probes: List[Probe], rounds: int) -> Result:
    by_index = {p.index: p for p in probes}
    lo, hi = _bounds(plan, by_index)

    def value_at(i: int) -> Optional[float]:
        if i == 0:
            return plan.good_value
        if i == len(plan.line) - 1 and i not in by_index:
            return plan.bad_value
        return by_index[i].mean if i in by_index else None

    return Result(plan, probes, plan.line[lo], plan.line[lo + 1:hi + 1], value_at(lo), value_at(hi), rounds,
                  _overlap(plan, probes))


def _overlap(plan: Plan, probes: List[Probe]) -> Optional[str]:
    """With --repeat: whether a run judged good reached a run judged bad (per-run values)."""
    if plan.repeat < 2:
        return None
    good = [plan.good_value] + [v for p in probes if p.verdict == "good" for v in p.values]
    bad = [plan.bad_value] + [v for p in probes if p.verdict == "bad" for v in p.values]
    up = plan.bad_value > plan.good_value
    worst_good, best_bad = (max(good), min(bad)) if up else (min(good), max(bad))
    if (worst_good >= best_bad) if up else (worst_good <= best_bad):
        return (f"the two sides overlap: a run judged good has {plan.metric} {worst_good:.6g}, one judged bad "
                f"{best_bad:.6g}; the answer is not trustworthy (raise --repeat or set --threshold)")
    return None
