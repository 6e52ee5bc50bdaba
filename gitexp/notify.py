"""Notifications: email (SMTP) and webhooks when a run starts, ends or raises an alert.

What to send is in the experiment config::

    notify:
      email: {to: [me@example.org], on: [finished, failed, alert]}
      webhook: {url: "https://chat.example.org/hooks/abc", on: [failed, stopped]}
      interval: 30m        # the same alert of the same run is sent at most once per interval

Events: ``started``, every final state (``finished``, ``failed``, ``killed``, ``timeout``,
``stopped``, ``lost``, ``cancelled``) and ``alert`` (a diagnostic rule fired). A channel may
set ``subject`` and ``body`` templates with the run's fields (:data:`FIELDS`, e.g.
``"{name}: {status} {results}"``).

How to reach the mail server is not the experiment's business: git config ``exp.smtp.host``,
``.port``, ``.user``, ``.from``, ``.security`` (none|starttls|ssl), each overridden by
``GITEXP_SMTP_HOST`` etc.; the password only from ``GITEXP_SMTP_PASSWORD`` or the file that
``exp.smtp.passwordFile`` names (outside the repository), never from a committed file.

Who sends: the process that records the state change (:func:`gitexp.lifecycle.listen`,
installed by :func:`install`), i.e. the run's executor; alerts are sent by the run's
:class:`Notifier` watcher. A mail server or webhook that fails never fails the run: the
error is printed and recorded in the summary's ``notify`` field (``sent``, ``failed``,
``error``), shown by ``git exp show``.
"""
from __future__ import annotations

import functools
import json
import math
import os
import queue
import re
import socket
import string
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .lifecycle import Change, Status, listen
from .units import format_duration, parse_duration
from .sections import Section
from .watch import RunContext, Watcher

FINAL_EVENTS = tuple(s.value for s in Status if s.final)
EVENTS = ("started", *FINAL_EVENTS, "alert")
DEFAULT_EVENTS = ("finished", "failed", "stopped", "alert")
CHANNELS = ("email", "webhook")
CHANNEL_KEYS = {"email": ("to", "on", "events", "subject", "body"),
                "webhook": ("url", "on", "events", "subject", "body")}
FIELDS = ("name", "sha", "short", "event", "status", "host", "reason", "exit_code", "duration", "params",
          "results", "message", "rule", "log_tail", "traceback", "curve")
SECURITY = ("none", "starttls", "ssl")
SMTP_KEYS = ("host", "port", "user", "from", "security", "passwordFile")
DEFAULT_SUBJECT = "[gitexp] {name}: {event}"
# What a template is checked against at config time: every field is text when sent.
SAMPLE_FIELDS = {"name": "mlp", "sha": "0" * 40, "short": "0" * 10, "event": "failed", "status": "failed",
                 "host": "node1", "reason": "exit code 1", "exit_code": "1", "duration": "1m 5s",
                 "params": "lr=0.1", "results": "loss 0.1", "message": "loss became NaN", "rule": "nan",
                 "log_tail": "step 1", "traceback": "Traceback", "curve": "loss: _-"}
TIMEOUT = 15.0  # seconds for one SMTP session or webhook POST
FLUSH_SECONDS = 10.0  # the most a run's end waits for its messages (GITEXP_NOTIFY_WAIT)
TAIL_LINES = 40
Fail = Callable[[str, str, Optional[str]], Exception]


@dataclass
class Channel:
    kind: str  # email | webhook
    events: List[str]
    to: List[str] = field(default_factory=list)
    url: Optional[str] = None
    subject: str = DEFAULT_SUBJECT
    body: Optional[str] = None


@dataclass
class NotifySpec:
    channels: List[Channel] = field(default_factory=list)
    interval: int = 1800
    given: Any = None

    def to_dict(self) -> Any:
        return self.given

    def wants(self, event: str) -> List[Channel]:
        return [c for c in self.channels if event in c.events]


