"""The web server of ``git exp ui``: the standard library's ThreadingHTTPServer, no framework.

Why the standard library: the dashboard serves a handful of small JSON endpoints and a few
static files to one person's browser; ``http.server`` does that with no dependency to install
or keep up to date, starts in milliseconds, and a thread per request keeps a slow ``git`` call
from blocking the browser's other polls. Everything a framework would add (routing,
templates, sessions) is either a dict here or done in the browser.

What every request goes through (docs/ui.md, "Safe by default"):

* **Host check.** A request whose ``Host`` header is not the address the server was bound to
  (or one given with ``--allow-host``) is refused with 403, so a web page that points its own
  name at 127.0.0.1 (DNS rebinding) cannot read the dashboard.
* **Read-only** unless started with ``--allow-actions``; an action then needs the per-start
  token in the ``X-Gitexp-Token`` header (a custom header: a page of another origin cannot
  send one without a CORS preflight, which is never granted) and a JSON body.
* **Headers**: a strict Content-Security-Policy (scripts and styles only from this server's
  static files: no inline script, no eval; no frames, no form posts), ``nosniff``, no
  referrer, ``no-store`` for data.
* **Files**: only the files of the package's ``static`` folder, listed once at start (no path
  from the request is ever joined to a directory); run directories are read by the API by
  commit id (``paths.run_paths``), never by a path a request or a note names.
"""
from __future__ import annotations

import errno
import gzip
import hmac
import json
import mimetypes
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from ..errors import BadInput, GitExpError
from ..repo import Repo
from . import api as api_mod
from . import runs as runs_mod

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
TOKEN_HEADER = "X-Gitexp-Token"
MAX_BODY = 64 * 1024
GZIP_FROM = 32 * 1024
# action -> the git exp command it runs (the same code path as typing it; the id goes last)
ACTIONS: Dict[str, List[str]] = {
    "cancel": ["cancel"],
    "retry": ["queue", "retry"],
    "resume": ["resume", "--detach"],
}


def static_files() -> Dict[str, Tuple[str, str]]:
    """URL name -> (file, content type) of every file shipped in the static folder."""
    out: Dict[str, Tuple[str, str]] = {}
    for name in sorted(os.listdir(STATIC_DIR)):
        path = os.path.join(STATIC_DIR, name)
        if os.path.isfile(path) and not name.startswith("."):
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind in ("application/javascript",):
                kind += "; charset=utf-8"
            out[name] = (path, kind)
    return out


class UiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a port in use must say so, not share it

    def __init__(self, address: Tuple[str, int], api: api_mod.Api, allow_actions: bool,
                 extra_hosts: Sequence[str] = (), quiet: bool = True) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.api = api
        self.allow_actions = allow_actions
        self.token = secrets.token_urlsafe(24)
        self.quiet = quiet
        self.static = static_files()
        self.bound_host = address[0]
        self.allowed_hosts = self._allowed(address[0], self.server_address[1], extra_hosts)
        self.action_lock = threading.Lock()

    @staticmethod
    def _allowed(host: str, port: int, extra: Sequence[str]) -> Set[str]:
        names = {host, f"[{host}]" if ":" in host else host}
        if host in ("127.0.0.1", "::1"):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        if host in ("0.0.0.0", "::", ""):
            names |= {socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1"}
        allowed = {f"{n}:{port}" for n in names}
        for item in extra:
            allowed.add(item if ":" in item.rsplit("]", 1)[-1] else f"{item}:{port}")
        return {a.lower() for a in allowed}

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, host: Optional[str] = None, port: Optional[int] = None) -> str:
        shown = host or ("127.0.0.1" if self.bound_host in ("0.0.0.0", "", "::") else self.bound_host)
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port or self.port}/?token={self.token}"


Route = Callable[["Handler", Dict[str, List[str]]], Any]


def _one(query: Dict[str, List[str]], key: str, default: Optional[str] = None) -> Optional[str]:
    values = query.get(key)
    return values[-1] if values else default


def _number(query: Dict[str, List[str]], key: str, default: float) -> float:
    text = _one(query, key)
    try:
        return float(text) if text else default
    except ValueError:
        raise BadInput(f"{key}={text!r} is not a number") from None


ROUTES: Dict[str, Route] = {
    "/api/experiments": lambda h, q: api_mod.experiments(h.api),
    "/api/running": lambda h, q: api_mod.running(h.api),
    "/api/select": lambda h, q: api_mod.select(h.api, q.get("filter", []), _one(q, "sort")),
    "/api/curves": lambda h, q: runs_mod.curves(h.api, q.get("id", []), _one(q, "metric") or "",
                                               _one(q, "x", "step") or "step", _number(q, "smooth", 0.0),
                                               _one(q, "band") or None, _one(q, "full") == "1"),
    "/api/folds": lambda h, q: api_mod.folds(h.api, q.get("over", [])),
    "/api/run": lambda h, q: runs_mod.run_page(h.api, _one(q, "id") or ""),
    "/api/diff": lambda h, q: api_mod.diff(h.api, _one(q, "a") or "", _one(q, "b") or ""),
    "/api/queue": lambda h, q: api_mod.queue(h.api, _one(q, "on")),
    "/api/hosts": lambda h, q: api_mod.hosts(h.api, _one(q, "on")),
    "/api/targets": lambda h, q: api_mod.targets(h.api),
    "/api/info": lambda h, q: {"actions": h.server.allow_actions, "host": h.api.host,
                               "repo": os.path.basename(h.api.repo.root), "time": time.time()},
}


