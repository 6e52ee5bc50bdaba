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
import string
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from . import snapshot as snapshot_mod
from .errors import BadInput
from .snapshot import SnapshotSpec
from .units import parse_duration, parse_size

TOP_KEYS = ("name", "group", "description", "command", "params", "metrics", "requires", "files", "env", "sweep",
            "snapshot", "step")
METRIC_KEYS = ("goal", "regex", "file", "key", "step")
STEP_MODES = ("count", "latest")  # besides {regex: ...}; see MetricSpec.step
REQUIRE_KEYS = ("disk", "ram", "gpu_mem", "time", "gpus", "cpus")
GOALS = ("minimize", "maximize")
BUILTIN_PLACEHOLDERS = ("outdir", "name", "run_dir")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")
# A name is one file name under refs/exps/ (255 bytes on most filesystems, less ".lock"); 200
# leaves room for the "-N" a taken name gets and for a sweep id's "-sweep-xxxxxx".
MAX_NAME_LEN = 200
# YAML aliases make a few hundred bytes expand to billions of nodes ("billion laughs"): refuse
# a document that would build more nodes than any config needs, before building it.
MAX_YAML_NODES = 100_000

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


class YAMLRefused(yaml.MarkedYAMLError):
    """Well-formed YAML that gitexp will not build: duplicate keys, alias bombs, deep nesting."""


def load_yaml(text: str) -> Any:
    """Safe YAML with duplicate keys and alias expansion checked (see :func:`load_yaml_node`)."""
    return load_yaml_node(text)[1]


def load_yaml_node(text: str) -> Tuple[Optional[yaml.Node], Any]:
    """The composed node tree (for line numbers) and the data, checked before the data is built.

    Raises :class:`yaml.YAMLError`: malformed YAML, or :class:`YAMLRefused`.
    """
    loader = Loader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None, None
            _check_node(node)
            return node, loader.construct_document(node)
        except RecursionError:  # PyYAML composes and builds recursively
            raise YAMLRefused(problem="the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def _node_children(node: yaml.Node) -> List[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_node(root: yaml.Node) -> None:
    """Refuse duplicate keys and documents that expand past MAX_YAML_NODES.

    An alias is the same node object as its anchor, so the size is counted per distinct node
    (memoised) and stays linear in the text, however many times aliases nest.
    """
    sizes: Dict[int, int] = {}
    open_nodes = set()  # ids on the current path: seeing one again is a recursive alias
    stack: List[Tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            open_nodes.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in _node_children(node))
            if size > MAX_YAML_NODES:
                raise YAMLRefused(problem=f"the YAML expands to more than {MAX_YAML_NODES:,} values "
                                  "(aliases repeating aliases); write the values out", problem_mark=node.start_mark)
            sizes[id(node)] = size
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise YAMLRefused(problem="an alias refers to a value that contains it", problem_mark=node.start_mark)
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in _node_children(node) if id(child) not in sizes)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_duplicate_keys(node: yaml.MappingNode) -> None:
    # PyYAML keeps the last of duplicate keys without a word; a config with two 'lr:' would
    # silently run with the second.
    seen: Dict[Tuple[str, str], int] = {}
    for key_node, _value in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        ident = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if ident in seen:
            raise YAMLRefused(problem=f"duplicate key '{key_node.value}' (also on line {seen[ident]})",
                              problem_mark=key_node.start_mark)
        seen[ident] = line