# -- the config ----------------------------------------------------------------------------------
def parse(value: Any, fail: Fail, check: bool = True) -> NotifySpec:
    """The ``notify:`` section. ``check``: also require the SMTP settings an email channel needs
    (at ``git exp run``; a stored config is not refused on a host that lacks them)."""
    spec = NotifySpec(given=value)
    if value is None:
        return spec
    if not isinstance(value, dict):
        raise fail("notify", "'notify' must be a mapping (email, webhook, interval)",
                   "e.g. notify: {email: {to: [me@example.org], on: [finished, failed]}}")
    for key, item in value.items():
        if key == "interval":
            try:
                spec.interval = parse_duration(item)
            except ValueError as exc:
                raise fail("notify.interval", f"notify.interval: {exc}", "e.g. interval: 30m") from exc
        elif key in CHANNELS:
            spec.channels.append(_channel(str(key), item, fail))
        else:
            raise fail(f"notify.{key}", f"unknown key 'notify.{key}'", "expected one of: email, webhook, interval")
    if check and any(c.kind == "email" for c in spec.channels):
        problem = smtp_settings().problem()
        if problem:
            raise fail("notify.email", f"notify.email: {problem}", "e.g. git config exp.smtp.host smtp.example.org")
    return spec


# installed by gitexp.watchers; a stored config is not refused on a host without SMTP settings
SECTION = Section("notify", lambda value, given: parse(value, given.fail, check=not given.stored))


def _channel(kind: str, value: Any, fail: Fail) -> Channel:
    key = f"notify.{kind}"
    if not isinstance(value, dict):
        raise fail(key, f"'{key}' must be a mapping", "e.g. {to: [me@example.org], on: [finished, failed]}"
                   if kind == "email" else "e.g. {url: https://..., on: [failed]}")
    channel = Channel(kind, list(DEFAULT_EVENTS))
    for raw_item, item in value.items():
        name = "on" if raw_item is True else str(raw_item)  # YAML 1.1 reads a bare `on` as true
        if name not in CHANNEL_KEYS[kind]:
            raise fail(f"{key}.{name}", f"unknown key '{key}.{name}'", "expected one of: " + ", ".join(CHANNEL_KEYS[kind]))
        if name in ("on", "events"):
            channel.events = _events(item, f"{key}.{name}", fail)
        elif name == "to":
            to = [item] if isinstance(item, str) else item
            if not isinstance(to, list) or not to or not all(isinstance(t, str) and "@" in t and "\n" not in t
                                                             and "," not in t for t in to):
                raise fail(f"{key}.to", f"{key}.to must be a list of email addresses, not {item!r}",
                           "e.g. to: [me@example.org]")
            channel.to = list(to)
        elif name == "url":
            if not isinstance(item, str) or not item.startswith(("http://", "https://")) or any(c.isspace() for c in item):
                raise fail(f"{key}.url", f"{key}.url must be an http:// or https:// URL, not {item!r}", None)
            channel.url = item
        else:
            setattr(channel, name, _template(item, f"{key}.{name}", fail))
    if kind == "email" and not channel.to:
        raise fail(key, f"'{key}' needs 'to' (who gets the mail)", "e.g. to: [me@example.org]")
    if kind == "webhook" and not channel.url:
        raise fail(key, f"'{key}' needs 'url'", "e.g. url: https://chat.example.org/hooks/abc")
    return channel


def _events(value: Any, key: str, fail: Fail) -> List[str]:
    events = [value] if isinstance(value, str) else value
    if not isinstance(events, list) or not events:
        raise fail(key, f"{key} must be a list of events", "expected some of: " + ", ".join(EVENTS))
    for event in events:
        if event not in EVENTS:
            from .config import closest

            raise fail(key, f"unknown event {event!r} in {key}", closest(str(event), EVENTS))
    return [str(e) for e in events]


MAX_SPEC_NUMBER = 4096  # the widest field or precision a template may ask for


def _template(value: Any, key: str, fail: Fail) -> str:
    """A subject or body template, rendered once against sample values: what would fail
    when the mail is sent (a bad format spec, a nested field, a huge width) fails here."""
    if not isinstance(value, str):
        raise fail(key, f"{key} must be a string", None)
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise fail(key, f"{key}: bad template: {exc}", "write {field}, or {{ for a brace") from exc
    for _text, name, spec, _conv in parts:
        if name is None:
            continue
        if name not in FIELDS:
            raise fail(key, f"{key}: unknown field {{{name}}}", "fields: " + ", ".join(FIELDS))
        if spec and "{" in spec:
            raise fail(key, f"{key}: {{{name}}} has a field inside its format spec {spec!r}",
                       "write a plain spec, e.g. {name:>20}")
        if any(int(n) > MAX_SPEC_NUMBER for n in re.findall(r"\d+", spec or "")):
            raise fail(key, f"{key}: the format spec of {{{name}}} asks for more than {MAX_SPEC_NUMBER} characters",
                       "e.g. {name:>20}")
    try:
        value.format_map({name: SAMPLE_FIELDS.get(name, "x") for name in FIELDS})
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise fail(key, f"{key}: cannot fill the template: {exc}",
                   "every field is text: use a text spec such as {params:>40} or none") from exc
    return value


