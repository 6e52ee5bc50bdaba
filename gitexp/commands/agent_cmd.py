"""``git exp _agent <op>``: the far side of an ssh run target (hidden; see gitexp/runners/agent.py).

Reads one JSON request on stdin, prints one JSON answer on stdout; errors are ``error: ...``
on stderr with gitexp's exit codes, as for any command.
"""
from __future__ import annotations

import json
import sys

import click

from ..errors import BadInput
from ..runners import agent as far
from .common import json_text, open_store

OPS = ("probe", "submit", "drop", "queue", "cancel", "top")


@click.command(name="_agent", hidden=True)
@click.argument("op", type=click.Choice(OPS))
def agent(op: str) -> None:
    """Answer one request of a gitexp on another machine (JSON on stdin and stdout)."""
    if op == "probe":
        answer = far.probe()
    else:
        try:
            request = json.loads(sys.stdin.read() or "{}")
        except ValueError as exc:
            raise BadInput(f"_agent {op}: the request is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise BadInput(f"_agent {op}: the request is not a JSON object")
        if op == "top":  # git exp top --on: the runs in progress here (gitexp/commands/monitor_cmd.py)
            from .monitor_cmd import far_top

            click.echo(json_text(far_top(request), indent=None))
            return
        repo, store = open_store()
        answer = {"submit": far.submit, "drop": far.drop, "queue": far.queue, "cancel": far.cancel}[op](
            repo, store, request)
    click.echo(json_text(answer, indent=None))