def check_name(name: str, max_len: Optional[int] = MAX_NAME_LEN) -> Optional[str]:
    """Why ``name`` cannot be an experiment name (a ref name under refs/exps/), or None."""
    if max_len is not None and len(name) > max_len:
        return f"it has {len(name)} characters; the most is {max_len}"
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
    # Where a regex metric's steps come from, when its own regex has no ``step`` group that
    # matched: "count" (the n-th match is step n, the default), "latest" (the latest step any
    # source reported before the line was read) or "regex" (the latest value ``step_regex``
    # matched on any output line so far, that line included).
    step: Optional[str] = None
    step_regex: Optional[str] = None

    @property
    def source(self) -> str:
        return "regex" if self.regex else "file" if self.file else "api"

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"goal": self.goal}
        for attr in ("regex", "file", "key"):
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
        except TemplateError as exc:
            raise BadInput(f"{self.where('command')}: {exc}", exc.hint) from exc
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise BadInput(f"{self.where('command')}: cannot fill the placeholders of 'command' "
                           f"with params {self.params}: {exc}", "fix the format spec or the param's type") from exc

    def render_command(self, builtins: Mapping[str, str]) -> Union[str, List[str]]:
        """The command with placeholders filled.

        A list is an argv: each placeholder is replaced by its value. A shell string never
        contains a value: it starts with one assignment per placeholder, ``GITEXP_P_lr='0.1'``
        (single-quoted, so nothing in it is special), and each placeholder becomes a quoted
        reference to that variable, written for the quoting it stands in (see
        :func:`render_shell`). The program gets every value exactly, and the shell never
        parses one as code.
        """
        values: Dict[str, Any] = dict(self.params)
        values.update(builtins)
        if isinstance(self.command, list):
            return [_substitute(part, values) for part in self.command]
        return render_shell(self.command, values)


def closest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'?" if match else "expected one of: " + ", ".join(choices)


