"""Notifications against a real SMTP server (aiosmtpd on loopback) and a real local HTTP server."""
from __future__ import annotations

import email
import email.policy
import http.server
import json
import socket
import textwrap
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import all_refs, git, gitexp, make_repo, wait_for

aiosmtpd = pytest.importorskip("aiosmtpd.controller")

TRAIN = textwrap.dedent('''
    import sys, gitexp
    mode = sys.argv[1]
    for step in range(1, 31):
        loss = 1.0 / step
        if mode == "nan" and step == 12:
            loss = float("nan")
        gitexp.log(step=step, loss=loss, val_acc=1 - 0.5 / step)
    if mode == "crash":
        def load_batch(i):
            raise ValueError(f"corrupt shard {i}")
        print("about to read shard 7", flush=True)
        load_batch(7)
''')


def config(mode: str, notify: str, extra: str = "") -> str:
    return textwrap.dedent(f'''
        name: n-{mode}
        command: python train.py {mode}
        metrics:
          loss: {{goal: minimize}}
          val_acc: {{goal: maximize}}
    ''') + notify + extra


class Inbox:
    def __init__(self) -> None:
        self.messages: List[Dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append({"to": list(envelope.rcpt_tos), "from": envelope.mail_from,
                              "message": email.message_from_bytes(envelope.content, policy=email.policy.default)})
        return "250 OK"

    def subjects(self) -> List[str]:
        return [str(m["message"]["Subject"]) for m in self.messages]

    def find(self, word: str) -> Any:
        return next(m for m in self.messages if word in str(m["message"]["Subject"]))


@pytest.fixture
def smtp() -> Iterator[Any]:
    inbox = Inbox()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    inbox.port = controller.port  # type: ignore[attr-defined]
    try:
        yield inbox
    finally:
        controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hook() -> Iterator[Any]:
    received: List[Dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "type": self.headers["Content-Type"], "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()


def smtp_repo(tmp_path: Path, port: int, files: Dict[str, str]) -> Path:
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN, **files})
    git(repo, "config", "exp.smtp.host", "127.0.0.1")
    git(repo, "config", "exp.smtp.port", str(port))
    git(repo, "config", "exp.smtp.from", "gitexp@lab.example.org")
    return repo


EMAIL = "notify:\n  email: {to: [ada@example.org, bob@example.org], on: [started, finished, failed, alert]}\n"


def test_finished_run_mails_the_results_table_and_the_curve_as_png(tmp_path: Path, smtp: Any) -> None:
    repo = smtp_repo(tmp_path, smtp.port, {"c.yaml": config("ok", EMAIL)})
    gitexp(repo, "run", "c.yaml")
    wait_for(lambda: len(smtp.messages) >= 2, timeout=20)
    assert sorted(smtp.subjects()) == ["[gitexp] n-ok: finished", "[gitexp] n-ok: started"]
    mail = smtp.find("finished")
    assert sorted(mail["to"]) == ["ada@example.org", "bob@example.org"]
    assert mail["from"] == "gitexp@lab.example.org"
    body = mail["message"].get_body(("plain",)).get_content()
    table = body[body.index("Results:"):]
    assert "metric" in table and "best" in table
    assert "loss" in table and "0.0333333" in table and "val_acc" in table and "0.983333" in table
    [png] = [part for part in mail["message"].iter_attachments() if part.get_content_type() == "image/png"]
    assert png.get_content()[:8] == b"\x89PNG\r\n\x1a\n" and png.get_filename() == "curve.png"
    shown = gitexp(repo, "show", "n-ok").stdout
    assert "notifications: 2 sent" in shown


def test_crash_report_carries_the_exit_code_the_traceback_and_the_log_tail(tmp_path: Path, smtp: Any) -> None:
    repo = smtp_repo(tmp_path, smtp.port, {"c.yaml": config("crash", EMAIL)})
    gitexp(repo, "run", "c.yaml", check=False)
    wait_for(lambda: any("failed" in s for s in smtp.subjects()), timeout=20)
    body = smtp.find("failed")["message"].get_body(("plain",)).get_content()
    assert "Crash report: exit code 1" in body
    trace = body[body.index("Traceback:"):]
    assert "Traceback (most recent call last):" in trace and "in load_batch" in trace
    assert "ValueError: corrupt shard 7" in trace
    assert "about to read shard 7" in body[body.index("Last lines of output:"):]


def test_alert_mail_names_the_rule_and_is_sent_once(tmp_path: Path, smtp: Any) -> None:
    notify = "notify:\n  email: {to: [ada@example.org], on: [alert]}\n"
    repo = smtp_repo(tmp_path, smtp.port, {"c.yaml": config("nan", notify, "diagnostics: {nan: warn}\n")})
    gitexp(repo, "run", "c.yaml")
    wait_for(lambda: smtp.messages, timeout=20)
    assert smtp.subjects() == ["[gitexp] n-nan: alert (nan)"]
    body = smtp.messages[0]["message"].get_body(("plain",)).get_content()
    assert "loss became NaN at step 12" in body


