"""The experiment config's model: the validated config, its metrics and requirements, and the
keys a config file may hold. :mod:`gitexp.config` parses and checks a file into these (and
re-exports every name here).
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from . import values
from .errors import BadInput
from .shellquote import TemplateError, render_shell, substitute
from .snapshot import SnapshotSpec

TOP_KEYS = ("name", "group", "description", "command", "params", "metrics", "requires", "files", "env", "sweep",
            "snapshot", "step", "resume", "checkpoints", "auto_resume", "diagnostics", "notify", "budget", "warning_signal",
            "profile")
METRIC_KEYS = ("goal", "regex", "file", "key", "step", "tfevents", "tag")
STEP_MODES = ("count", "latest")  # besides {regex: ...}; see MetricSpec.step
REQUIRE_KEYS = ("disk", "ram", "gpu_mem", "time", "gpus", "cpus")
GOALS = ("minimize", "maximize")
BUILTIN_PLACEHOLDERS = ("outdir", "name", "run_dir")
RESUME_PLACEHOLDERS = ("checkpoint", "step")  # only in `resume:`, filled from the checkpoint resumed from
MAX_AUTO_RESUME = 100
# The ends `auto_resume` continues (`auto_resume: {times: N, ends: [...]}`): a time limit, a
# preemption, a dead executor or node, a program killed by SIGKILL (the OOM killer), any failure.
AUTO_RESUME_ENDS = ("timeout", "preempted", "lost", "sigkill", "failed")
AUTO_RESUME_DEFAULT_ON = ("timeout", "preempted", "lost", "sigkill")
WARNING_SIGNAL_VALUES = ("auto", "always", "never", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGTERM", "SIGHUP")
MAX_NAME_LEN = values.MAX_NAME_LEN
check_name = values.name_problem  # the one rule for a name, in gitexp.values

Scalar = Union[str, int, float, bool, None]


@dataclass
class MetricSpec:
    name: str
    goal: Optional[str] = "minimize"
    regex: Optional[str] = None
    file: Optional[str] = None
    key: Optional[str] = None
    # Where a regex metric's steps come from, when its own regex has no ``step`` group that
    # matched: "count" (the n-th match is step n, the default), "latest" (the latest step any
    # source reported before the line was read) or "regex" (the latest value ``step_regex``
    # matched on any output line so far, that line included).
    step: Optional[str] = None
    step_regex: Optional[str] = None
    # TensorBoard event files (a glob, relative to {outdir} or the program's working directory)
    # and the scalar's tag in them (default: the metric's name).
    tfevents: Optional[str] = None
    tag: Optional[str] = None

    @property
    def source(self) -> str:
        return "regex" if self.regex else "file" if self.file else "tfevents" if self.tfevents else "api"

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"goal": self.goal}
        for attr in ("regex", "file", "key", "tfevents", "tag"):
            if getattr(self, attr):
                out[attr] = getattr(self, attr)
        if self.step:
            out["step"] = {"regex": self.step_regex} if self.step == "regex" else self.step
        return out


@dataclass
class Requires:
    disk: Optional[int] = None
    ram: Optional[int] = None
    gpu_mem: Optional[int] = None
    time: Optional[int] = None
    gpus: Optional[int] = None
    cpus: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain values that parse back to the same: sizes in bytes, time as e.g. '3600s'."""
        out: Dict[str, Any] = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.time is not None:
            out["time"] = f"{self.time}s"
        return out