class Handler(BaseHTTPRequestHandler):
    server: UiServer
    protocol_version = "HTTP/1.1"
    server_version = "gitexp-ui"
    sys_version = ""

    @property
    def api(self) -> api_mod.Api:
        return self.server.api

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.server.quiet:
            sys.stderr.write("git exp ui: %s\n" % (format % args))

    # -- checks ---------------------------------------------------------------------------
    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        return host in self.server.allowed_hosts

    def _refuse(self, code: int, message: str) -> None:
        self._send_json({"error": message}, code)

    # -- GET ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._host_ok():
            self._refuse(403, "refused: the Host header is not this server's address (DNS rebinding?)")
            return
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/" or path == "/index.html":
            self._send_static("index.html")
        elif path.startswith("/static/"):
            self._send_static(path[len("/static/"):])
        elif path in ROUTES:
            self._answer(lambda: ROUTES[path](self, parse_qs(parts.query, max_num_fields=500)))
        else:
            self._refuse(404, "not found")

    def do_HEAD(self) -> None:  # noqa: N802
        self._refuse(405, "use GET")

    def _send_static(self, name: str) -> None:
        found = self.server.static.get(name)  # only names listed at start: no path is joined
        if found is None:
            self._refuse(404, "not found")
            return
        path, kind = found
        with open(path, "rb") as handle:
            body = handle.read()
        self._send(body, kind, 200, cache="no-cache")

    def _answer(self, call: Callable[[], Any]) -> None:
        try:
            data = call()
        except BadInput as exc:
            self._send_json({"error": str(exc)}, 400)
            return
        except GitExpError as exc:
            self._send_json({"error": str(exc)}, 502)
            return
        except Exception as exc:  # noqa: BLE001 - the browser gets the line, the server goes on
            sys.stderr.write(f"git exp ui: {self.path}: {type(exc).__name__}: {exc}\n")
            self._send_json({"error": f"{type(exc).__name__}: {exc}"}, 500)
            return
        if isinstance(data, api_mod.RawJson):
            self._send(data.body, "application/json; charset=utf-8", 200, cache="no-store")
            return
        self._send_json(data, 200)

    # -- POST (actions) -------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok():
            self._refuse(403, "refused: the Host header is not this server's address (DNS rebinding?)")
            return
        origin = self.headers.get("Origin")
        if origin and urlsplit(origin).netloc.lower() not in self.server.allowed_hosts:
            self._refuse(403, "refused: a request from another origin")
            return
        if urlsplit(self.path).path != "/api/action":
            self._refuse(404, "not found")
            return
        if not self.server.allow_actions:
            self._refuse(403, "read-only: start git exp ui with --allow-actions to cancel, resume or retry")
            return
        given = self.headers.get(TOKEN_HEADER) or ""
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            self._refuse(403, f"refused: no valid {TOKEN_HEADER} (the token is in the URL git exp ui printed)")
            return
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            self._refuse(415, "actions take a JSON body")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._refuse(400, "a JSON body of at most 64 KiB is needed")
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._refuse(400, "the body is not JSON")
            return
        self._answer(lambda: self._act(body))

    def _act(self, body: Any) -> Dict[str, Any]:
        if not isinstance(body, dict) or body.get("action") not in ACTIONS:
            raise BadInput(f"action: one of {', '.join(ACTIONS)}")
        exp = self.api.find(str(body.get("id") or ""))  # a listed experiment's full sha, or BadInput
        argv = [sys.executable, "-m", "gitexp", *ACTIONS[body["action"]], exp.sha]
        with self.server.action_lock:  # one at a time, as a person at a terminal would
            proc = subprocess.run(argv, cwd=self.api.repo.root, capture_output=True, text=True, timeout=600,
                                  stdin=subprocess.DEVNULL)
        return {"action": body["action"], "id": exp.sha, "code": proc.returncode,
                "output": (proc.stdout + proc.stderr).strip()[-4000:]}

    # -- sending --------------------------------------------------------------------------
    def _send_json(self, data: Any, code: int) -> None:
        body = api_mod.dumps(data).encode()  # strict JSON; NaN walked out only when there is one
        self._send(body, "application/json; charset=utf-8", code, cache="no-store")

    def _send(self, body: bytes, kind: str, code: int, cache: str) -> None:
        if len(body) >= GZIP_FROM and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=1)
            encoded = True
        else:
            encoded = False
        try:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if encoded:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Cache-Control", cache)
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (a reload mid-answer)


def make_server(repo: Repo, host: str, port: int, allow_actions: bool, extra_hosts: Sequence[str] = (),
                quiet: bool = True, far_interval: float = api_mod.FAR_INTERVAL) -> UiServer:
    """Bind (BadInput with one line when the port is taken or the address is not ours)."""
    try:
        return UiServer((host, port), api_mod.Api(repo, far_interval), allow_actions, extra_hosts, quiet)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BadInput(f"port {port} on {host} is in use", "pick another with --port, or --port 0 for any free one") \
                from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        raise BadInput(f"cannot listen on {host}:{port}: {exc}") from None
