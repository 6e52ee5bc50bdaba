"""Shell completion: what ``git exp <TAB>`` offers, from the commands and from the repository.

The shell scripts (``gitexp/completion/git-exp.{bash,zsh,fish}``, printed by ``git exp completion
SHELL``) call ``git exp _complete WORD_INDEX -- WORDS...`` with the words after ``git exp``, and
print the lines it answers. Subcommands and options come from the click commands themselves;
arguments from the repository: experiment names and id prefixes (one ``for-each-ref``), run
targets, param names after ``-p``, metric and group names (the summary notes, one batch read).
``__files__`` asks the shell to complete file names.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import click

FILES = "__files__"
NEWEST = 200  # summaries read for param, metric and group names
SHELLS = ("bash", "zsh", "fish")
ID_OPTIONS = {"--against", "--base"}
TARGET_OPTIONS = {"--on"}
PARAM_OPTIONS = {"-p", "--param", "--over"}
METRIC_OPTIONS = {"-m", "--metric", "--sort", "-s"}
GROUP_OPTIONS = {"--group", "-g"}
FILE_OPTIONS = {"-o", "--output", "--config", "--sweep-file", "--checkpoint", "--ssh-config", "--install-dir",
                "--lock", "--path"}


def script(shell: str) -> str:
    """The completion script for ``shell`` (shipped as package data)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "completion")
    with open(os.path.join(folder, f"git-exp.{shell}"), encoding="utf-8") as handle:
        return handle.read()


def _command(words: Sequence[str]) -> Optional[click.Command]:
    from .cli import cli

    ctx = click.Context(cli)
    return cli.get_command(ctx, words[0]) if words else None


def _walk(command: click.Command, words: Sequence[str]) -> click.Command:
    """The (sub)command that ``words`` (after the first) lead to: ``queue retry`` is queue's retry."""
    for word in words:
        if isinstance(command, click.Group) and not word.startswith("-"):
            sub = command.get_command(click.Context(command), word)
            if sub is None:
                break
            command = sub
    return command


def _options(command: click.Command) -> Dict[str, click.Option]:
    out: Dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in [*param.opts, *param.secondary_opts]:
                out[opt] = param
    out.setdefault("--help", click.Option(["--help"], is_flag=True))
    return out


class Repository:
    """What completion reads from the repository, each read at most once."""

    def __init__(self) -> None:
        from .repo import Repo

        try:
            self.repo: Optional[Any] = Repo.discover(os.getcwd())
        except Exception:  # noqa: BLE001 - outside a repository: nothing to offer from it
            self.repo = None
        self._summaries: Optional[List[Dict[str, Any]]] = None

    def experiments(self, cur: str) -> List[str]:
        from .notes import EXP_PREFIX

        if self.repo is None:
            return []
        refs = self.repo.refs(EXP_PREFIX)
        names = [ref[len(EXP_PREFIX):] for ref in refs]
        out = [n for n in names if n.startswith(cur)]
        if len(cur) >= 1 and all(c in "0123456789abcdef" for c in cur.lower()):
            out += sorted({sha[:max(8, len(cur))] for sha in refs.values() if sha.startswith(cur.lower())})
        return sorted(set(out))

    def targets(self) -> List[str]:
        if self.repo is None:
            return []
        from .targets import load_targets_leniently

        try:
            return sorted(load_targets_leniently(self.repo)[0])
        except Exception:  # noqa: BLE001 - a broken .gitexp.yaml completes nothing
            return []

    def summaries(self) -> List[Dict[str, Any]]:
        """The summaries of the newest experiments (param and metric names repeat across a
        sweep: reading the newest NEWEST keeps a TAB fast in a repository of 10,000)."""
        if self._summaries is None:
            self._summaries = []
            if self.repo is not None:
                from .notes import EXP_PREFIX, Store

                proc = self.repo.run(["for-each-ref", "--sort=-creatordate", f"--count={NEWEST}",
                                      "--format=%(objectname)", EXP_PREFIX], check=False)
                shas = proc.stdout.decode().split()
                notes = Store(self.repo).read_notes_json(shas) if shas else {}
                self._summaries = [v for v in notes.values() if isinstance(v, dict)]
        return self._summaries

    def keys(self, field: str) -> List[str]:
        found: Dict[str, None] = {}
        for summary in self.summaries():
            value = summary.get(field)
            if isinstance(value, dict):
                found.update(dict.fromkeys(str(k) for k in value))
        return sorted(found)

    def groups(self) -> List[str]:
        return sorted({str(s["group"]) for s in self.summaries() if s.get("group")})

    def params_of(self, config_path: str) -> List[str]:
        """Param names of a config file named on the command line (``run c.yaml -p <TAB>``)."""
        try:
            from .yamlsafe import load_yaml

            with open(config_path, encoding="utf-8") as handle:
                data = load_yaml(handle.read())
        except Exception:  # noqa: BLE001 - not a readable config: fall back to the notes
            return []
        params = data.get("params") if isinstance(data, dict) else None
        return sorted(str(k) for k in params) if isinstance(params, dict) else []