def test_templates_fill_the_runs_fields(tmp_path: Path, smtp: Any) -> None:
    notify = ("notify:\n  email:\n    to: [ada@example.org]\n    on: [finished]\n"
              "    subject: 'done: {name} {status} on {host}'\n    body: \"results\\n{results}\\nid {short}\"\n")
    repo = smtp_repo(tmp_path, smtp.port, {"c.yaml": config("ok", notify)})
    gitexp(repo, "run", "c.yaml")
    wait_for(lambda: smtp.messages, timeout=20)
    assert smtp.subjects() == [f"done: n-ok finished on {socket.gethostname()}"]
    body = smtp.messages[0]["message"].get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("results\nmetric") and "val_acc" in body and "\nid " in body


def test_webhook_gets_json_posts_for_alert_and_end(tmp_path: Path, hook: Any) -> None:
    port, received = hook
    notify = f"notify:\n  webhook: {{url: 'http://127.0.0.1:{port}/hooks/abc', on: [alert, finished]}}\n"
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN, "c.yaml": config("nan", notify,
                                                                             "diagnostics: {nan: warn}\n")})
    gitexp(repo, "run", "c.yaml")
    wait_for(lambda: len(received) >= 2, timeout=20)
    assert [r["json"]["event"] for r in received] == ["alert", "finished"]
    assert {r["path"] for r in received} == {"/hooks/abc"} and received[0]["type"] == "application/json"
    alert = received[0]["json"]
    assert alert["alert"]["rule"] == "nan" and "loss became NaN" in alert["text"]  # Slack/Mattermost read text
    assert received[1]["json"]["experiment"]["status"] == "finished"
    assert received[1]["json"]["metrics"]["loss"]["count"] == 30


def test_a_dead_mail_server_never_fails_the_run_and_the_error_is_shown(tmp_path: Path) -> None:
    repo = smtp_repo(tmp_path, _free_port(), {"c.yaml": config("ok", EMAIL)})  # nothing listens there
    gitexp(repo, "run", "c.yaml")
    summary = json.loads(git(repo, "notes", "--ref=exps", "show", "refs/exps/n-ok"))
    assert summary["status"] == "finished"
    assert summary["notify"]["failed"] >= 1 and "ConnectionRefusedError" in summary["notify"]["error"]
    assert "failed: email to ada@example.org" in gitexp(repo, "show", "n-ok").stdout


def test_the_same_alert_is_sent_once_per_interval() -> None:
    from gitexp import notify

    spec = notify.NotifySpec([notify.Channel("webhook", ["alert"], url="http://127.0.0.1:9/x")], interval=600)
    notifier = notify.Notifier("a" * 40, spec, None)
    sent: List[str] = []
    notifier.send = lambda event, summary, alert=None: sent.append(alert["message"])  # type: ignore[method-assign]
    for now in (1000.0, 1100.0, 1700.0):
        notifier.alert({"rule": "ram", "gpu": None, "message": f"ram at {now}"}, now)
    notifier.alert({"rule": "nan", "metric": "loss", "message": "nan"}, 1100.0)
    assert sent == ["ram at 1000.0", "ram at 1700.0", "nan"]


@pytest.mark.parametrize("section, message", [
    ("notify:\n  email: {to: [a@b.org], on: [finshed]}\n", "unknown event 'finshed' in notify.email.on"),
    ("notify:\n  email: {on: [failed]}\n", "'notify.email' needs 'to'"),
    ("notify:\n  pager: {to: x}\n", "unknown key 'notify.pager'"),
    ("notify:\n  webhook: {url: 'ftp://x', on: [failed]}\n", "must be an http:// or https:// URL"),
    ("notify:\n  email: {to: [a@b.org], subject: 'run {nme}'}\n", "unknown field {nme}"),
    ("notify:\n  email: {to: [a@b.org]}\n  interval: soon\n", "notify.interval"),
])
def test_bad_notify_sections_are_one_line_exit_2_nothing_written(tmp_path: Path, section: str, message: str) -> None:
    repo = smtp_repo(tmp_path, 2525, {"c.yaml": config("ok", section)})
    before = all_refs(repo)
    proc = gitexp(repo, "run", "c.yaml", check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and proc.stderr.startswith("error: c.yaml:")
    assert all_refs(repo) == before


def test_email_without_an_smtp_host_is_refused_at_config_load(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN, "c.yaml": config("ok", EMAIL)})
    before = all_refs(repo)
    proc = gitexp(repo, "run", "c.yaml", check=False)
    assert proc.returncode == 2
    assert "no SMTP server configured (git config exp.smtp.host" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # the error and its hint
    assert all_refs(repo) == before
    git(repo, "config", "exp.smtp.security", "tls")
    git(repo, "config", "exp.smtp.host", "127.0.0.1")
    proc = gitexp(repo, "run", "c.yaml", check=False)
    assert proc.returncode == 2 and "exp.smtp.security is 'tls'; use none, starttls or ssl" in proc.stderr
