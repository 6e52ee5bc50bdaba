"""``git exp ui``: the live web dashboard of the repository's experiments (gitexp/ui, docs/ui.md)."""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from typing import Any, List, Optional, Tuple

import click

from ..errors import BadInput
from ..repo import Repo

LOOPBACK = ("127.0.0.1", "::1", "localhost")
EXIT_ON_EOF = "GITEXP_UI_EXIT_ON_EOF"
URL_RE = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_\-]+)")


@click.command(name="ui")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets others on the network read your experiments.")
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in the default browser.")
@click.option("--allow-actions", is_flag=True,
              help="Allow cancel, resume and queue retry from the page (each needs the token in the printed URL).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST[:PORT]",
              help="Also accept requests for this Host header (a name the server is reached by; repeatable).")
@click.option("--on", "target", metavar="TARGET",
              help="Start it on this ssh run target and forward its port here through the shared ssh connection.")
@click.option("--refresh-targets", "far_interval", type=click.FloatRange(min=0), default=10.0, show_default=True,
              metavar="SECONDS", help="Ask run targets on other hosts for their runs' status this often "
              "(one round trip per target, as queue --on; 0: never, show the recorded status).")
@click.option("--verbose", "-v", is_flag=True, help="Log every request to stderr.")
def ui(port: int, host: str, open_browser: bool, allow_actions: bool, allow_hosts: Tuple[str, ...],
       target: Optional[str], verbose: bool, far_interval: float = 10.0) -> None:
    """A live web dashboard of the experiments: table, curves, runs, queue, hosts (read-only by default)."""
    repo = Repo.discover(".")
    if target:
        _serve_on(repo, target, allow_actions, open_browser)
        return
    from ..ui.server import make_server

    server = make_server(repo, host, port, allow_actions, allow_hosts, quiet=not verbose, far_interval=far_interval)
    if host not in LOOPBACK:
        click.echo(f"git exp ui: warning: listening on {host}: anyone who can reach this port can read "
                   "every experiment here (use 127.0.0.1 and ssh -L to reach it from elsewhere)", err=True)
    count = len(server.api.listing().exps)  # read once before saying it is ready
    url = server.url()
    click.echo(f"git exp ui: {count} experiments of {repo.root}", err=True)
    click.echo(f"git exp ui: {'actions allowed (with the token)' if allow_actions else 'read-only'}; Ctrl-C stops it",
               err=True)
    click.echo(url)
    sys.stdout.flush()
    if os.environ.get(EXIT_ON_EOF) == "1":  # started by --on: the ssh session's end stops it
        threading.Thread(target=_stop_at_eof, args=(server,), daemon=True).start()
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _stop_at_eof(server: Any) -> None:
    while sys.stdin.buffer.read(4096):
        pass
    server.shutdown()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_on(repo: Repo, name: str, allow_actions: bool, open_browser: bool) -> None:
    """``git exp ui`` on an ssh target's repository, its port forwarded over the shared master."""
    from ..notes import Store
    from ..runners import far_runner
    from ..targets import get_target
    from ..ssh_transport import SshTransport, remote_command
    from ..transport import TransportError

    runner = far_runner(repo, Store(repo), get_target(repo, name), "--on takes an ssh run target (git exp remote)")
    transport = runner.transport
    assert isinstance(transport, SshTransport)
    try:
        transport.connect()
    except TransportError as exc:
        raise BadInput(str(exc)) from None
    local = _free_port()
    argv = [runner.python, "-m", "gitexp", "ui", "--port", "0", "--allow-host", f"127.0.0.1:{local}"]
    if allow_actions:
        argv.append("--allow-actions")
    ssh, *options = shlex.split(transport.git_ssh_command())  # the transport's ssh: the shared master
    far = subprocess.Popen([ssh, *options, "--", runner.host, remote_command(argv, runner.path, {EXIT_ON_EOF: "1"})],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert far.stdout is not None and far.stderr is not None
    line = far.stdout.readline()
    found = URL_RE.search(line)
    if not found:
        far.kill()
        message = " ".join((far.stderr.read() or line).split())[-500:]
        raise BadInput(f"git exp ui did not start on {name}: {message or 'no answer'}",
                       f"try it there: ssh {runner.host} and run git exp ui in {runner.path}")
    remote_port, token = found.groups()
    # -O forward through the master: ClearAllForwardings (in the transport's options, against a
    # LocalForward of the user's config) would drop this very forward, so it is left out here.
    forward_opts = _without_option(options, "ClearAllForwardings=yes")
    spec = f"127.0.0.1:{local}:127.0.0.1:{remote_port}"
    proc = subprocess.run([ssh, *forward_opts, "-O", "forward", "-L", spec, "--", runner.host],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode != 0:
        far.kill()
        raise BadInput(f"cannot forward port {local} to {name}: {' '.join(proc.stderr.split())}",
                       f"forward it yourself: ssh -N -L {local}:127.0.0.1:{remote_port} {runner.host}")
    url = f"http://127.0.0.1:{local}/?token={token}"
    click.echo(f"git exp ui: running on {name} ({runner.host}:{runner.path}), port {remote_port} there, "
               f"forwarded to {local} here; Ctrl-C stops it", err=True)
    click.echo(url)
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        for text in far.stderr:
            click.echo(f"{name}: {text.rstrip()}", err=True)
        far.wait()
    except KeyboardInterrupt:
        pass
    finally:
        subprocess.run([ssh, *forward_opts, "-O", "cancel", "-L", spec, "--", runner.host],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        if far.poll() is None:
            assert far.stdin is not None
            far.stdin.close()  # the far side sees its stdin end and stops
            try:
                far.wait(timeout=10)
            except subprocess.TimeoutExpired:
                far.kill()


def _without_option(options: List[str], value: str) -> List[str]:
    """ssh's options without ``-o value``."""
    out: List[str] = []
    i = 0
    while i < len(options):
        if options[i] == "-o" and i + 1 < len(options) and options[i + 1] == value:
            i += 2
            continue
        out.append(options[i])
        i += 1
    return out
