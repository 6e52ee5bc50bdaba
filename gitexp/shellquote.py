"""Shell quoting for a config's ``command``: how each ``{placeholder}`` reaches the program exactly.

A list command is an argv: each placeholder is replaced by its value (:func:`substitute`).

A string command runs with bash, and its text never contains a value. The rendered script
(:func:`render_shell`) starts with one assignment per placeholder, ``GITEXP_P_lr='0.1'``
(single quotes: nothing inside is special to bash, a ``'`` is written ``'\\''``), and each
placeholder becomes a reference to that variable written for the quoting it stands in
(``"${GITEXP_P_lr}"`` bare, ``${GITEXP_P_lr}`` inside double quotes, and so on). The program
gets every value exactly, and the shell never parses one as code.

:class:`_ShellScanner` follows bash's quoting through the template to find that quoting.
Invariant: whatever the scanner gets wrong can only give a wrong value, never run one,
because no value is ever in the text it reads. Where bash evaluates a value as arithmetic
(``$(( ))``, ``(( ))``, ``let``, ``[[ -eq ]]``, ``a[i]``, ``${x:i}``), an array subscript in
it would run a command, so there the value must be a plain number.
Placeholders that cannot be filled exactly and safely raise :class:`TemplateError` (with a
hint); the config layer turns that into bad input.

It depends on the standard library only.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union


class TemplateError(ValueError):
    """A shell 'command' whose placeholders cannot be filled exactly and safely."""

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.hint = hint


def placeholders(command: Union[str, List[str]]) -> List[str]:
    """The names of the placeholders in a command (a string or an argv), in order."""
    parts = command if isinstance(command, list) else [command]
    names = []
    for part in parts:
        for _lit, fieldname, _spec, _conv in string.Formatter().parse(part):
            if fieldname is not None:
                names.append(fieldname)
    return names


def format_value(value: Any, spec: str) -> str:
    """A param's text: true/false for booleans, nothing for null, else ``format(value, spec)``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return format(value, spec) if spec else str(value)


def substitute(template: str, values: Mapping[str, Any]) -> str:
    """One argv item with its placeholders replaced by their values."""
    out = []
    for literal, fieldname, spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        if fieldname is not None:
            out.append(format_value(values[fieldname], spec or ""))
    text = "".join(out)
    if "\0" in text:
        raise TemplateError("a value in 'command' contains a NUL character, which no argument can hold",
                            "remove it from the value")
    return text


# -- shell commands (see the module docstring) ---------------------------------------------
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
        text = format_value(values[use.field.name], use.field.spec)
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
