"""Where a run's time went, from the timestamps in its metric history.

Every history record carries ``time`` (when the program logged the point, or when the
executor read the line) and ``step``. From those: step time (median and mean seconds per
step), steps per second, time per epoch (where the program logs ``epoch=...``), the time
before the first point (start-up: imports, data loading), and the wall time at which a metric
first reached a value (its best, or any value asked for). Used by ``show``, ``compare`` and
``report``. Plain Python: no NumPy.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import BadInput
from .metrics import finite_number
from .numbers import median
from .summary import printable
from .sections import Section
from .units import format_duration




def start_of(history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> Optional[float]:
    """When the run started: the executor's ``started``, else the first point's time."""
    started = finite_number(summary.get("started"))
    if started is not None:
        return started
    times = [t for t in (finite_number(r.get("time")) for r in history) if t is not None]
    return min(times) if times else None


def _timed_steps(history: Sequence[Mapping[str, Any]]) -> List[Tuple[float, float]]:
    """(step, time) of the records that have both, by step."""
    out = []
    for record in history:
        step, when = finite_number(record.get("step")), finite_number(record.get("time"))
        if step is not None and when is not None:
            out.append((step, when))
    return sorted(out)


def analyze(history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> Dict[str, Any]:
    """The run's time facts (seconds), each None when the history cannot say:

    ``points`` records with a step and a time; ``first_step``/``last_step``; ``span`` seconds
    from the first to the last of them; ``startup`` seconds from the start to the first point;
    ``step_time`` median seconds per step between consecutive records (robust to pauses such
    as evaluation or checkpointing); ``step_time_mean`` span / steps; ``steps_per_s`` steps per
    second over the span; ``epochs`` and ``epoch_time`` (median seconds per epoch) when the
    program logs ``epoch``; ``duration`` of the whole run (from the summary).
    """
    timed = _timed_steps(history)
    start = start_of(history, summary)
    out: Dict[str, Any] = {"points": len(timed), "first_step": None, "last_step": None, "span": None,
                           "startup": None, "step_time": None, "step_time_mean": None, "steps_per_s": None,
                           "epochs": None, "epoch_time": None, "duration": finite_number(summary.get("duration"))}
    if timed:
        out["first_step"], out["last_step"] = _int_if_whole(timed[0][0]), _int_if_whole(timed[-1][0])
        first_time = min(t for _, t in timed)
        if start is not None:
            out["startup"] = max(0.0, first_time - start)
    if len(timed) >= 2:
        per_step = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(timed, timed[1:])
                    if s1 > s0 and t1 >= t0]
        steps = timed[-1][0] - timed[0][0]
        span = max(t for _, t in timed) - min(t for _, t in timed)
        out["span"] = span
        if per_step:
            out["step_time"] = median(per_step)
        if steps > 0:
            out["step_time_mean"] = span / steps
            out["steps_per_s"] = steps / span if span > 0 else None
    epochs = _epoch_ends(history)
    if epochs:
        out["epochs"] = len(epochs)
        ends = [t for _, t in epochs]
        gaps = [b - a for a, b in zip(ends, ends[1:]) if b >= a]
        if not gaps and start is not None and ends[0] >= start:
            gaps = [ends[0] - start]
        out["epoch_time"] = median(gaps) if gaps else None
    return out


def _epoch_ends(history: Sequence[Mapping[str, Any]]) -> List[Tuple[float, float]]:
    """(epoch, time of its last record) for each epoch value the program logged, in order."""
    last: Dict[float, float] = {}
    for record in history:
        epoch, when = finite_number(record.get("epoch")), finite_number(record.get("time"))
        if epoch is not None and when is not None:
            last[epoch] = max(when, last.get(epoch, when))
    return sorted(last.items())


def _int_if_whole(value: float) -> Any:
    return int(value) if value.is_integer() else value


def time_to(history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], metric: str, target: float,
            goal: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The first record where ``metric`` reached ``target``: ``{"step", "seconds", "value"}``
    (seconds since the start), or None if it never did. "Reached" follows the goal: at or
    below for minimize, at or above for maximize; without a goal, the side of the target
    opposite to the first value."""
    start = start_of(history, summary)
    below = goal == "minimize"
    if goal not in ("minimize", "maximize"):
        first = next((v for v in (finite_number(r.get(metric)) for r in history) if v is not None), None)
        if first is None:
            return None
        below = first > target
    for record in history:
        value = finite_number(record.get(metric))
        if value is None or (value > target if below else value < target):
            continue
        when = finite_number(record.get("time"))
        seconds = when - start if when is not None and start is not None else None
        step = finite_number(record.get("step"))
        return {"step": _int_if_whole(step) if step is not None else None, "seconds": seconds, "value": value}
    return None