# -- server settings -----------------------------------------------------------------------------
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


# -- what is said --------------------------------------------------------------------------------
def results_table(metrics: Any) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return "(no metrics recorded)"
    rows = [("metric", "best", "last", "points", "goal")]
    for name, entry in sorted(metrics.items()):
        if isinstance(entry, dict):
            rows.append((str(name), _num(entry.get("best")), _num(entry.get("last")), str(entry.get("count", "")),
                         str(entry.get("goal") or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def sparkline(values: Sequence[float], width: int = 60) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    step = max(1, math.ceil(len(values) / width))
    buckets = [values[i:i + step] for i in range(0, len(values), step)]
    lo, hi = min(finite), max(finite)
    bars = "▁▂▃▄▅▆▇█"
    out = []
    for bucket in buckets:
        good = [v for v in bucket if math.isfinite(v)]
        if not good:
            out.append(" ")
            continue
        mean = sum(good) / len(good)
        out.append(bars[int((mean - lo) / (hi - lo) * 7) if hi > lo else 3])
    return "".join(out)


def curve_png(curves: Mapping[str, List[Tuple[float, float]]]) -> Optional[bytes]:
    """The curves as one PNG (a panel per metric), or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - the plot extra is optional
        return None
    import io

    names = [n for n, pts in curves.items() if pts][:4]
    if not names:
        return None
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        xs, ys = zip(*curves[name])
        ax.plot(xs, ys, linewidth=1.2)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def log_tail(path: str, lines: int = TAIL_LINES) -> Tuple[str, str]:
    """(the last lines of the output log, the last Python traceback in its end)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "", ""
    all_lines = text.splitlines()
    tail = "\n".join(all_lines[-lines:])
    start = text.rfind("Traceback (most recent call last):")
    trace = "\n".join(text[start:].splitlines()[:120]) if start >= 0 else ""
    return tail, trace


def fields_for(event: str, summary: Mapping[str, Any], sha: str, log_path: Optional[str],
               curves: Mapping[str, List[Tuple[float, float]]], alert: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
    params = summary.get("params") if isinstance(summary.get("params"), dict) else {}
    tail, trace = log_tail(log_path) if log_path and event not in ("started", "alert") else ("", "")
    duration = summary.get("duration")
    lines = [f"{name}: {sparkline([p[1] for p in pts])}" for name, pts in list(curves.items())[:4] if pts]
    return {
        "name": str(summary.get("name") or sha[:10]), "sha": sha, "short": sha[:10], "event": event,
        "status": str(summary.get("status") or ""), "host": str(summary.get("host") or socket.gethostname()),
        "reason": str(summary.get("reason") or ""), "exit_code": str(summary.get("exit_code", "")),
        "duration": format_duration(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool)
        and math.isfinite(duration) else "",
        "params": " ".join(f"{k}={v}" for k, v in (params or {}).items()),
        "results": results_table(summary.get("metrics")),
        "message": str((alert or {}).get("message") or ""), "rule": str((alert or {}).get("rule") or ""),
        "log_tail": tail, "traceback": trace, "curve": "\n".join(lines),
    }


def default_body(fields: Mapping[str, str]) -> str:
    event = fields["event"]
    out = [f"Experiment {fields['name']} ({fields['short']}) on {fields['host']}: {event}."]
    if fields["params"]:
        out.append(f"params: {fields['params']}")
    if event == "alert":
        out.append(f"alert ({fields['rule']}): {fields['message']}")
    if fields["reason"] and event != "started":
        out.append(f"reason: {fields['reason']}")
    if fields["duration"]:
        out.append(f"duration: {fields['duration']}")
    if event not in ("started",):
        out += ["", "Results:", fields["results"]]
    if fields["curve"]:
        out += ["", "Curves:", fields["curve"]]
    if event not in ("started", "finished", "alert"):
        out += ["", f"Crash report: exit code {fields['exit_code'] or '-'}"]
        if fields["traceback"]:
            out += ["", "Traceback:", fields["traceback"]]
        if fields["log_tail"]:
            out += ["", "Last lines of output:", fields["log_tail"]]
    return "\n".join(out) + "\n"


def render(channel: Channel, fields: Mapping[str, str]) -> Tuple[str, str]:
    subject = channel.subject.format_map(dict(fields))
    if fields["event"] == "alert" and channel.subject == DEFAULT_SUBJECT:
        subject = f"[gitexp] {fields['name']}: alert ({fields['rule']})"
    body = channel.body.format_map(dict(fields)) if channel.body else default_body(fields)
    return " ".join(subject.split())[:200], body


# -- delivery ------------------------------------------------------------------------------------
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


# -- one run's notifications -----------------------------------------------------------------------
class Notifier(Watcher):
    """Sends a run's notifications: its alerts (as they are recorded) and its state changes."""

    CURVE_POINTS = 2000

    def __init__(self, sha: str, spec: NotifySpec, log_path: Optional[str], goals: Sequence[str] = (),
                 ctx: Optional[RunContext] = None) -> None:
        self.sha = sha
        self.spec = spec
        self.log_path = log_path
        self.goals = list(goals)
        self.ctx = ctx
        self.outbox = Outbox()
        self.curves: Dict[str, List[Tuple[float, float]]] = {}
        self.stride: Dict[str, int] = {}
        self.seen: Dict[str, int] = {}
        self.alerts_seen = 0
        self.last_sent: Dict[Tuple[str, str], float] = {}
        self.summary: Dict[str, Any] = {}

    def on_points(self, records: List[Dict[str, Any]]) -> None:
        for record in records:
            step = record.get("step")
            if not isinstance(step, (int, float)) or isinstance(step, bool):
                continue
            for name, value in record.items():
                if name in ("step", "time", "epoch") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                if self.goals and name not in self.goals:
                    continue
                self._keep(str(name), float(step), float(value))

    def _keep(self, name: str, step: float, value: float) -> None:
        """Every point until CURVE_POINTS, then every other one kept and half as many taken."""
        seen = self.seen[name] = self.seen.get(name, 0) + 1
        stride = self.stride.setdefault(name, 1)
        if (seen - 1) % stride:
            return
        curve = self.curves.setdefault(name, [])
        curve.append((step, value))
        if len(curve) > self.CURVE_POINTS:
            del curve[1::2]
            self.stride[name] = stride * 2

    def on_tick(self, now: float) -> None:
        if self.ctx is None:
            return
        with self.ctx.lock:
            new = self.ctx.alerts[self.alerts_seen:]
            self.alerts_seen += len(new)
        for alert in new:
            self.alert(alert, now)

    def alert(self, alert: Mapping[str, Any], now: float) -> None:
        key = (str(alert.get("rule")), str(alert.get("metric") or alert.get("gpu") or ""))
        if not self.spec.wants("alert") or now - self.last_sent.get(key, -math.inf) < self.spec.interval:
            return
        self.last_sent[key] = now
        summary = {"name": self.ctx.name if self.ctx else None, "status": "running", **self.summary}
        self.send("alert", summary, alert)

    def on_end(self, status: str) -> None:
        self.on_tick(time.time())

    def summary_fields(self) -> Dict[str, Any]:
        if self.outbox.sent or self.outbox.failed:
            return {"notify": self.outbox.record()}
        return {}

    def send(self, event: str, summary: Mapping[str, Any], alert: Optional[Mapping[str, Any]] = None) -> None:
        channels = self.spec.wants(event)
        if not channels:
            return
        fields = fields_for(event, summary, self.sha, self.log_path, self.curves, alert)
        png = curve_png(self.curves) if event not in ("started",) and any(c.kind == "email" for c in channels) else None
        for channel in channels:
            subject, body = render(channel, fields)
            if channel.kind == "email":
                settings = smtp_settings()
                self.outbox.put(f"email to {', '.join(channel.to)}",
                                functools.partial(send_email, settings, channel.to, subject, body, png))
            else:
                payload = {"text": f"*{subject}*\n{body}", "username": "gitexp", "event": event,
                           "experiment": {"name": fields["name"], "sha": self.sha, "status": fields["status"],
                                          "host": fields["host"], "reason": fields["reason"]},
                           "alert": dict(alert) if alert else None,
                           "metrics": summary.get("metrics") if isinstance(summary.get("metrics"), dict) else None}
                url = channel.url or ""
                self.outbox.put(f"webhook to {url.split('?')[0]}", functools.partial(send_webhook, url, payload))


# -- the lifecycle side ----------------------------------------------------------------------------
_active: Dict[str, Notifier] = {}
_installed: Dict[str, Any] = {}
_started: set = set()  # runs whose 'started' was sent (by the listener, before their watcher existed)
_install_lock = threading.Lock()


def event_of(change: Change) -> Optional[str]:
    if change.new is Status.RUNNING:
        return "started"
    return change.new.value if change.new.final else None


def install(repo: Any, store: Any) -> None:
    """Send the notifications of every state change this process records (once per process)."""
    with _install_lock:
        if _installed:
            return
        _installed.update(repo=repo, store=store)
        _installed["stop"] = listen(_heard)


def _heard(change: Change) -> None:
    event = event_of(change)
    if event is None:
        return
    notifier = _active.get(change.sha) or _notifier_from_repo(change.sha)
    if notifier is None or not notifier.spec.wants(event):
        return
    _active.setdefault(change.sha, notifier)  # one outbox per run: every mail sent is recorded
    if change.new.final and not notifier.curves:
        _curves_from_notes(notifier)
    notifier.summary = dict(change.summary)
    if event == "started":
        _started.add(change.sha)
    notifier.send(event, change.summary)
    if change.new.final:
        notifier.outbox.flush(wait_setting())
        _record(change.sha, notifier.outbox.record())


def _notifier_from_repo(sha: str) -> Optional[Notifier]:
    repo = _installed.get("repo")
    if repo is None:
        return None
    from .config import parse_config
    from .errors import GitExpError
    from .notes import CONFIG_PATH
    from .paths import run_paths

    try:
        raw = repo.show_file(sha, CONFIG_PATH)
        config = parse_config(raw.decode(), source=f"{sha[:12]}:{CONFIG_PATH}", stored=True) if raw else None
    except (GitExpError, UnicodeDecodeError):
        return None
    spec = getattr(config, "notify", None)
    if not isinstance(spec, NotifySpec) or not spec.channels:
        return None
    goals = [n for n, m in config.metrics.items() if m.goal] if config is not None else []
    return Notifier(sha, spec, run_paths(repo, sha).log, goals)


def _curves_from_notes(notifier: Notifier) -> None:
    store = _installed.get("store")
    if store is None:
        return
    try:
        notifier.on_points(store.history(notifier.sha))
    except Exception:  # noqa: BLE001 - a curve is nice to have
        pass


def _record(sha: str, record: Dict[str, Any]) -> None:
    """What was sent and what failed, in the summary note (a failure is shown by show)."""
    store = _installed.get("store")
    if store is None or not (record.get("sent") or record.get("failed")):
        return
    try:
        store.update_summary(sha, lambda s: {**s, "notify": record} if s else None, message="gitexp: notified")
    except Exception as exc:  # noqa: BLE001
        print(f"gitexp: warning: could not record the notifications: {exc}", file=sys.stderr, flush=True)


def factory(ctx: RunContext) -> Optional[Watcher]:
    spec = getattr(ctx.config, "notify", None)
    if not isinstance(spec, NotifySpec) or not spec.channels:
        return None
    if not _installed:
        from .notes import Store
        from .repo import Repo

        repo = Repo.discover(".")
        install(repo, Store(repo))
    goals = [n for n, m in (getattr(ctx.config, "metrics", None) or {}).items() if getattr(m, "goal", None)]
    notifier = Notifier(ctx.sha, spec, ctx.paths.log, goals, ctx)
    earlier = _active.get(ctx.sha)  # made when the change to running was heard: keep what it sent
    if earlier is not None:
        notifier.outbox = earlier.outbox
    _active[ctx.sha] = notifier
    summary = {"name": ctx.name, "status": "running", "params": getattr(ctx.config, "params", {})}
    notifier.summary = summary
    if ctx.sha not in _started:  # the change to running was recorded just before watchers start
        _started.add(ctx.sha)
        notifier.send("started", summary)
    return notifier
