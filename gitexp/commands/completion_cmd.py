"""``git exp completion SHELL`` prints a completion script; ``git exp _complete`` answers it."""
from __future__ import annotations

from typing import Tuple

import click

from .. import completion as core


@click.command(name="completion")
@click.argument("shell", type=click.Choice(core.SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh, fish).

    bash: `source <(git exp completion bash)` in ~/.bashrc (pip installs it where
    bash-completion finds it: <prefix>/share/bash-completion/completions/git-exp);
    zsh: `source <(git exp completion zsh)`; fish: `git exp completion fish | source`.
    """
    click.echo(core.script(shell), nl=False)


@click.command(name="_complete", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("index", type=int)
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def complete_(index: int, words: Tuple[str, ...]) -> None:
    """What to offer for word INDEX of WORDS (the words after `git exp`), one per line."""
    for line in core.candidates(list(words), index):
        click.echo(line)