@dataclass
class ExperimentConfig:
    """A validated config. ``params`` hold the values this experiment runs with."""

    name: str
    command: Union[str, List[str]]
    params: Dict[str, Scalar] = field(default_factory=dict)
    group: Optional[str] = None
    description: Optional[str] = None
    metrics: Dict[str, MetricSpec] = field(default_factory=dict)
    requires: Requires = field(default_factory=Requires)
    files: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    sweep: Optional[Dict[str, Any]] = None
    snapshot: SnapshotSpec = field(default_factory=SnapshotSpec)
    resume: Optional[Union[str, List[str]]] = None  # the command that continues from {checkpoint}
    checkpoints: Any = field(default_factory=list)  # gitexp.checkpoints.Spec (parsed by that module)
    auto_resume: int = 0  # resubmit a run stopped by the time limit, preemption or a lost node this often
    auto_resume_on: Tuple[str, ...] = AUTO_RESUME_DEFAULT_ON  # which ends auto_resume continues
    warning_signal: str = "auto"  # the time-limit warning to the program: auto (if it handles SIGUSR1), ...
    diagnostics: Any = None  # gitexp.diagnostics.Rules (parsed by that module)
    notify: Any = None  # gitexp.notify.NotifySpec (parsed by that module)
    budget: Any = None  # how long the run is: a param name, a number of steps, {param, unit} (gitexp.timing)
    profile: bool = False  # sample the program with py-spy (gitexp.profiler)
    source: str = "<config>"
    lines: Dict[str, int] = field(default_factory=dict, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """The resolved config, as stored in the experiment commit."""
        out: Dict[str, Any] = {"name": self.name}
        if self.group:
            out["group"] = self.group
        if self.description:
            out["description"] = self.description
        out["command"] = self.command
        out["params"] = dict(self.params)
        if self.metrics:
            out["metrics"] = {n: m.to_dict() for n, m in self.metrics.items()}
        if self.requires.to_dict():
            out["requires"] = self.requires.to_dict()
        if self.files:
            out["files"] = list(self.files)
        if self.env:
            out["env"] = dict(self.env)
        if self.snapshot.to_dict():
            out["snapshot"] = self.snapshot.to_dict()
        out.update(self._policies_dict())
        return out

    def _policies_dict(self) -> Dict[str, Any]:
        """to_dict's part for how the run is resumed, signalled, budgeted, profiled, diagnosed, notified."""
        out: Dict[str, Any] = {}
        if self.resume is not None:
            out["resume"] = self.resume
        if self.checkpoints:  # a gitexp.checkpoints.Spec: stored as the config gave it
            out["checkpoints"] = self.checkpoints.to_dict() if hasattr(self.checkpoints, "to_dict") \
                else list(self.checkpoints)
        if self.auto_resume:
            out["auto_resume"] = self.auto_resume if self.auto_resume_on == AUTO_RESUME_DEFAULT_ON \
                else {"times": self.auto_resume, "ends": list(self.auto_resume_on)}
        if self.warning_signal != "auto":
            out["warning_signal"] = self.warning_signal
        if self.budget is not None:
            out["budget"] = self.budget
        if self.profile:
            out["profile"] = True
        for key in ("diagnostics", "notify"):
            given = getattr(self, key).to_dict() if getattr(self, key) is not None else None
            if given is not None:
                out[key] = given
        return out

    def config_hash(self) -> str:
        """Identity of what runs: command, params, env, files. Same hash = same experiment."""
        core = {"command": self.command, "params": self.params, "env": self.env, "files": self.files}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.source}:{line}" if line else self.source

    def with_params(self, overrides: Mapping[str, Scalar], name: Optional[str] = None) -> "ExperimentConfig":
        params = dict(self.params)
        params.update(overrides)
        clone = ExperimentConfig(**{**self.__dict__, "params": params})
        if name:
            clone.name = name
        return clone

    def check_command(self) -> None:
        """Fill the placeholders once now, so a bad format spec is bad input, not a failed run."""
        for key, render in (("command", self.render_command), ("resume", self.render_resume)):
            if key == "resume" and self.resume is None:
                continue
            try:
                render({b: "x" for b in BUILTIN_PLACEHOLDERS + RESUME_PLACEHOLDERS})
            except TemplateError as exc:
                raise BadInput(f"{self.where(key)}: {exc}", exc.hint) from exc
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise BadInput(f"{self.where(key)}: cannot fill the placeholders of '{key}' "
                               f"with params {self.params}: {exc}", "fix the format spec or the param's type") from exc

    def render_resume(self, builtins: Mapping[str, str]) -> Union[str, List[str]]:
        """The ``resume:`` command with placeholders filled (``builtins`` hold checkpoint and step)."""
        assert self.resume is not None
        return ExperimentConfig(**{**self.__dict__, "command": self.resume}).render_command(builtins)

    def command_text(self, builtins: Mapping[str, str], resume: bool = False) -> str:
        """The command as the user wrote it with the values in place, for people to read
        (``python train.py --lr 0.1``): the log's first line and mails. Never run: the
        program runs :meth:`render_command`, which keeps values out of the shell's text."""
        from .summary import printable  # control characters in a value shown escaped

        command = self.resume if resume and self.resume is not None else self.command
        values: Dict[str, Any] = {**self.params, **builtins}
        try:
            if isinstance(command, list):
                return printable(shlex.join(substitute(part, values) for part in command))
            return printable(substitute(command, values))
        except (ValueError, TypeError, KeyError, IndexError):
            return printable(str(command))

    def render_command(self, builtins: Mapping[str, str]) -> Union[str, List[str]]:
        """The command with placeholders filled.

        A list is an argv: each placeholder is replaced by its value. A shell string never
        contains a value: it starts with one assignment per placeholder, ``GITEXP_P_lr='0.1'``
        (single-quoted, so nothing in it is special), and each placeholder becomes a quoted
        reference to that variable, written for the quoting it stands in (see
        :mod:`gitexp.shellquote`). The program gets every value exactly, and the shell never
        parses one as code.
        """
        values: Dict[str, Any] = dict(self.params)
        values.update(builtins)
        if isinstance(self.command, list):
            return [substitute(part, values) for part in self.command]
        return render_shell(self.command, values)
