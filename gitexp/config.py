"""Experiment configs: validate every key of a config file, resolve params into a command.

Errors name the file and line (``config.yaml:7: ...``) and say what to write instead; they
are :class:`BadInput`, so the CLI exits 2 before anything is written.

The layers below it: :mod:`gitexp.yamlsafe` parses the YAML (safe loading, duplicate keys,
alias bombs, line numbers) and :mod:`gitexp.shellquote` fills a command's placeholders
(an argv's directly; a shell string's through quoted variables, never in its text). Their
public names are re-exported here, so ``from gitexp.config import load_yaml`` keeps working.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from . import sections as sections_mod
from . import snapshot as snapshot_mod
from . import values
from .errors import BadInput
from .shellquote import TemplateError, placeholders, render_shell, substitute
from .snapshot import SnapshotSpec
from .units import parse_duration, parse_size
from .yamlsafe import MAX_YAML_NODES, Loader, YAMLRefused, key_lines, load_yaml, load_yaml_node

__all__ = [  # what other modules import from here; the YAML and quoting names are re-exported
    "BUILTIN_PLACEHOLDERS", "GOALS", "MAX_NAME_LEN", "MAX_YAML_NODES", "METRIC_KEYS", "REQUIRE_KEYS", "STEP_MODES",
    "STORED_KEYS", "TOP_KEYS", "ExperimentConfig", "Loader", "MetricSpec", "Requires", "Scalar", "TemplateError",
    "YAMLRefused", "check_name", "closest", "coerce_value", "decode_config", "load_config", "load_yaml",
    "load_yaml_node", "parse_config", "parse_override", "placeholders", "render_shell", "typed_like",
]

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


def closest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'?" if match else "expected one of: " + ", ".join(choices)


# -- loading ------------------------------------------------------------------------------
def load_config(path: str) -> ExperimentConfig:
    if not os.path.exists(path):
        raise BadInput(f"config file not found: {path}", "check the path, e.g. git exp run config.yaml")
    if os.path.isdir(path):
        raise BadInput(f"{path} is a directory, not a config file", "pass a YAML file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from exc
    return parse_config(decode_config(raw, path), source=path)


def decode_config(raw: bytes, source: str) -> str:
    """The text of a config file; one that is not UTF-8 is bad input naming the line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise BadInput(f"{source}:{line}: the config is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                       "save the file as UTF-8") from exc


STORED_KEYS = ("source_root",)


def parse_config(text: str, source: str = "<config>", stored: bool = False) -> ExperimentConfig:
    """Validate YAML text; ``stored`` accepts the keys gitexp adds to a resolved config."""
    try:
        node, data = load_yaml_node(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source) from exc
    if data is None:
        raise BadInput(f"{source}: the config is empty", "it needs at least a 'command'")
    if not isinstance(data, dict):
        raise BadInput(f"{source}:1: the config must be a mapping of keys (name, command, params, ...)")
    if stored:
        for key in STORED_KEYS:
            data.pop(key, None)
    lines = key_lines(node) if node is not None else {}
    default_name = os.path.splitext(os.path.basename(source))[0] if source != "<config>" else "exp"
    return _Validator(source, lines, stored).build(data, default_name)


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> BadInput:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark else None
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, e.g. NUL
        line = text.count("\n", 0, exc.position) + 1
    where = f"{source}:{line}" if line else source
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, YAMLRefused):
        return BadInput(f"{where}: {problem}", "fix the config at that line")
    return BadInput(f"{where}: malformed YAML: {problem}", "fix the syntax at that line")


