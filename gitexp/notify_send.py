"""How notifications leave: SMTP (settings from git config ``exp.smtp.*`` and ``GITEXP_SMTP_*``),
webhook POSTs, and the outbox that sends them in a thread of its own, so a slow or failing
server never holds up or fails a run."""
from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

SECURITY = ("none", "starttls", "ssl")
SMTP_KEYS = ("host", "port", "user", "from", "security", "passwordFile")
TIMEOUT = 15.0  # seconds for one SMTP session or webhook POST
FLUSH_SECONDS = 10.0  # the most a run's end waits for its messages (GITEXP_NOTIFY_WAIT)


@dataclass
class SmtpSettings:
    host: Optional[str] = None
    port: Optional[int] = None
    user: Optional[str] = None
    sender: Optional[str] = None
    security: str = "none"
    password_file: Optional[str] = None
    bad: Optional[str] = None

    def problem(self) -> Optional[str]:
        if self.bad:
            return self.bad
        if not self.host:
            return "no SMTP server configured (git config exp.smtp.host, or GITEXP_SMTP_HOST)"
        return None

    def password(self) -> Optional[str]:
        if os.environ.get("GITEXP_SMTP_PASSWORD"):
            return os.environ["GITEXP_SMTP_PASSWORD"]
        if self.password_file:
            with open(os.path.expanduser(self.password_file), encoding="utf-8") as handle:
                return handle.read().strip()
        return None


def smtp_settings(cwd: str = ".") -> SmtpSettings:
    """git config ``exp.smtp.*`` (read with the git binary) with ``GITEXP_SMTP_*`` over it."""
    import subprocess

    found: Dict[str, str] = {}
    try:
        proc = subprocess.run(["git", "config", "--get-regexp", r"^exp\.smtp\."], cwd=cwd, capture_output=True,
                              text=True, timeout=10, stdin=subprocess.DEVNULL)
        for line in proc.stdout.splitlines():
            name, _, value = line.partition(" ")
            found[name[len("exp.smtp."):].lower()] = value
    except (OSError, subprocess.SubprocessError):
        pass
    for key in SMTP_KEYS:
        env = os.environ.get(f"GITEXP_SMTP_{key.upper()}")
        if env:
            found[key.lower()] = env
    settings = SmtpSettings(host=found.get("host") or None, user=found.get("user") or None,
                            sender=found.get("from") or None, password_file=found.get("passwordfile") or None)
    security = (found.get("security") or "none").lower()
    if security not in SECURITY:
        settings.bad = f"exp.smtp.security is {security!r}; use none, starttls or ssl"
    settings.security = security
    port = found.get("port")
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            settings.bad = f"exp.smtp.port is {port!r}, not a port number"
        else:
            settings.port = int(port)
    return settings


def send_email(settings: SmtpSettings, to: Sequence[str], subject: str, body: str, png: Optional[bytes]) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage

    problem = settings.problem()
    if problem:
        raise OSError(problem)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.sender or settings.user or f"gitexp@{socket.getfqdn()}"
    message["To"] = ", ".join(to)
    message.set_content(body)
    if png:
        message.add_attachment(png, maintype="image", subtype="png", filename="curve.png")
    port = settings.port or (465 if settings.security == "ssl" else 25)
    assert settings.host is not None
    server: smtplib.SMTP
    if settings.security == "ssl":
        server = smtplib.SMTP_SSL(settings.host, port, timeout=TIMEOUT, context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(settings.host, port, timeout=TIMEOUT)
    with server:
        if settings.security == "starttls":
            server.starttls(context=ssl.create_default_context())
        password = settings.password()
        if settings.user and password:
            server.login(settings.user, password)
        server.send_message(message)


def send_webhook(url: str, payload: Mapping[str, Any]) -> None:
    import urllib.request

    data = json.dumps(payload, default=str, allow_nan=False).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "gitexp"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - the user's own URL
        response.read(1024)


def wait_setting() -> float:
    """Seconds a run's end waits for its messages: ``GITEXP_NOTIFY_WAIT`` (default 10)."""
    try:
        value = float(os.environ.get("GITEXP_NOTIFY_WAIT", FLUSH_SECONDS))
    except ValueError:
        return FLUSH_SECONDS
    return value if 0 <= value < 3600 else FLUSH_SECONDS


class Outbox:
    """Sends in a thread of its own (a slow server never holds up the run) and counts; a
    message still unsent when the run's end stops waiting counts as failed."""

    def __init__(self) -> None:
        self.jobs: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue()
        self.sent = 0
        self.failed = 0
        self.error: Optional[str] = None
        self.thread: Optional[threading.Thread] = None
        self.lock = threading.Lock()
        self.waiting: Dict[int, str] = {}  # messages not yet sent: id -> what
        self.next_id = 0

    def put(self, what: str, job: Callable[[], None]) -> None:
        with self.lock:
            token = self.next_id
            self.next_id += 1
            self.waiting[token] = what

        def guarded() -> None:
            try:
                job()
                ok, problem = True, ""
            except Exception as exc:  # noqa: BLE001 - a failing server never fails the run
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            with self.lock:
                if self.waiting.pop(token, None) is None:
                    return  # given up on already: counted as failed
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                    self.error = f"{what}: {problem}"[:300]
            if not ok:
                print(f"gitexp: warning: could not send the {what}: {problem}", file=sys.stderr, flush=True)
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._work, daemon=True, name="gitexp-notify")
                self.thread.start()
        self.jobs.put(guarded)

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job is not None:
                    job()
            finally:
                self.jobs.task_done()

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait up to ``timeout`` seconds for every message; those still unsent then count as
        failed (the server did not answer in time), so a run's end is never held longer."""
        deadline = time.monotonic() + timeout
        while self.jobs.unfinished_tasks:
            if time.monotonic() > deadline:
                self._give_up(timeout)
                return False
            time.sleep(0.05)
        return True

    def _give_up(self, timeout: float) -> None:
        with self.lock:
            late = list(self.waiting.values())
            self.waiting.clear()
            if not late:
                return
            self.failed += len(late)
            self.error = f"{late[0]}: no answer within {timeout:g} s"[:300]
        print(f"gitexp: warning: could not send the {late[0]}: no answer within {timeout:g} s",
              file=sys.stderr, flush=True)

    def record(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"sent": self.sent, "failed": self.failed}
        if self.error:
            out["error"] = self.error
        return out