def time_to_best(history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                 metric: str) -> Optional[Dict[str, Any]]:
    """When the metric first reached its best value (its summary's best, by its goal)."""
    entry = (summary.get("metrics") or {}).get(metric)
    if not isinstance(entry, dict):
        return None
    best, goal = finite_number(entry.get("best")), entry.get("goal")
    if best is None or goal not in ("minimize", "maximize"):
        return None
    return time_to(history, summary, metric, best, goal)


def parse_reach(text: str, summary: Mapping[str, Any]) -> Tuple[str, float, Optional[str], str]:
    """``val_err=0.1`` -> (metric, value, its goal, "<=" / ">=" / "reaching"); BadInput for
    text of another shape or a metric the experiment does not have (listing the ones it has)."""
    name, sep, raw = text.rpartition("=")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not sep or not name or not math.isfinite(value):
        raise BadInput(f"--reach {text!r}: expected METRIC=VALUE, e.g. val_err=0.1")
    found = summary.get("metrics")
    metrics: Dict[str, Any] = found if isinstance(found, dict) else {}
    if name not in metrics:
        listed = ", ".join(sorted(printable(str(m)) for m in metrics)) or "none"
        raise BadInput(f"--reach {text!r}: the experiment has no metric {name!r} (it has: {listed})")
    entry = metrics[name] if isinstance(metrics[name], dict) else {}
    goal = entry.get("goal") if entry.get("goal") in ("minimize", "maximize") else None
    sign = {"minimize": "<=", "maximize": ">="}.get(goal or "", "reaching")
    return name, value, goal, sign


def seconds_text(value: Optional[float]) -> str:
    """``6.5ms``, ``0.41s``, ``12.3s``, ``4m10s``... ("" for None)."""
    if value is None:
        return ""
    if 0 < value < 0.1:
        return f"{value * 1000:.3g}ms"
    if value < 10:
        return f"{value:.3g}s"
    try:
        return format_duration(value)
    except (OverflowError, ValueError):
        return "?"


def lines(facts: Mapping[str, Any], reached: Sequence[Tuple[str, str, Optional[Dict[str, Any]]]] = ()) -> List[str]:
    """The time section of ``show``: ``reached`` holds (metric, what, time_to result)."""
    if not facts.get("points"):
        return []
    out = ["", "time:"]
    out.append(f"  points     steps {facts['first_step']}..{facts['last_step']} ({facts['points']} with a time), "
               f"{seconds_text(facts.get('span')) or '0s'} from first to last")
    if facts.get("startup") is not None:
        out.append(f"  start-up   {seconds_text(facts['startup'])} from the start to the first point")
    if facts.get("step_time") is not None:
        rate = f" ({facts['steps_per_s']:.3g} steps/s)" if facts.get("steps_per_s") else ""
        out.append(f"  step time  {seconds_text(facts['step_time'])} median, "
                   f"{seconds_text(facts.get('step_time_mean'))} mean{rate}")
    if facts.get("epoch_time") is not None:
        out.append(f"  epoch time {seconds_text(facts['epoch_time'])} median over {facts['epochs']} epoch(s)")
    for name, what, hit in reached:
        metric = printable(name)
        if hit is None:
            out.append(f"  {metric} {what}: not reached")
        else:
            after = f" after {seconds_text(hit['seconds'])}" if hit.get("seconds") is not None else ""
            out.append(f"  {metric} {what}: step {hit['step']}{after}")
    return out