class _Validator:
    def __init__(self, source: str, lines: Dict[str, int], stored: bool = False) -> None:
        self.source = source
        self.lines = lines
        # A stored config was checked when it was recorded: names then allowed stay allowed.
        self.max_name_len = None if stored else MAX_NAME_LEN
        self.stored = stored

    def fail(self, key: str, message: str, hint: Optional[str] = None) -> BadInput:
        line = self.lines.get(key)
        where = f"{self.source}:{line}" if line else self.source
        return BadInput(f"{where}: {message}", hint)

    def check_keys(self, data: Mapping[str, Any], allowed: Sequence[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(f"{prefix}{key}", f"unknown key '{prefix}{key}'", closest(str(key), allowed))

    def string(self, data: Mapping[str, Any], key: str) -> Optional[str]:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(key, f"'{key}' must be a string, got {type(value).__name__}")
        return str(value)

    def build(self, data: Mapping[str, Any], default_name: str) -> ExperimentConfig:
        self.check_keys(data, TOP_KEYS, "")
        name = self.string(data, "name") or default_name
        problem = check_name(name, self.max_name_len)
        if problem:
            raise self.fail("name", f"name {name!r} is not usable as an experiment name", problem)
        group = self.string(data, "group")
        if group is not None and check_name(group, self.max_name_len):
            raise self.fail("group", f"group {group!r} is not usable", check_name(group, self.max_name_len))
        config = ExperimentConfig(
            name=name, command=self.command(data), params=self.params(data), group=group,
            description=self.string(data, "description"), metrics=self.metrics(data),
            requires=self.requires(data), files=self.files(data), env=self.env(data),
            sweep=self.sweep(data), snapshot=snapshot_mod.parse(data.get("snapshot"), self.fail),
            resume=self.command(data, "resume") if data.get("resume") is not None else None,
            auto_resume=self.auto_resume(data)[0],
            auto_resume_on=self.auto_resume(data)[1], warning_signal=self.warning_signal(data),
            profile=self.flag(data, "profile"), source=self.source, lines=self.lines,
        )
        # The sections other modules own (checkpoints, diagnostics, notify, budget), parsed by
        # them through the registry, in its order; checked against the rest once it is built.
        given = sections_mod.Given(data, self.fail, self.stored)
        owned = sections_mod.installed()
        for section in owned:
            setattr(config, section.key, section.parse(data.get(section.key), given))
        for section in owned:
            if section.check is not None and not self.stored:  # a stored config was checked when recorded
                section.check(getattr(config, section.key), config, self.fail)
        known = set(config.params) | set(BUILTIN_PLACEHOLDERS)
        for key, template in (("command", config.command), ("resume", config.resume)):
            for placeholder in placeholders(template) if template is not None else []:
                if placeholder not in known and not (key == "resume" and placeholder in RESUME_PLACEHOLDERS):
                    raise self.fail(key, f"placeholder {{{placeholder}}} in '{key}' has no param",
                                    f"add '{placeholder}' under params, or write {{{{ }}}} for a literal brace"
                                    + ("; 'resume' also knows {checkpoint} and {step}" if key == "resume" else ""))
        return config

    def flag(self, data: Mapping[str, Any], key: str) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(key, f"'{key}' must be true or false, got {value!r}")
        return value

    def auto_resume(self, data: Mapping[str, Any]) -> Tuple[int, Tuple[str, ...]]:
        """``auto_resume: N``, or ``{times: N, ends: [...]}`` naming the ends it continues."""
        value, ends = data.get("auto_resume", 0), AUTO_RESUME_DEFAULT_ON
        if isinstance(value, dict):
            self.check_keys(value, ("times", "ends"), "auto_resume.")
            on = value.get("ends", list(ends))
            on = [on] if isinstance(on, str) else on
            if not isinstance(on, list) or not all(isinstance(e, str) and e in AUTO_RESUME_ENDS for e in on):
                raise self.fail("auto_resume", f"'auto_resume.ends' must be a list of: {', '.join(AUTO_RESUME_ENDS)}; "
                                f"not {on!r}", "e.g. auto_resume: {times: 3, ends: [timeout, lost, sigkill]}")
            value, ends = value.get("times", 1), tuple(dict.fromkeys(on))
        if value is None:
            return 0, ends
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AUTO_RESUME:
            raise self.fail("auto_resume", f"'auto_resume' must be a whole number from 0 to {MAX_AUTO_RESUME}, "
                            f"not {value!r}", "it is how often a run stopped by the time limit, preemption or "
                            "a lost node is resumed from its latest checkpoint")
        return value, ends

    def warning_signal(self, data: Mapping[str, Any]) -> str:
        value = data.get("warning_signal", "auto")
        value = "auto" if value is None else value
        if not isinstance(value, str) or value not in WARNING_SIGNAL_VALUES:
            raise self.fail("warning_signal", f"'warning_signal' must be one of {', '.join(WARNING_SIGNAL_VALUES)}, "
                            f"not {value!r}", "auto passes the time-limit warning (SIGUSR1) on only to a program "
                            "that handles it")
        return value

    def command(self, data: Mapping[str, Any], key: str = "command") -> Union[str, List[str]]:
        value = data.get(key)
        if value is None:
            raise self.fail("command", "missing 'command': what to run", "e.g. command: python train.py --lr {lr}")
        if isinstance(value, list):
            if not value or not all(isinstance(v, (str, int, float)) for v in value):
                raise self.fail(key, f"'{key}' as a list must hold strings (an argv)")
            parts = [str(v) for v in value]
        elif isinstance(value, str) and value.strip():
            parts = [value]
        else:
            raise self.fail(key, f"'{key}' must be a string or a list of strings, got {value!r}")
        for part in parts:
            try:
                placeholders(part)
            except ValueError as exc:
                raise self.fail(key, f"bad placeholder in '{key}': {exc}", "write {param}, or {{ for a brace") from exc
        return parts if isinstance(value, list) else value

    def params(self, data: Mapping[str, Any]) -> Dict[str, Scalar]:
        value = data.get("params") or {}
        if not isinstance(value, dict):
            raise self.fail("params", "'params' must be a mapping of name: value")
        for key, item in value.items():
            if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise self.fail(f"params.{key}", f"param name {key!r} must be an identifier (letters, digits, _)")
            if isinstance(item, (list, dict)):
                raise self.fail(f"params.{key}", f"param '{key}' must be a single value, got a {type(item).__name__}",
                                "to try several values, use a sweep")
            if item is not None and not isinstance(item, (str, int, float, bool)):
                raise self.fail(f"params.{key}", f"param '{key}' must be a number, string or true/false, "
                                f"got a {type(item).__name__} ({item})", "quote it to make it a string")
        return dict(value)

    def metrics(self, data: Mapping[str, Any]) -> Dict[str, MetricSpec]:
        value = data.get("metrics") or {}
        if isinstance(value, list):
            value = {str(v): {} for v in value}
        if not isinstance(value, dict):
            raise self.fail("metrics", "'metrics' must map a metric name to how it is captured")
        out = {str(name): self.metric(str(name), spec) for name, spec in value.items()}
        self.default_metric_step(data, out)
        return out

    def metric(self, name: str, spec: Any) -> MetricSpec:
        """One metric's spec: goal, its one source (regex, file or tfevents) and its steps."""
        key = f"metrics.{name}"
        spec = spec if spec is not None else {}
        if not isinstance(spec, dict):
            raise self.fail(key, f"metric '{name}' must be a mapping (goal, regex, file, key)")
        self.check_keys(spec, METRIC_KEYS, key + ".")
        goal = spec.get("goal", "minimize")
        if goal not in GOALS:
            raise self.fail(f"{key}.goal", f"goal {goal!r} of metric '{name}' is not valid", "use minimize or maximize")
        regex = spec.get("regex")
        if regex is not None:
            self.metric_regex(name, key, regex)
        sources = [k for k in ("regex", "file", "tfevents") if spec.get(k) is not None]
        if len(sources) > 1:
            raise self.fail(key, f"metric '{name}' has both '{sources[0]}' and '{sources[1]}'", "pick one source")
        if spec.get("tag") is not None and spec.get("tfevents") is None:
            raise self.fail(f"{key}.tag", f"'tag' of metric '{name}' applies to tfevents metrics only",
                            "e.g. {tfevents: 'runs/**/events.out.tfevents.*', tag: 'Loss/test'}")
        for text_key in ("file", "key", "tfevents", "tag"):
            if spec.get(text_key) is not None and not isinstance(spec[text_key], str):
                raise self.fail(f"{key}.{text_key}", f"{text_key} of metric '{name}' must be a string")
        step, step_regex = self.metric_step(spec, f"{key}.step", f"of metric '{name}'")
        if step and regex is None:
            raise self.fail(f"{key}.step", f"'step' of metric '{name}' applies to regex metrics only",
                            "gitexp.log and metrics files give their own steps")
        return MetricSpec(name, goal, regex, spec.get("file"), spec.get("key"), step, step_regex,
                          spec.get("tfevents"), spec.get("tag"))

    def metric_regex(self, name: str, key: str, regex: Any) -> None:
        """A metric's regex compiles and has a group capturing the value."""
        try:
            compiled = re.compile(str(regex))
        except re.error as exc:
            raise self.fail(f"{key}.regex", f"regex of metric '{name}' does not compile: {exc}") from exc
        if compiled.groups < 1:
            raise self.fail(f"{key}.regex", f"regex of metric '{name}' needs a group capturing the value",
                            "e.g. 'val_err=([0-9.]+)'")

    def default_metric_step(self, data: Mapping[str, Any], out: Dict[str, MetricSpec]) -> None:
        """The top-level 'step' is where the steps of every regex metric without its own come from."""
        default, default_regex = self.metric_step(data, "step", "(top-level)")
        if default:
            if not any(spec.regex for spec in out.values()):
                raise self.fail("step", "the top-level 'step' says where regex metrics' steps come from, "
                                "but no metric has a 'regex'", "remove it, or give a metric a regex")
            for spec in out.values():
                if spec.regex and not spec.step:
                    spec.step, spec.step_regex = default, default_regex

    def metric_step(self, spec: Mapping[str, Any], key: str, whose: str) -> Tuple[Optional[str], Optional[str]]:
        """(mode, step regex) from a 'step' value: count, latest or {regex: '...'}."""
        value = spec.get("step")
        if value is None:
            return None, None
        if isinstance(value, str) and value in STEP_MODES:
            return value, None
        hint = "write step: latest, step: count, or step: {regex: 'step (\\d+)'}"
        if not isinstance(value, dict):
            raise self.fail(key, f"step {whose} must be latest, count or a mapping with a regex, got {value!r}", hint)
        self.check_keys(value, ("regex",), key + ".")
        text = value.get("regex")
        if not isinstance(text, str) or not text:
            raise self.fail(key, f"step {whose} needs a 'regex' (a string)", hint)
        try:
            compiled = re.compile(text)
        except re.error as exc:
            raise self.fail(f"{key}.regex", f"step regex {whose} does not compile: {exc}") from exc
        if compiled.groups < 1:
            raise self.fail(f"{key}.regex", f"step regex {whose} needs a group capturing the step",
                            "e.g. 'step (\\d+)'")
        return "regex", text

    def requires(self, data: Mapping[str, Any]) -> Requires:
        value = data.get("requires") or {}
        if not isinstance(value, dict):
            raise self.fail("requires", "'requires' must be a mapping (disk, ram, gpu_mem, time, gpus, cpus)")
        self.check_keys(value, REQUIRE_KEYS, "requires.")
        req = Requires()
        for key, item in value.items():
            try:
                if key in ("disk", "ram", "gpu_mem"):
                    setattr(req, key, parse_size(item))
                elif key == "time":
                    req.time = parse_duration(item)
                else:
                    if not isinstance(item, int) or isinstance(item, bool) or item < 0:
                        raise ValueError(f"{item!r} is not a count; write a whole number like 1")
                    setattr(req, key, item)
            except ValueError as exc:
                raise self.fail(f"requires.{key}", f"requires.{key}: {exc}") from exc
        return req

    def files(self, data: Mapping[str, Any]) -> List[str]:
        value = data.get("files") or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("files", "'files' must be a list of paths")
        for index, path in enumerate(value):
            key = f"files.{index}" if f"files.{index}" in self.lines else "files"
            if not path.strip() or "\0" in path:
                raise self.fail(key, f"'files' entry {path!r} is not a path")
            # A relative entry is linked at the same place in the run's worktree: one that
            # climbs out of the repository would put a link outside it.
            if not os.path.isabs(path) and leaves_tree(path):
                raise self.fail(key, f"'files' entry {path!r} leads outside the repository",
                                "list paths inside the repository, or an absolute path (linked by its base name)")
        return list(value)

    def env(self, data: Mapping[str, Any]) -> Dict[str, str]:
        value = data.get("env") or {}
        if not isinstance(value, dict):
            raise self.fail("env", "'env' must be a mapping of VARIABLE: value")
        out = {}
        for key, item in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)):
                raise self.fail(f"env.{key}", f"{key!r} is not a valid environment variable name")
            if isinstance(item, (list, dict)):
                raise self.fail(f"env.{key}", f"env.{key} must be a single value")
            if "\0" in str(item):
                raise self.fail(f"env.{key}", f"env.{key} contains a NUL character, which no variable can hold")
            out[str(key)] = "" if item is None else str(item)
        return out

    def sweep(self, data: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        value = data.get("sweep")
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail("sweep", "'sweep' must be a mapping of param: values")
        return dict(value)


def leaves_tree(path: str) -> bool:
    """Whether a relative path climbs out of the working tree (``..``, ``../x``)."""
    normal = os.path.normpath(path)
    return normal == os.pardir or normal.startswith(os.pardir + os.sep)


def parse_override(text: str, config: ExperimentConfig) -> Tuple[str, Scalar]:
    """``lr=0.003`` from ``-p``: the param must exist, and a number stays a number."""
    if "=" not in text:
        raise BadInput(f"-p {text!r}: expected NAME=VALUE", "e.g. -p lr=0.003")
    key, _, raw = text.partition("=")
    key = key.strip()
    if key not in config.params:
        raise BadInput(f"-p {key}: no param '{key}' in {config.source}", closest(key, list(config.params) or ["(no params)"]))
    value = coerce_value(raw, config.params[key], f"-p {key}")
    return key, value


def coerce_value(raw: str, like: Scalar, where: str) -> Scalar:
    """A value from the command line (``-p``, ``--sweep``) in the type of the config's default
    ``like``: ``-p lr=10`` against ``lr: 0.1`` is the float 10.0 (the program gets ``10.0``),
    ``-p tag=10`` against a string is the string ``10``. A number that cannot keep an integer
    default's type (``-p wd=0.01`` against ``wd: 0``) is passed as given, with a note saying so."""
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (list, dict)):
        value = raw
    numeric = isinstance(like, (int, float)) and not isinstance(like, bool)
    if numeric and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise BadInput(f"{where}: {raw!r} is not a number, but the param is ({like!r})", "give a number")
    if isinstance(like, bool) and not isinstance(value, bool):
        raise BadInput(f"{where}: {raw!r} is not true/false, but the param is ({like!r})")
    if isinstance(like, str) and not isinstance(value, str):
        return raw  # the text as given: a string param stays a string
    typed: Scalar
    typed, changed = typed_like(value, like)
    if changed:
        print(f"gitexp: note: {where}: {raw} is passed as a {type(typed).__name__}; "
              f"the config's default {like!r} is a {type(like).__name__}", file=sys.stderr)
    return typed


def typed_like(value: Any, like: Any) -> Tuple[Any, bool]:
    """(``value`` in the type of ``like`` where that loses nothing, whether its type still
    differs): an int for a float default becomes a float, a whole float for an int default
    an int. Other values are returned as they are."""
    if isinstance(value, bool) or isinstance(like, bool) or not isinstance(value, (int, float)) \
            or not isinstance(like, (int, float)):
        return value, False
    if isinstance(like, float) and isinstance(value, int):
        try:
            return float(value), False
        except OverflowError:
            return value, True
    if isinstance(like, int) and isinstance(value, float):
        if value.is_integer():
            return int(value), False
        return value, True
    return value, False
