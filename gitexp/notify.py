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

The parts live in :mod:`gitexp.notify_config` (the ``notify:`` section), :mod:`gitexp.notify_mail`
(what a message says) and :mod:`gitexp.notify_send` (SMTP, webhooks, the outbox); this module is
the policy: who sends what, when.
"""
from __future__ import annotations

import functools
import math
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .lifecycle import Change, Status, listen
from .sections import Section
from .watch import RunContext, Watcher

# Split out (composition, transport, the config section); their names stay importable from here.
from .notify_config import CHANNEL_KEYS as CHANNEL_KEYS, CHANNELS as CHANNELS
from .notify_config import DEFAULT_EVENTS as DEFAULT_EVENTS, DEFAULT_SUBJECT as DEFAULT_SUBJECT
from .notify_config import EVENTS as EVENTS, FIELDS as FIELDS, FINAL_EVENTS as FINAL_EVENTS
from .notify_config import MAX_SPEC_NUMBER as MAX_SPEC_NUMBER, SAMPLE_FIELDS as SAMPLE_FIELDS
from .notify_config import Channel as Channel, Fail as Fail, NotifySpec as NotifySpec, parse as parse
from .notify_mail import TAIL_LINES as TAIL_LINES, curve_png as curve_png, default_body as default_body
from .notify_mail import fields_for as fields_for, log_tail as log_tail, render as render
from .notify_mail import results_table as results_table, sparkline as sparkline
from .notify_send import FLUSH_SECONDS as FLUSH_SECONDS, SECURITY as SECURITY, SMTP_KEYS as SMTP_KEYS
from .notify_send import TIMEOUT as TIMEOUT, Outbox as Outbox, SmtpSettings as SmtpSettings
from .notify_send import send_email as send_email, send_webhook as send_webhook
from .notify_send import smtp_settings as smtp_settings, wait_setting as wait_setting


# installed by gitexp.watchers; a stored config is not refused on a host without SMTP settings
SECTION = Section("notify", lambda value, given: parse(value, given.fail, check=not given.stored))


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
        summary = {"name": self.ctx.name if self.ctx else None, "status": Status.RUNNING.value, **self.summary}
        self.send("alert", summary, alert)

    def on_end(self, status: str) -> None:
        self.on_tick(time.time())
        # Every alert sent (or counted failed) before the end is recorded and the executor ends:
        # the sending thread is a daemon, and a message still queued would die with the process.
        self.outbox.flush(wait_setting())

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
_started: Set[str] = set()  # runs whose 'started' was sent (by the listener, before their watcher existed)
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
    from .errors import GitExpError
    from .paths import run_paths
    from .storedconfig import load_experiment_config

    try:
        config = load_experiment_config(repo, sha)
    except (GitExpError, UnicodeDecodeError):  # not an experiment commit, or a config that does not parse
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
    summary = {"name": ctx.name, "status": Status.RUNNING.value, "params": getattr(ctx.config, "params", {})}
    notifier.summary = summary
    if ctx.sha not in _started:  # the change to running was recorded just before watchers start
        _started.add(ctx.sha)
        notifier.send("started", summary)
    return notifier
