"""Diagnostics: rules that watch a run's points and resources and warn or stop it early.

The brief: "detect possible problems early on ... so that expensive computing time is not
wasted". Each rule looks at what the executor's watch thread feeds it (metric records,
resource samples from :mod:`gitexp.monitor`, the output log's growth) and, when it fires,
records an alert (``alerts`` in the summary note, shown by ``show``, ``log`` and ``report``)
and, for the action ``stop``, stops the program: the run ends ``stopped`` with the reason.

Rules (defaults in :data:`DEFAULTS`; the config's ``diagnostics:`` changes them)::

    diagnostics:
      nan: stop                          # a metric became NaN or infinite
      divergence: {factor: 10}           # a minimized metric above factor x its best so far
      plateau: {patience: 20}            # no improvement of a goal metric in N evaluations
      stall: {after: 30m}                # no output and no metric for that long
      step_time: {factor: 10}            # one step took factor x the median step time
      disk: warn                         # free disk runs out before the run ends
      ram: {above: 95%}                  # host RAM in use
      gpu_mem: {above: 98%}              # memory in use on one of the run's GPUs

A rule is ``warn``, ``stop``, ``off`` (YAML's false), or a mapping with ``action`` and its
settings; ``diagnostics: off`` turns every rule off. Each rule fires once per run and metric
(or GPU): an alert says something changed, it does not repeat while it stays so.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from . import numbers
from .units import format_duration, format_size, parse_duration
from .sections import Section
from .watch import RunContext, Watcher

ACTIONS = ("warn", "stop")
Fail = Callable[[str, str, Optional[str]], Exception]

# rule -> its settings with their defaults; "action" None means off.
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "nan": {"action": "stop", "metrics": None},
    "divergence": {"action": "warn", "factor": 10.0, "min_points": 5, "metrics": None},
    "plateau": {"action": "warn", "patience": 20, "min_delta": 0.0, "metrics": None},
    "stall": {"action": "warn", "after": 1800},
    "step_time": {"action": "warn", "factor": 10.0, "min_steps": 20, "min_seconds": 1.0},
    "disk": {"action": "warn", "horizon": 1800},
    "ram": {"action": "warn", "above": 0.95},
    "gpu_mem": {"action": "warn", "above": 0.98},
}
WHAT = {
    "nan": "a metric became NaN or infinite",
    "divergence": "a minimized metric rose above factor x its best so far",
    "plateau": "a goal metric did not improve in 'patience' evaluations",
    "stall": "no output and no metric for 'after' (a duration)",
    "step_time": "one step took 'factor' x the median step time",
    "disk": "free disk will run out before the run ends (or within 'horizon')",
    "ram": "host RAM in use above 'above' (a fraction or a percentage)",
    "gpu_mem": "memory in use on a GPU of the run above 'above'",
}
DISK_WINDOW = 600.0  # seconds of samples the disk rule fits its rate to


@dataclass
class Rules:
    """The rules of one experiment: rule -> settings (with ``action`` warn, stop or None)."""

    rules: Dict[str, Dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULTS.items()})
    given: Any = None  # what the config said, stored back as it was

    def action(self, rule: str) -> Optional[str]:
        action: Optional[str] = self.rules[rule]["action"]
        return action

    def to_dict(self) -> Any:
        return self.given


# -- the config ----------------------------------------------------------------------------------
def parse(value: Any, fail: Fail) -> Rules:
    """The ``diagnostics:`` section; ``fail(key, message, hint)`` makes the one-line error."""
    rules = Rules(given=value)
    if value is None:
        return rules
    if value is False or value == "off":
        for settings in rules.rules.values():
            settings["action"] = None
        return rules
    if not isinstance(value, dict):
        raise fail("diagnostics", f"'diagnostics' must be a mapping of rule: warn|stop|off, or off; got {value!r}",
                   "e.g. diagnostics: {nan: stop, plateau: {patience: 50}}")
    for name, spec in value.items():
        key = f"diagnostics.{name}"
        if name not in DEFAULTS:
            from .config import closest

            raise fail(key, f"unknown diagnostic rule {name!r}", closest(str(name), list(DEFAULTS)))
        rules.rules[name] = _rule(name, spec, key, fail)
    return rules


# Rules whose ``metrics:`` must name metrics of the config (they need its goal); ``nan`` also
# watches metrics only the program's gitexp.log names, so any name is allowed there.
DECLARED_ONLY = ("divergence", "plateau")


def check_metrics(rules: Any, declared: Mapping[str, Any], fail: Fail) -> None:
    """Refuse a rule's ``metrics:`` naming a metric the config does not declare (a typo would
    leave the rule watching nothing, without a word)."""
    if not isinstance(rules, Rules):
        return
    for rule in DECLARED_ONLY:
        for metric in rules.rules[rule].get("metrics") or []:
            if metric not in declared:
                configured = ", ".join(sorted(declared)) or "none"
                raise fail(f"diagnostics.{rule}.metrics",
                           f"diagnostics.{rule}.metrics names {metric!r}, which is not a metric of this config "
                           f"(its metrics: {configured})", "name a metric declared under 'metrics:'")


SECTION = Section("diagnostics", lambda value, given: parse(value, given.fail),  # installed by gitexp.watchers
                  check=lambda rules, config, fail: check_metrics(rules, config.metrics, fail))


def _rule(name: str, spec: Any, key: str, fail: Fail) -> Dict[str, Any]:
    settings = dict(DEFAULTS[name])
    if spec is False or spec == "off":
        settings["action"] = None
        return settings
    if spec is True:
        return settings
    if isinstance(spec, str):
        settings["action"] = _action(spec, key, fail)
        return settings
    if not isinstance(spec, dict):
        raise fail(key, f"rule '{name}' must be warn, stop, off or a mapping, not {spec!r}",
                   f"e.g. {name}: stop, or {name}: {{action: warn, ...}}")
    for item, raw in spec.items():
        if item == "action":
            settings["action"] = None if raw is False or raw == "off" else _action(raw, f"{key}.action", fail)
        elif item not in settings:
            raise fail(f"{key}.{item}", f"unknown setting '{item}' of rule '{name}'",
                       "expected one of: " + ", ".join(s for s in settings))
        else:
            settings[item] = _setting(name, str(item), raw, f"{key}.{item}", fail)
    return settings


def _action(raw: Any, key: str, fail: Fail) -> str:
    if raw not in ACTIONS:
        raise fail(key, f"action {raw!r} is not warn, stop or off", "warn records an alert; stop also stops the run")
    return str(raw)


def _setting(rule: str, item: str, raw: Any, key: str, fail: Fail) -> Any:
    if item == "metrics":
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise fail(key, f"{key} must be a list of metric names", "e.g. metrics: [loss]")
        return list(names)
    if item in ("after", "horizon"):
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise fail(key, f"{key}: {exc}", "e.g. 30m") from exc
    if item == "above":
        number = _fraction(raw)
        if number is None:
            raise fail(key, f"{key} must be a fraction in (0, 1] or a percentage like 95%, not {raw!r}", None)
        return number
    number = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    whole = item in ("patience", "min_points", "min_steps")
    if number is None or not math.isfinite(number) or number < 0 or (whole and not isinstance(number, int)) \
            or (item == "factor" and number <= 1):
        want = "a whole number >= 0" if whole else "a number > 1" if item == "factor" else "a number >= 0"
        raise fail(key, f"{key} must be {want}, not {raw!r}", None)
    return number


def _fraction(raw: Any) -> Optional[float]:
    text = str(raw).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None
    if isinstance(raw, bool) or not 0 < number <= 1:
        return None
    return number


# -- the watcher ---------------------------------------------------------------------------------
def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class Diagnostics(Watcher):
    """Every rule of one run, fed by the executor's watch thread."""

    def __init__(self, ctx: RunContext, rules: Rules, goals: Mapping[str, Optional[str]],
                 clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.rules = rules
        self.goals = dict(goals)  # metric -> minimize|maximize, from the config's metrics
        self.clock = clock
        self.fired: Set[Tuple[str, str]] = set()
        self.best: Dict[str, float] = {}  # per metric, in its goal's direction
        self.low: Dict[str, float] = {}  # per minimized metric, its lowest so far (divergence)
        self.count: Dict[str, int] = {}
        self.since_best: Dict[str, int] = {}
        self.last_step: Optional[Tuple[float, float]] = None  # (step, time) of the newest step
        self.step_times: List[float] = []
        self.last_point = ctx.started
        self.log_size = -1

    # a rule's verdict --------------------------------------------------------------------------
    def fire(self, rule: str, key: str, message: str, **data: Any) -> None:
        action = self.rules.action(rule)
        if action is None or (rule, key) in self.fired:
            return
        self.fired.add((rule, key))
        self.ctx.alert(rule, message, action, **data)
        if action == "stop":
            self.ctx.stop(f"diagnostics: {rule}: {message}")

    def watched(self, rule: str, metric: str) -> bool:
        settings = self.rules.rules[rule]
        if settings["action"] is None:
            return False
        if settings.get("metrics"):
            return metric in settings["metrics"]
        if rule == "nan":
            return True
        if rule == "divergence":
            return self.goals.get(metric) == "minimize"
        return self.goals.get(metric) in ("minimize", "maximize")  # plateau

    # points ----------------------------------------------------------------------------------------
    def on_points(self, records: List[Dict[str, Any]]) -> None:
        self.last_point = self.clock()
        for record in records:
            step = record.get("step")
            for name, value in record.items():
                if name in ("step", "time", "epoch") or isinstance(value, (str, bool)) or value is None:
                    continue
                number = _number(value)
                if number is None:
                    continue
                self.check_metric(str(name), number, step)
            self.check_step_time(record)

    def check_metric(self, name: str, value: float, step: Any) -> None:
        at = f" at step {step}" if step is not None else ""
        if not math.isfinite(value):
            if self.watched("nan", name):
                word = "NaN" if math.isnan(value) else "infinite"
                self.fire("nan", name, f"{name} became {word}{at}", metric=name, step=step)
            return
        count = self.count[name] = self.count.get(name, 0) + 1
        if self.watched("divergence", name):
            settings = self.rules.rules["divergence"]
            low = self.low.get(name)
            if low is not None and low > 0 and count > settings["min_points"] and value > settings["factor"] * low:
                self.fire("divergence", name, f"{name} = {value:.4g}{at}, above {settings['factor']:g} x its best "
                          f"{low:.4g}", metric=name, step=step, value=value, best=low)
            self.low[name] = value if low is None else min(low, value)
        if self.watched("plateau", name):
            self.check_plateau(name, value, step, at)

    def check_plateau(self, name: str, value: float, step: Any, at: str) -> None:
        settings = self.rules.rules["plateau"]
        sign = -1.0 if self.goals.get(name) == "maximize" else 1.0
        best = self.best.get(name)
        if best is None or sign * value < sign * best - settings["min_delta"]:
            self.best[name] = value
            self.since_best[name] = 0
            return
        self.since_best[name] += 1
        if settings["patience"] and self.since_best[name] >= settings["patience"]:
            self.fire("plateau", name, f"{name} has not improved on {best:.4g} in {self.since_best[name]} "
                      f"evaluations{at}", metric=name, step=step, best=best)

    def check_step_time(self, record: Mapping[str, Any]) -> None:
        settings = self.rules.rules["step_time"]
        step, when = _number(record.get("step")), _number(record.get("time"))
        if settings["action"] is None or step is None or when is None:
            return
        if self.last_step is not None and step > self.last_step[0]:
            took = (when - self.last_step[1]) / (step - self.last_step[0])
            if len(self.step_times) >= settings["min_steps"]:
                median = numbers.median(self.step_times[-200:])
                if took > settings["factor"] * median and took - median >= settings["min_seconds"]:
                    self.fire("step_time", "step", f"step {step:g} took {format_duration(took)}, "
                              f"{took / max(median, 1e-9):.0f} x the median {format_duration(median)}",
                              step=step, seconds=took, median=median)
            self.step_times.append(took)
            if len(self.step_times) > 400:
                del self.step_times[:200]
        if self.last_step is None or step > self.last_step[0]:
            self.last_step = (step, when)

    # ticks: stall and resources ----------------------------------------------------------------------
    def on_tick(self, now: float) -> None:
        self.check_stall(now)
        monitor = getattr(self.ctx, "monitor", None)
        samples = monitor.recent() if monitor is not None else []
        if samples:
            self.check_resources(samples, now)

    def check_stall(self, now: float) -> None:
        settings = self.rules.rules["stall"]
        if settings["action"] is None:
            return
        try:  # the executor tees every output byte to output.log: its growth is output
            size = os.stat(self.ctx.paths.log).st_size
        except OSError:
            size = self.log_size
        if size != self.log_size:
            self.log_size = size
            self.ctx.last_output = max(self.ctx.last_output, now)
        quiet = now - max(self.last_point, self.ctx.last_output)
        if quiet >= settings["after"]:
            self.fire("stall", "run", f"no output and no metric for {format_duration(quiet)}", seconds=quiet)

    def check_resources(self, samples: List[Mapping[str, Any]], now: float) -> None:
        latest = samples[-1]
        used, total = _number(latest.get("ram_used")), _number(latest.get("ram_total"))
        settings = self.rules.rules["ram"]
        if settings["action"] and used is not None and total and used / total >= settings["above"]:
            self.fire("ram", "host", f"host RAM {used / total:.0%} in use ({format_size(used)} of "
                      f"{format_size(total)}); the run's processes use {format_size(latest.get('rss') or 0)}",
                      used=used, total=total)
        settings = self.rules.rules["gpu_mem"]
        for key, value in latest.items():
            if settings["action"] and key.startswith("gpu") and key.endswith("_mem"):
                total = _number(latest.get(key + "_total"))
                used = _number(value)
                if used is not None and total and used / total >= settings["above"]:
                    gpu = key[3:-4]
                    self.fire("gpu_mem", f"gpu{gpu}", f"GPU {gpu} memory {used / total:.0%} in use "
                              f"({format_size(used)} of {format_size(total)})", gpu=gpu, used=used, total=total)
        self.check_disk(samples, now)

    def check_disk(self, samples: List[Mapping[str, Any]], now: float) -> None:
        settings = self.rules.rules["disk"]
        points = [(float(s["time"]), float(s["disk_free"])) for s in samples
                  if _number(s.get("time")) is not None and _number(s.get("disk_free")) is not None
                  and now - float(s["time"]) <= DISK_WINDOW]
        if settings["action"] is None or len(points) < 5 or points[-1][0] - points[0][0] < 30:
            return
        rate = -_slope(points)  # bytes per second the free space shrinks
        if rate <= 0:
            return
        free = points[-1][1]
        left = free / rate
        limit = getattr(getattr(self.ctx.config, "requires", None), "time", None)
        remaining = (self.ctx.started + limit - now) if limit else settings["horizon"]
        if left < remaining:
            self.fire("disk", "disk", f"free disk {format_size(free)} shrinks by {format_size(rate)}/s: full in "
                      f"{format_duration(left)}, " + (f"the run has {format_duration(remaining)} left" if limit
                                                     else f"within {format_duration(remaining)}"),
                      free=free, rate=rate, seconds_left=left)


def _slope(points: List[Tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0


def goals_of(config: Any) -> Dict[str, Optional[str]]:
    metrics = getattr(config, "metrics", None) or {}
    return {name: getattr(spec, "goal", None) for name, spec in metrics.items()}


def factory(ctx: RunContext) -> Optional[Watcher]:
    rules = getattr(ctx.config, "diagnostics", None)
    if not isinstance(rules, Rules):
        rules = Rules()
    if all(settings["action"] is None for settings in rules.rules.values()):
        return None
    return Diagnostics(ctx, rules, goals_of(ctx.config))