# -- the step budget: how far a run in progress has to go (git exp top's ETA) --------------------------
STEP_BUDGET_NAMES = ("max_steps", "max_iters", "max_iter", "max_iterations", "total_steps", "num_steps", "n_steps",
                     "train_steps", "num_train_steps", "training_steps", "steps", "num_iters", "n_iters",
                     "iterations", "iters", "num_iterations")
EPOCH_BUDGET_NAMES = ("epochs", "num_epochs", "n_epochs", "max_epochs", "nepochs", "train_epochs", "num_train_epochs")
BUDGET_UNITS = ("step", "epoch")


def parse_budget(value: Any, params: Mapping[str, Any], fail: Any) -> Any:
    """The config's ``budget:``: a param naming the run's length (``budget: max_iters``), a
    number of steps (``budget: 5000``), or ``{param: n_ep, unit: epoch}``. ``fail(key,
    message, hint)`` makes the error. Returns the value as given (it is stored so)."""
    if value is None:
        return None
    spec = value if isinstance(value, dict) else {"param" if isinstance(value, str) else "steps": value}
    for key in spec:
        if key not in ("param", "steps", "unit"):
            raise fail(f"budget.{key}", f"unknown key 'budget.{key}'", "expected one of: param, steps, unit")
    unit = spec.get("unit", "step")
    if unit not in BUDGET_UNITS:
        raise fail("budget", f"budget unit {unit!r} is neither step nor epoch", "e.g. budget: {param: epochs, unit: epoch}")
    if "param" in spec:
        name = spec["param"]
        if not isinstance(name, str) or name not in params:
            from .config import closest

            raise fail("budget", f"budget names {name!r}, which is not a param", closest(str(name), list(params) or ["(no params)"]))
        if finite_number(params[name]) is None:
            raise fail("budget", f"budget param {name!r} is not a number ({params[name]!r})", None)
    elif finite_number(spec.get("steps")) is None or spec["steps"] <= 0:
        raise fail("budget", f"budget must be a param name or a number of steps > 0, not {spec.get('steps')!r}",
                   "e.g. budget: max_iters")
    return value


# installed by gitexp.watchers (timing watches nothing: it reads a run's points afterwards)
SECTION = Section("budget", lambda value, given: parse_budget(value, given.data.get("params") or {}, given.fail))


def budget_of(params: Mapping[str, Any], configured: Any = None) -> Optional[Tuple[float, str]]:
    """(how many, "step" or "epoch"): the config's ``budget:``, else the first param with a
    common name for it (max_iters, max_steps, steps, ...; epochs, num_epochs, ...)."""
    if configured is not None:
        spec = configured if isinstance(configured, dict) else {
            "param" if isinstance(configured, str) else "steps": configured}
        unit = str(spec["unit"]) if spec.get("unit") in BUDGET_UNITS else "step"
        amount = finite_number(params.get(spec["param"])) if isinstance(spec.get("param"), str) \
            else finite_number(spec.get("steps"))
        if amount is not None and amount > 0:
            return amount, unit
    for names, unit in ((STEP_BUDGET_NAMES, "step"), (EPOCH_BUDGET_NAMES, "epoch")):
        for name in names:
            amount = finite_number(params.get(name)) if not isinstance(params.get(name), bool) else None
            if amount is not None and amount > 0:
                return amount, unit
    return None


def progress(history: Sequence[Mapping[str, Any]], unit: str, last: int = 50) -> Tuple[Optional[float], Optional[float]]:
    """(where the run is, in steps or epochs; how fast, per second over the last ``last``
    records that carry it)."""
    key = "epoch" if unit == "epoch" else "step"
    marks = [(v, t) for v, t in ((finite_number(r.get(key)), finite_number(r.get("time"))) for r in history)
             if v is not None and t is not None]
    if not marks:
        return None, None
    recent = marks[-last:]
    rate = None
    if len(recent) >= 2 and recent[-1][1] > recent[0][1] and recent[-1][0] > recent[0][0]:
        rate = (recent[-1][0] - recent[0][0]) / (recent[-1][1] - recent[0][1])
    return marks[-1][0], rate