def _format_value(value: Any, spec: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return format(value, spec) if spec else str(value)


def _substitute(template: str, values: Mapping[str, Any]) -> str:
    out = []
    for literal, fieldname, spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        if fieldname is not None:
            out.append(_format_value(values[fieldname], spec or ""))
    text = "".join(out)
    if "\0" in text:
        raise TemplateError("a value in 'command' contains a NUL character, which no argument can hold",
                            "remove it from the value")
    return text


def placeholders(command: Union[str, List[str]]) -> List[str]:
    parts = command if isinstance(command, list) else [command]
    names = []
    for part in parts:
        for _lit, fieldname, _spec, _conv in string.Formatter().parse(part):
            if fieldname is not None:
                names.append(fieldname)
    return names


# -- shell commands ----------------------------------------------------------------------
# A string command runs with bash. Values are never written into its text: the text starts
# with one assignment per placeholder, VAR='value' (single quotes: nothing inside is special
# to bash, a ' is written '\''), and each placeholder becomes a reference to VAR written for
# the quoting it stands in. The scanner below finds that quoting; whatever it gets wrong can
# only give a wrong value, never run one, because no value is ever in the text it reads.
class TemplateError(ValueError):
    """A shell 'command' whose placeholders cannot be filled exactly and safely."""

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class _Field:
    name: str
    spec: str


# The scanner's states. Commands are parsed in the first two; the "word" states share
# their quoting rules; the others are quotes, comments and here-document bodies.
_BARE, _CMDSUB = "bare", "$("
_PARAM, _ARITH, _DBRACKET, _SUBSCRIPT, _LET = "${", "$((", "[[", "[", "let"
_DQ, _SQ, _ANSI, _COMMENT, _HEREDOC = '"', "'", "$'", "#", "<<"
_COMMANDS = (_BARE, _CMDSUB)
_METACHARS = " \t\n;&|()<>"
# bash evaluates these operands of [[ ]] as arithmetic, where an array subscript in the
# value, a[$(cmd)], runs cmd; -v evaluates a subscript too.
_ARITH_TEST = re.compile(r"(?:^|\s)-(?:eq|ne|lt|le|gt|ge|v)(?:\s|$)")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")

_Item = Union[str, _Field]


@dataclass
class _State:
    kind: str
    start: int                         # index of its first item ("at the start of a word")
    depth: int = 0                     # ( [ or { opened inside it and not closed yet
    text: List[str] = field(default_factory=list)  # characters read directly in it
    in_quotes: bool = False            # ${...} inside "...": a ' in it is a plain character
    delimiter: str = ""                # here-document: the line that ends it
    quoted: bool = False               # here-document: <<'EOF', nothing expands in it
    strip_tabs: bool = False           # here-document: <<-EOF
    line_start: bool = True            # here-document: the next item starts a line


@dataclass
class _Use:
    """One placeholder: the state it stands in, and what may make bash evaluate it as arithmetic."""

    field: _Field
    kind: str
    in_param_arithmetic: bool
    enclosing: List[_State]


class _ShellScanner:
    """Follows bash's quoting through a command template, finding each placeholder's state.

    It knows quotes ('' "" $''), backslashes, $(...), `...`, <(...), ${...}, $((...)), ((...)),
    [[...]], array subscripts, comments and here-documents: the quoting people write in a
    command line. (Unknown to it: case patterns inside $(...); a misread only misquotes.)
    """

    def __init__(self, items: List[_Item], outer: Sequence[_State] = ()) -> None:
        self.items = items
        self.outer = list(outer)  # states around a `...` read by a scanner of its own
        self.stack: List[_State] = [_State(_BARE, 0)]
        self.heredocs: List[_State] = []  # announced by << on the current line, bodies not begun
        self.uses: List[_Use] = []

    def scan(self) -> List[_Use]:
        i = 0
        while i < len(self.items):
            item = self.items[i]
            if isinstance(item, _Field):
                self._use(item)
                i += 1
                continue
            top = self.stack[-1]
            top.text.append(item)
            i = self._step(top, i)
        return self.uses

    # -- looking at the template
    def _char(self, i: int) -> Optional[str]:
        item = self.items[i] if 0 <= i < len(self.items) else None
        return item if isinstance(item, str) else None

    def _at(self, i: int, text: str) -> bool:
        return all(self._char(i + k) == c for k, c in enumerate(text))

    def _word_start(self, top: _State, i: int) -> bool:
        before = self._char(i - 1)
        return i == top.start or (before is not None and before in _METACHARS)

    def _ends_word(self, i: int) -> bool:
        after = self._char(i)
        return i >= len(self.items) or (after is not None and after in _METACHARS)

    def _after_name(self, top: _State, i: int) -> bool:
        """Is items[i] (a '[') right after a variable name: a[...] is an array subscript."""
        k = i
        while True:
            before = self._char(k - 1)
            if before is None or not (before.isascii() and before.isalnum() or before == "_"):
                break
            k -= 1
        first = self._char(k)
        return k < i and first is not None and not first.isdigit() and self._word_start(top, k)

    def _push(self, kind: str, start: int, **extra: Any) -> None:
        self.stack.append(_State(kind, start, **extra))

    # -- one character
    def _step(self, top: _State, i: int) -> int:
        ch = self.items[i]
        if top.kind == _COMMENT:
            if ch == "\n":
                self.stack.pop()
                return i  # the newline also ends the command line: read it again below
            return i + 1
        if top.kind == _SQ:
            if ch == "'":
                self.stack.pop()
            return i + 1
        if top.kind == _ANSI:
            if ch == "\\":
                return self._escape(i)
            if ch == "'":
                self.stack.pop()
            return i + 1
        if top.kind == _HEREDOC:
            return self._heredoc_step(top, i)
        if top.kind == _DQ:
            if ch == '"':
                self.stack.pop()
                return i + 1
            return self._expansion(i, in_quotes=True)
        return self._word_step(top, i)

    def _expansion(self, i: int, in_quotes: bool) -> int:
        ch = self.items[i]
        if ch == "\\":
            return self._escape(i)
        if ch == "`":
            return self._backtick(i)
        if ch == "$":
            return self._dollar(i, in_quotes)
        return i + 1

    def _escape(self, i: int) -> int:
        after = self.items[i + 1] if i + 1 < len(self.items) else None
        if isinstance(after, _Field):
            raise TemplateError(f"placeholder {{{after.name}}} right after a backslash in 'command'",
                                "remove the backslash: gitexp passes the value exactly as it is")
        return i + 2

    def _dollar(self, i: int, in_quotes: bool) -> int:
        after = self.items[i + 1] if i + 1 < len(self.items) else None
        if isinstance(after, _Field):
            raise TemplateError(f"placeholder {{{after.name}}} right after '$' in 'command'",
                                f"write {{{after.name}}} alone (gitexp passes the value), or \\$ for a literal $")
        for opener, kind in (("$((", _ARITH), ("$(", _CMDSUB), ("${", _PARAM), ("$[", _SUBSCRIPT)):
            if self._at(i, opener):
                self._push(kind, i + len(opener), in_quotes=in_quotes)
                return i + len(opener)
        if not in_quotes and self._at(i, "$'"):
            self._push(_ANSI, i + 2)
            return i + 2
        if not in_quotes and self._at(i, '$"'):
            self._push(_DQ, i + 2)
            return i + 2
        return i + 1

    def _backtick(self, i: int) -> int:
        """Read `...` as bash does: up to the next unescaped backquote, then drop the backslash
        before $ ` and itself (and " inside double quotes), and parse that as its own command."""
        in_quotes = self.stack[-1].kind == _DQ
        inner: List[_Item] = []
        j = i + 1
        while j < len(self.items) and self.items[j] != "`":
            if self.items[j] == "\\" and j + 1 < len(self.items):
                self._escape(j)  # refuses a backslash before a placeholder
                after = self.items[j + 1]
                special = isinstance(after, str) and (after in "$`\\" or (in_quotes and after == '"'))
                inner.extend([after] if special else ["\\", after])
                j += 2
            else:
                inner.append(self.items[j])
                j += 1
        self.uses.extend(_ShellScanner(inner, self.outer + self.stack).scan())
        return j + 1

    def _word_step(self, top: _State, i: int) -> int:
        ch = self.items[i]
        if ch == "'" and not (top.kind == _PARAM and top.in_quotes):
            self._push(_SQ, i + 1)
            return i + 1
        if ch == '"':
            self._push(_DQ, i + 1)
            return i + 1
        if isinstance(ch, str) and ch in "\\`$":
            return self._expansion(i, in_quotes=False)
        if top.kind in _COMMANDS:
            return self._command_step(top, i)
        if top.kind == _DBRACKET:
            if self._at(i, "]]") and self._word_start(top, i) and self._ends_word(i + 2):
                self.stack.pop()
                return i + 2
            return i + 1
        if top.kind == _LET:  # its arguments end with the command
            if isinstance(ch, str) and ch in ";&|\n)":
                self.stack.pop()
                return i
            return i + 1
        opener, closer = {_PARAM: ("{", "}"), _ARITH: ("(", ")"), _SUBSCRIPT: ("[", "]")}[top.kind]
        if ch == opener:
            top.depth += 1
        elif ch == closer and top.depth:
            top.depth -= 1
        elif ch == closer:
            self.stack.pop()
            if top.kind == _ARITH and self._char(i + 1) == ")":
                return i + 2
        return i + 1

    def _command_step(self, top: _State, i: int) -> int:
        ch = self.items[i]
        start = self._word_start(top, i)
        if ch == "#" and start:
            self._push(_COMMENT, i + 1)
        elif start and self._at(i, "(("):
            self._push(_ARITH, i + 2)
            return i + 2
        elif start and self._at(i, "[[") and self._ends_word(i + 2):
            self._push(_DBRACKET, i + 2)
            return i + 2
        elif start and self._at(i, "let") and self._ends_word(i + 3):
            self._push(_LET, i + 3)
            return i + 3
        elif self._at(i, "<<<"):
            return i + 3
        elif self._at(i, "<<"):
            return self._heredoc_operator(i)
        elif self._at(i, "<(") or self._at(i, ">("):
            self._push(_CMDSUB, i + 2)
            return i + 2
        elif ch == "(" and top.kind == _CMDSUB:
            top.depth += 1
        elif ch == ")" and top.kind == _CMDSUB:
            if top.depth:
                top.depth -= 1
            else:
                self.stack.pop()
        elif ch == "[" and self._after_name(top, i):
            self._push(_SUBSCRIPT, i + 1)
        elif ch == "\n" and self.heredocs:
            self.stack.append(self.heredocs.pop(0))
        return i + 1

    # -- here-documents
    def _heredoc_operator(self, i: int) -> int:
        """Read ``<<[-] WORD`` and note the body that starts after this line."""
        j = i + 2
        strip_tabs = self._char(j) == "-"
        j += strip_tabs
        while self._char(j) in (" ", "\t"):
            j += 1
        word: List[str] = []
        quoted = False
        while j < len(self.items):
            item = self._delimiter_char(j)
            if item in _METACHARS:
                break
            if item in ("'", '"'):
                quoted, end = True, j + 1
                while end < len(self.items) and self._delimiter_char(end) != item:
                    word.append(self._delimiter_char(end))
                    end += 1
                j = end + 1
            elif item == "\\":
                quoted = True
                word.append(self._delimiter_char(j + 1) if j + 1 < len(self.items) else "")
                j += 2
            else:
                word.append(item)
                j += 1
        if word:
            self.heredocs.append(_State(_HEREDOC, j, delimiter="".join(word), quoted=quoted, strip_tabs=strip_tabs))
        return j

    def _delimiter_char(self, j: int) -> str:
        item = self.items[j]
        if isinstance(item, _Field):
            raise TemplateError(f"placeholder {{{item.name}}} in a here-document delimiter in 'command'",
                                "write the delimiter out, e.g. <<EOF")
        return item

    def _heredoc_step(self, top: _State, i: int) -> int:
        if top.line_start:
            top.line_start = False
            end = i
            while end < len(self.items) and self.items[end] != "\n":
                end += 1
            line = self.items[i:end]
            if all(isinstance(c, str) for c in line):
                text = "".join(line)  # type: ignore[arg-type]
                if (text.lstrip("\t") if top.strip_tabs else text) == top.delimiter:
                    self.stack.pop()
                    if self.heredocs:
                        self.stack.append(self.heredocs.pop(0))
                    return end + 1
        if self.items[i] == "\n":
            top.line_start = True
            return i + 1
        if top.quoted:
            return i + 1
        return self._expansion(i, in_quotes=True)

    # -- a placeholder
    def _use(self, item: _Field) -> None:
        top = self.stack[-1]
        if top.kind == _HEREDOC:
            if top.quoted:
                raise TemplateError(f"placeholder {{{item.name}}} in a quoted here-document "
                                    f"(<<'{top.delimiter}'), where nothing is expanded",
                                    f"write the delimiter unquoted (<<{top.delimiter}) so the value can be passed")
            top.line_start = False
        around = self.outer + self.stack
        in_param = any(s.kind == _PARAM and _param_is_arithmetic("".join(s.text)) for s in around)
        enclosing = [s for s in around if s.kind in (_ARITH, _DBRACKET, _SUBSCRIPT, _LET)]
        self.uses.append(_Use(item, top.kind, in_param, enclosing))


def _param_is_arithmetic(text: str) -> bool:
    """``${a[i]}`` and ``${x:offset}`` evaluate i and offset as arithmetic; ``${x:-word}`` does not."""
    return "[" in text or re.match(r"[^:]*:(?![-=?+])", text) is not None


def _is_arithmetic(use: _Use) -> bool:
    if use.in_param_arithmetic:
        return True
    for state in use.enclosing:
        if state.kind in (_ARITH, _SUBSCRIPT, _LET):
            return True
        if state.kind == _DBRACKET and _ARITH_TEST.search("".join(state.text)):
            return True
    return False


def _reference(kind: str, variable: str) -> str:
    """How the placeholder refers to its variable, in the quoting it stands in."""
    if kind in (_DQ, _HEREDOC, _ARITH):  # no word splitting or globbing there
        return "${%s}" % variable
    if kind == _SQ:  # close the quote, a double-quoted reference, reopen
        return "'\"${%s}\"'" % variable
    if kind == _ANSI:
        return "'\"${%s}\"$'" % variable
    return '"${%s}"' % variable


def _single_quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _variable_name(item: _Field, index: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", item.name)
    return f"GITEXP_P_{name}" if not item.spec and name == item.name else f"GITEXP_P{index}_{name}"


def _template_items(template: str) -> List[_Item]:
    items: List[_Item] = []
    for literal, fieldname, spec, _conv in string.Formatter().parse(template):
        items.extend(literal)
        if fieldname is not None:
            items.append(_Field(fieldname, spec or ""))
    return items


def render_shell(template: str, values: Mapping[str, Any]) -> str:
    """A bash script running ``template`` with each placeholder's exact value (see above)."""
    items = _template_items(template)
    uses = _ShellScanner(items).scan()
    variables: Dict[Tuple[str, str], str] = {}
    assignments: List[str] = []
    references: List[str] = []
    for use in uses:
        key = (use.field.name, use.field.spec)
        text = _format_value(values[use.field.name], use.field.spec)
        _check_value(use, text)
        if key not in variables:
            variables[key] = _variable_name(use.field, len(variables))
            assignments.append(f"{variables[key]}={_single_quoted(text)}\n")
        references.append(_reference(use.kind, variables[key]))
    filled = iter(references)
    return "".join(assignments) + "".join(item if isinstance(item, str) else next(filled) for item in items)


def _check_value(use: _Use, text: str) -> None:
    if "\0" in text:
        raise TemplateError(f"the value of {{{use.field.name}}} contains a NUL character, "
                            "which no command line can hold", "remove it from the value")
    if _is_arithmetic(use) and not _PLAIN_NUMBER.fullmatch(text):
        raise TemplateError(
            f"placeholder {{{use.field.name}}} stands where bash evaluates arithmetic "
            f"($(( )), (( )), let, [[ -eq ]], a[i], ${{x:i}}), so its value must be a plain number, got {text!r}",
            "bash runs any $(...) in an array subscript of such a value; pass strings outside arithmetic")


# -- loading ------------------------------------------------------------------------------
def _key_lines(node: yaml.Node, prefix: str = "") -> Dict[str, int]:
    """Map 'a.b' key paths to 1-based line numbers, from the composed YAML node tree."""
    lines: Dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key + "."))
    elif isinstance(node, yaml.SequenceNode) and prefix:  # list items: 'files.0', 'files.1', ...
        for index, item in enumerate(node.value):
            lines.setdefault(f"{prefix}{index}", item.start_mark.line + 1)
    return lines


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
    lines = _key_lines(node) if node is not None else {}
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
            source=self.source, lines=self.lines,
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
                raise self.fail("command", f"bad placeholder in 'command': {exc}", "write {param}, or {{ for a brace") from exc
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
                    raise self.fail(f"{key}.regex", f"regex of metric '{name}' does not compile: {exc}") from exc
                if compiled.groups < 1:
                    raise self.fail(f"{key}.regex", f"regex of metric '{name}' needs a group capturing the value",
                                    "e.g. 'val_err=([0-9.]+)'")
            if regex is not None and spec.get("file") is not None:
                raise self.fail(key, f"metric '{name}' has both 'regex' and 'file'", "pick one source")
            for text_key in ("file", "key"):
                if spec.get(text_key) is not None and not isinstance(spec[text_key], str):
                    raise self.fail(f"{key}.{text_key}", f"{text_key} of metric '{name}' must be a string")
            step, step_regex = self.metric_step(spec, f"{key}.step", f"of metric '{name}'")
            if step and regex is None:
                raise self.fail(f"{key}.step", f"'step' of metric '{name}' applies to regex metrics only",
                                "gitexp.log and metrics files give their own steps")
            out[str(name)] = MetricSpec(str(name), goal, regex, spec.get("file"), spec.get("key"), step, step_regex)
        # The top-level 'step' is where the steps of every regex metric without its own come from.
        default, default_regex = self.metric_step(data, "step", "(top-level)")
        if default:
            if not any(spec.regex for spec in out.values()):
                raise self.fail("step", "the top-level 'step' says where regex metrics' steps come from, "
                                "but no metric has a 'regex'", "remove it, or give a metric a regex")
            for spec in out.values():
                if spec.regex and not spec.step:
                    spec.step, spec.step_regex = default, default_regex
        return out

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
            if not os.path.isabs(path) and _leaves_tree(path):
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


def _leaves_tree(path: str) -> bool:
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
    return value
