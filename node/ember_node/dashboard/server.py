"""The dashboard's HTTP server: stdlib ``ThreadingHTTPServer`` in its own thread (the
agent's event loop never waits for it), the login, the routes and the security headers.

Every page and ``/api/`` call needs the login cookie, got by giving the cluster token on
``/login`` or once as ``?token=`` (the server then redirects to the same URL without it).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from ember_node import log_files as lf
from ember_node.dashboard import auth, pages
from ember_node.dashboard.data import DashboardData

log = logging.getLogger("ember.dashboard")
DEFAULT_PORT = 8265
PORT_TRIES = 10  # an embedded cluster whose port is taken tries the next ones
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
TASK_STATES = ("RUNNING", "QUEUED", "PENDING_ARGS", "FINISHED", "FAILED")
ACTOR_STATES = ("ALIVE", "PENDING_CREATION", "RESTARTING", "DEAD")
OBJECT_STATES = ("READY", "PENDING")
MAX_FORM = 4096


def _static(name: str) -> bytes:
    return resources.files("ember_node.dashboard").joinpath("static", name).read_bytes()


class Dashboard:
    """The web UI of a head: ``serve()`` it, read :attr:`url`, ``close()`` it."""

    def __init__(self, data: DashboardData, token: str) -> None:
        if not token:
            raise ValueError("the dashboard needs the cluster token to check logins")
        self.data = data
        self.token = token
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server is not None else None

    def serve(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1", tries: int = 1) -> int:
        """Listen on ``host:port`` (or, with ``tries`` > 1, the next free port after it);
        returns the port. OSError names the port and the flag to change."""
        if self._server is not None:
            raise RuntimeError("the dashboard is already being served")
        last: OSError | None = None
        for p in range(port, port + max(1, tries)) if port else (0,):
            try:
                server = _Server(host, p, self)
                break
            except OSError as exc:
                last = exc
        else:
            raise OSError(f"cannot serve the dashboard on {host}:{port} ({last}); pick another "
                          f"--dashboard-port, or --include-dashboard false") from last
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                  name="ember-dashboard", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return server.server_address[1]

    def url(self, host: str, with_token: bool = False) -> str:
        """Where a browser finds it (``with_token``: one click logs in, as Jupyter's)."""
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}/" + (f"?{urlencode({'token': self.token})}" if with_token else "")

    def close(self) -> None:
        """Stop serving: no socket or thread of it survives this."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        closer = getattr(self.data.query, "close", None)
        if closer is not None:
            closer()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a browser's kept-alive connection must not hold up close()
    block_on_close = False

    def __init__(self, host: str, port: int, dashboard: Dashboard) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.dashboard = dashboard
        super().__init__((host, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "ember-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s " + format, self.address_string(), *args)

    # ------------------------------------------------------------------ responses
    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, code: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(code, text.encode(), "text/html; charset=utf-8", headers)

    def _json(self, code: int, value: Any) -> None:
        self._send(code, json.dumps(value, default=str).encode(), "application/json")

    def _redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self._send(303, b"", "text/plain", {"Location": location, **(headers or {})})

    # ------------------------------------------------------------------ routing
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        token = self.server.dashboard.token
        if url.path.startswith("/static/"):
            name = url.path[len("/static/"):]
            if name in STATIC:
                return self._send(200, _static(name), STATIC[name])
            return self._send(404, b"not found", "text/plain")
        if url.path == "/login":
            return self._html(200, pages.login(next_path=auth.safe_next(query.get("next"))))
        if "token" in query:  # a link with the token: swap it for the cookie, drop it from the URL
            if not auth.token_matches(query["token"], token):
                return self._html(403, pages.login("that token is not this cluster's token"))
            rest = urlencode({k: v for k, v in query.items() if k != "token"})
            return self._redirect(url.path + (f"?{rest}" if rest else ""), {"Set-Cookie": auth.set_cookie(token)})
        if not auth.cookie_ok(self.headers.get("Cookie"), token):
            if url.path.startswith("/api/"):
                return self._json(401, {"error": "not logged in: open the dashboard and give the "
                                                 "cluster token, or pass ?token=TOKEN once"})
            return self._redirect("/login?" + urlencode({"next": auth.safe_next(self.path)}))
        try:
            if url.path.startswith("/api/"):
                return self._api(url.path[len("/api/"):], query)
            return self._page(url.path, query)
        except lf.LogNotFound as exc:
            return self._reply_error(404, url.path, str(exc))
        except ValueError as exc:
            return self._reply_error(400, url.path, str(exc))
        except (ConnectionError, OSError, TimeoutError) as exc:
            return self._reply_error(503, url.path, f"the head's agent did not answer ({exc})")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/login":
            return self._send(404, b"not found", "text/plain")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_FORM:
            return self._send(413, b"form too large", "text/plain")
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode(errors="replace")).items()}
        token = self.server.dashboard.token
        nxt = auth.safe_next(form.get("next"))
        if not auth.token_matches(form.get("token"), token):
            return self._html(403, pages.login("that token is not this cluster's token", nxt))
        return self._redirect(nxt, {"Set-Cookie": auth.set_cookie(token)})

    def _reply_error(self, code: int, path: str, message: str) -> None:
        if path.startswith("/api/"):
            return self._json(code, {"error": message})
        return self._html(code, pages.layout("error", "", pages.error_page(message)))

    # ------------------------------------------------------------------ JSON API
    def _api(self, what: str, q: dict[str, str]) -> None:
        data = self.server.dashboard.data
        if what == "overview":
            return self._json(200, data.overview())
        if what in ("tasks", "actors", "objects", "nodes"):
            return self._json(200, data.rows(what, _filters(q), q.get("q", ""), _limit(q)))
        if what == "jobs":
            return self._json(200, {"rows": data.jobs_rows()})
        if what == "logs":
            return self._json(200, {"rows": data.log_files()})
        if what.startswith("logs/"):
            return self._json(200, data.log_chunk(what[len("logs/"):], int(q.get("offset", "-1"))))
        return self._json(404, {"error": f"no API /api/{what}; there are overview, tasks, actors, "
                                         "objects, nodes, jobs, logs and logs/<file>"})

    # ------------------------------------------------------------------ pages
    def _page(self, path: str, q: dict[str, str]) -> None:
        data = self.server.dashboard.data
        key = path.strip("/") or "overview"
        state, search = q.get("state", ""), q.get("q", "")
        if key == "overview":
            body = pages.overview(data.overview())
        elif key in ("tasks", "actors", "objects"):
            answer = data.rows(key, _filters(q), search, _limit(q))
            states = {"tasks": TASK_STATES, "actors": ACTOR_STATES, "objects": OBJECT_STATES}[key]
            body = pages.filter_form(path, states, state, search) + getattr(pages, key)(answer)
        elif key == "jobs":
            body = pages.jobs(data.jobs_rows(), data.jobs is not None)
        elif key == "logs":
            body = pages.logs(data.log_files(), self._log_name(q))
        else:
            return self._html(404, pages.layout("not found", "", pages.error_page(
                f"no page {path}; the pages are in the bar above")))
        if q.get("fragment"):
            return self._html(200, body)
        refresh = "" if key == "logs" else path + "?" + urlencode({**q, "fragment": "1"})
        return self._html(200, pages.layout(key, key, body, refresh))

    def _log_name(self, q: dict[str, str]) -> str:
        """The log file a /logs link names: by file name, or the worker of a task or actor."""
        if q.get("name"):
            return lf.check_name(q["name"])
        for key, what in (("task_id", "tasks"), ("actor_id", "actors")):
            if q.get(key):
                rows = self.server.dashboard.data.rows(what, limit=10_000)["rows"]
                pid, _ = lf.worker_of(rows, key, q[key])
                return f"worker-{pid}.out"
        return ""


def _filters(q: dict[str, str]) -> list[tuple[str, str, str]]:
    return [("state", "=", q["state"])] if q.get("state") else []


def _limit(q: dict[str, str]) -> int:
    text = q.get("limit", "")
    if not text:
        return 500
    if not text.isdigit():
        raise ValueError(f"limit={text!r}: give a whole number of rows")
    return int(text)
