"""The ``notify:`` section of an experiment config: which channels hear which events.

::

    notify:
      email: {to: [me@example.org], on: [finished, failed, alert]}
      webhook: {url: "https://chat.example.org/hooks/abc", on: [failed, stopped]}
      interval: 30m        # the same alert of the same run is sent at most once per interval

Events: ``started``, every final state and ``alert``. A channel may set ``subject`` and
``body`` templates with the run's fields (:data:`FIELDS`), checked here against sample values
so a template that cannot be filled fails at ``git exp run``, not when the mail is sent.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from .lifecycle import Status
from .units import parse_duration

FINAL_EVENTS = tuple(s.value for s in Status if s.final)
EVENTS = ("started", *FINAL_EVENTS, "alert")
DEFAULT_EVENTS = ("finished", "failed", "stopped", "alert")
CHANNELS = ("email", "webhook")
CHANNEL_KEYS = {"email": ("to", "on", "events", "subject", "body"),
                "webhook": ("url", "on", "events", "subject", "body")}
FIELDS = ("name", "sha", "short", "event", "status", "host", "reason", "exit_code", "duration", "params",
          "results", "message", "rule", "log_tail", "traceback", "curve")
DEFAULT_SUBJECT = "[gitexp] {name}: {event}"
Fail = Callable[[str, str, Optional[str]], Exception]
# What a template is checked against at config time: every field is text when sent.
SAMPLE_FIELDS = {"name": "mlp", "sha": "0" * 40, "short": "0" * 10, "event": "failed", "status": "failed",
                 "host": "node1", "reason": "exit code 1", "exit_code": "1", "duration": "1m 5s",
                 "params": "lr=0.1", "results": "loss 0.1", "message": "loss became NaN", "rule": "nan",
                 "log_tail": "step 1", "traceback": "Traceback", "curve": "loss: _-"}


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
        from .notify_send import smtp_settings  # reads git config: only for an email channel

        problem = smtp_settings().problem()
        if problem:
            raise fail("notify.email", f"notify.email: {problem}", "e.g. git config exp.smtp.host smtp.example.org")
    return spec


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
