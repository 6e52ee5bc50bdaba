"""Experiment configs: load YAML safely, validate every key, resolve params into a command.

Errors name the file and line (``config.yaml:7: ...``) and say what to write instead; they
are :class:`BadInput`, so the CLI exits 2 before anything is written.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import string
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from .errors import BadInput
from .units import parse_duration, parse_size

TOP_KEYS = ("name", "group", "description", "command", "params", "metrics", "requires", "files", "env", "sweep")
METRIC_KEYS = ("goal", "regex", "file", "key")
REQUIRE_KEYS = ("disk", "ram", "gpu_mem", "time", "gpus", "cpus")
GOALS = ("minimize", "maximize")
BUILTIN_PLACEHOLDERS = ("outdir", "name", "run_dir")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")

Scalar = Union[str, int, float, bool, None]


class Loader(yaml.SafeLoader):
    """Safe YAML with the number rules people expect (as in YAML 1.2, not PyYAML's 1.1).

    ``1e-4`` is a float (1.1 reads it as a string) and ``12:00:00`` stays a string (1.1
    reads it as the base-60 integer 43200).
    """


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[1-9][0-9_]*|[-+]?0|0x[0-9a-fA-F_]+)$"),
                             list("-+0123456789"))
Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader


def check_name(name: str) -> Optional[str]:
    """Why ``name`` cannot be an experiment name (a ref name under refs/exps/), or None."""
    if not _NAME_RE.match(name):
        return "use letters, digits and . _ - = , + (starting with a letter or digit)"
    if ".." in name or name.endswith((".", ".lock")):
        return "it may not contain '..' or end with '.' or '.lock'"
    return None


@dataclass
class MetricSpec:
    name: str
    goal: Optional[str] = "minimize"
    regex: Optional[str] = None
    file: Optional[str] = None
    key: Optional[str] = None

    @property
    def source(self) -> str:
        return "regex" if self.regex else "file" if self.file else "api"

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"goal": self.goal}
        for attr in ("regex", "file", "key"):
            if getattr(self, attr):
                out[attr] = getattr(self, attr)
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
        try:
            self.render_command({b: "x" for b in BUILTIN_PLACEHOLDERS})
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise BadInput(f"{self.where('command')}: cannot fill the placeholders of 'command' "
                           f"with params {self.params}: {exc}", "fix the format spec or the param's type")

    def render_command(self, builtins: Mapping[str, str]) -> Union[str, List[str]]:
        """The command with placeholders filled; in a shell string every value is quoted."""
        values: Dict[str, Any] = dict(self.params)
        values.update(builtins)
        if isinstance(self.command, list):
            return [_substitute(part, values, quote=False) for part in self.command]
        return _substitute(self.command, values, quote=True)


def closest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'?" if match else "expected one of: " + ", ".join(choices)


def _format_value(value: Any, spec: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return format(value, spec) if spec else str(value)


def _substitute(template: str, values: Mapping[str, Any], quote: bool) -> str:
    out = []
    for literal, fieldname, spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        if fieldname is None:
            continue
        text = _format_value(values[fieldname], spec or "")
        out.append(shlex.quote(text) if quote else text)
    return "".join(out)


def placeholders(command: Union[str, List[str]]) -> List[str]:
    parts = command if isinstance(command, list) else [command]
    names = []
    for part in parts:
        for _lit, fieldname, _spec, _conv in string.Formatter().parse(part):
            if fieldname is not None:
                names.append(fieldname)
    return names


# -- loading ------------------------------------------------------------------------------
def _key_lines(node: yaml.Node, prefix: str = "") -> Dict[str, int]:
    """Map 'a.b' key paths to 1-based line numbers, from the composed YAML node tree."""
    lines: Dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key + "."))
    return lines


def load_config(path: str) -> ExperimentConfig:
    if not os.path.exists(path):
        raise BadInput(f"config file not found: {path}", "check the path, e.g. git exp run config.yaml")
    if os.path.isdir(path):
        raise BadInput(f"{path} is a directory, not a config file", "pass a YAML file")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse_config(text, source=path)


STORED_KEYS = ("source_root",)


def parse_config(text: str, source: str = "<config>", stored: bool = False) -> ExperimentConfig:
    """Validate YAML text; ``stored`` accepts the keys gitexp adds to a resolved config."""
    try:
        node = yaml.compose(text, Loader=Loader)
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{where}: malformed YAML: {problem}", "fix the syntax at that line")
    if data is None:
        raise BadInput(f"{source}: the config is empty", "it needs at least a 'command'")
    if not isinstance(data, dict):
        raise BadInput(f"{source}:1: the config must be a mapping of keys (name, command, params, ...)")
    if stored:
        for key in STORED_KEYS:
            data.pop(key, None)
    lines = _key_lines(node) if node is not None else {}
    default_name = os.path.splitext(os.path.basename(source))[0] if source != "<config>" else "exp"
    return _Validator(source, lines).build(data, default_name)


class _Validator:
    def __init__(self, source: str, lines: Dict[str, int]) -> None:
        self.source = source
        self.lines = lines

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
        problem = check_name(name)
        if problem:
            raise self.fail("name", f"name {name!r} is not usable as an experiment name", problem)
        group = self.string(data, "group")
        if group is not None and check_name(group):
            raise self.fail("group", f"group {group!r} is not usable", check_name(group))
        config = ExperimentConfig(
            name=name, command=self.command(data), params=self.params(data), group=group,
            description=self.string(data, "description"), metrics=self.metrics(data),
            requires=self.requires(data), files=self.files(data), env=self.env(data),
            sweep=self.sweep(data), source=self.source, lines=self.lines,
        )
        known = set(config.params) | set(BUILTIN_PLACEHOLDERS)
        for placeholder in placeholders(config.command):
            if placeholder not in known:
                raise self.fail("command", f"placeholder {{{placeholder}}} in 'command' has no param",
                                f"add '{placeholder}' under params, or write {{{{ }}}} for a literal brace")
        return config

    def command(self, data: Mapping[str, Any]) -> Union[str, List[str]]:
        value = data.get("command")
        if value is None:
            raise self.fail("command", "missing 'command': what to run", "e.g. command: python train.py --lr {lr}")
        if isinstance(value, list):
            if not value or not all(isinstance(v, (str, int, float)) for v in value):
                raise self.fail("command", "'command' as a list must hold strings (an argv)")
            parts = [str(v) for v in value]
        elif isinstance(value, str) and value.strip():
            parts = [value]
        else:
            raise self.fail("command", f"'command' must be a string or a list of strings, got {value!r}")
        for part in parts:
            try:
                placeholders(part)
            except ValueError as exc:
                raise self.fail("command", f"bad placeholder in 'command': {exc}", "write {param}, or {{ for a brace")
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
        out = {}
        for name, spec in value.items():
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
                try:
                    compiled = re.compile(str(regex))
                except re.error as exc:
                    raise self.fail(f"{key}.regex", f"regex of metric '{name}' does not compile: {exc}")
                if compiled.groups < 1:
                    raise self.fail(f"{key}.regex", f"regex of metric '{name}' needs a group capturing the value",
                                    "e.g. 'val_err=([0-9.]+)'")
            if regex is not None and spec.get("file") is not None:
                raise self.fail(key, f"metric '{name}' has both 'regex' and 'file'", "pick one source")
            for text_key in ("file", "key"):
                if spec.get(text_key) is not None and not isinstance(spec[text_key], str):
                    raise self.fail(f"{key}.{text_key}", f"{text_key} of metric '{name}' must be a string")
            out[str(name)] = MetricSpec(str(name), goal, regex, spec.get("file"), spec.get("key"))
        return out

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
                raise self.fail(f"requires.{key}", f"requires.{key}: {exc}")
        return req

    def files(self, data: Mapping[str, Any]) -> List[str]:
        value = data.get("files") or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("files", "'files' must be a list of paths")
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
            out[str(key)] = "" if item is None else str(item)
        return out

    def sweep(self, data: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        value = data.get("sweep")
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail("sweep", "'sweep' must be a mapping of param: values")
        return dict(value)


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
    return value  # type: ignore[return-value]
