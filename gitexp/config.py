"""Experiment configs: validate every key of a config file, resolve params into a command.

Errors name the file and line (``config.yaml:7: ...``) and say what to write instead; they
are :class:`BadInput`, so the CLI exits 2 before anything is written.

The layers below it: :mod:`gitexp.yamlsafe` parses the YAML (safe loading, duplicate keys,
alias bombs, line numbers) and :mod:`gitexp.shellquote` fills a command's placeholders
(an argv's directly; a shell string's through quoted variables, never in its text). Their
public names are re-exported here, so ``from gitexp.config import load_yaml`` keeps working.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from . import sections as sections_mod
from . import snapshot as snapshot_mod
from .config_model import (AUTO_RESUME_DEFAULT_ON, AUTO_RESUME_ENDS, BUILTIN_PLACEHOLDERS, GOALS, MAX_AUTO_RESUME,
                           MAX_NAME_LEN, METRIC_KEYS, REQUIRE_KEYS, RESUME_PLACEHOLDERS, STEP_MODES, TOP_KEYS,
                           WARNING_SIGNAL_VALUES, ExperimentConfig, MetricSpec, Requires, Scalar, check_name)
from .errors import BadInput
from .values import closest
from .shellquote import TemplateError, placeholders, render_shell
from .units import parse_duration, parse_size
from .yamlsafe import MAX_YAML_NODES, Loader, YAMLRefused, key_lines, load_yaml, load_yaml_node

__all__ = [  # what other modules import from here; the YAML and quoting names are re-exported
    "BUILTIN_PLACEHOLDERS", "GOALS", "MAX_NAME_LEN", "MAX_YAML_NODES", "METRIC_KEYS", "REQUIRE_KEYS", "STEP_MODES",
    "STORED_KEYS", "TOP_KEYS", "ExperimentConfig", "Loader", "MetricSpec", "Requires", "Scalar", "TemplateError",
    "YAMLRefused", "check_name", "closest", "coerce_value", "decode_config", "load_config", "load_yaml",
    "load_yaml_node", "parse_config", "parse_override", "placeholders", "render_shell", "typed_like",
]

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