# What the positional arguments of the common commands are: answered without importing the
# command's module (a TAB must cost little more than the interpreter's start). Anything else
# is read from the click command itself.
POSITIONAL = {"show": "ID", "logs": "ID", "metrics": "ID", "rm": "ID", "cancel": "ID", "resume": "ID",
              "branch": "ID", "diff": "ID", "apply": "ID", "compare": "ID", "report": "ID", "run": "CONFIG",
              "pull": "REMOTE", "push": "REMOTE", "plot": "METRIC"}
GROUPS = {"queue", "remote", "hooks"}


def candidates(words: Sequence[str], index: int) -> List[str]:
    """What to offer for word ``index`` of ``words`` (the words after ``git exp``)."""
    words = list(words) + [""] * (index + 1 - len(words))
    cur, prev = words[index], words[index - 1] if index else ""
    if index == 0:
        from .cli import COMMANDS

        return [name for name in [*COMMANDS, "completion"] if not name.startswith("_") and name.startswith(cur)]
    if words[0] == "completion":
        return [s for s in SHELLS if s.startswith(cur)] if index == 1 else []
    repo = Repository()
    known = TARGET_OPTIONS | PARAM_OPTIONS | METRIC_OPTIONS | GROUP_OPTIONS | ID_OPTIONS | FILE_OPTIONS
    if prev in known and prev not in ("--format",):
        return _option_values(prev, None, cur, words, repo)
    kind = POSITIONAL.get(words[0])
    if kind and not cur.startswith("-") and not (prev.startswith("-") and prev != "--"):
        return _by_kind(kind, cur, repo)
    top = _command(words)
    if top is None:
        return []
    command = _walk(top, words[1:index])
    options = _options(command)
    if prev in options and not options[prev].is_flag and options[prev].nargs == 1 and not options[prev].count:
        return _option_values(prev, options[prev], cur, words, repo)
    if cur.startswith("-"):
        return sorted(o for o in options if o.startswith(cur))
    if isinstance(command, click.Group):
        return sorted(n for n in command.list_commands(click.Context(command)) if n.startswith(cur))
    return _arguments(command, cur, repo)


def _option_values(opt: str, option: Optional[click.Option], cur: str, words: Sequence[str],
                   repo: Repository) -> List[str]:
    if option is not None and isinstance(option.type, click.Choice):
        return [str(c) for c in option.type.choices if str(c).startswith(cur)]
    if opt in TARGET_OPTIONS:
        return [t for t in repo.targets() if t.startswith(cur)]
    if opt in PARAM_OPTIONS:
        configs = [w for w in words[1:] if w.endswith((".yaml", ".yml")) and os.path.isfile(w)]
        names = repo.params_of(configs[0]) if configs else []
        names = names or repo.keys("params")
        suffix = "" if opt == "--over" else "="
        return [n + suffix for n in names if (n + suffix).startswith(cur)]
    if opt in METRIC_OPTIONS:
        return [m for m in repo.keys("metrics") if m.startswith(cur.lstrip("-"))]
    if opt in GROUP_OPTIONS:
        return [g for g in repo.groups() if g.startswith(cur)]
    if opt in ID_OPTIONS:
        return repo.experiments(cur)
    if opt in FILE_OPTIONS:
        return [FILES]
    return []


def _arguments(command: click.Command, cur: str, repo: Repository) -> List[str]:
    args = [p for p in command.params if isinstance(p, click.Argument)]
    if not args:
        return []
    first = args[0]
    return _by_kind(f"{first.metavar or ''} {first.name or ''}".upper(), cur, repo)


def _by_kind(label: str, cur: str, repo: Repository) -> List[str]:
    if "CONFIG" in label:
        return [FILES]
    if "REMOTE" in label:
        from .sync import git_remotes

        names = list(git_remotes(repo.repo)) if repo.repo is not None else []
        return sorted(n for n in {*names, *repo.targets()} if n.startswith(cur))
    if "METRIC" in label:
        return [m for m in repo.keys("metrics") if m.startswith(cur)] + repo.experiments(cur)
    if "NAME" in label:
        return [t for t in repo.targets() if t.startswith(cur)]
    if "ID" in label:
        return repo.experiments(cur)
    return []
