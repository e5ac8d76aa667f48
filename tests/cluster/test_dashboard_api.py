"""The dashboard's HTTP side without a browser (urllib): login, 401s, headers, /api/ JSON,
during a real workload on a real head (``dashboard_cluster.dash``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .dashboard_cluster import ACTOR_NAME, OBJECT_BYTES, status
from .helpers import wait_until


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _raw(url: str, data: bytes | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) with no cookie and no redirect followed."""
    op = urllib.request.build_opener(_NoRedirect)
    try:
        r = op.open(url, data=data, timeout=30)
        return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _json(op, url: str):
    return json.loads(op.open(url, timeout=30).read())


def test_api_without_login_is_401_json(dash):
    for path in ("api/overview", "api/tasks", "api/logs", "api/logs/agent.log"):
        code, headers, body = _raw(dash.url + path)
        assert code == 401, path
        assert headers["Content-Type"] == "application/json"
        assert "token" in json.loads(body)["error"]


def test_pages_without_login_go_to_the_login_page(dash):
    code, headers, _ = _raw(dash.url + "tasks?state=RUNNING")
    assert code == 303
    assert headers["Location"] == "/login?" + urllib.parse.urlencode({"next": "/tasks?state=RUNNING"})
    code, _, body = _raw(dash.url + "login")
    assert code == 200 and b'name=token' in body


def test_wrong_token_is_refused(dash):
    code, headers, body = _raw(dash.url + "?token=not-the-token")
    assert code == 403 and "Set-Cookie" not in headers and b"not this cluster" in body
    code, headers, _ = _raw(dash.url + "login", urllib.parse.urlencode({"token": "nope"}).encode())
    assert code == 403 and "Set-Cookie" not in headers


def test_token_in_url_becomes_a_strict_httponly_cookie_and_leaves_the_url(dash):
    code, headers, _ = _raw(dash.url + "actors?token=" + dash.head.token + "&state=ALIVE")
    assert code == 303
    assert headers["Location"] == "/actors?state=ALIVE"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and dash.head.token not in cookie
    code, headers, _ = _raw(dash.url + "login", urllib.parse.urlencode(
        {"token": dash.head.token, "next": "//evil.example/"}).encode())
    assert code == 303 and headers["Location"] == "/" and "HttpOnly" in headers["Set-Cookie"]


def test_security_headers(dash):
    op = dash.opener()
    for path in ("", "tasks", "api/overview", "login"):
        h = op.open(dash.url + path, timeout=30).headers
        assert "script-src 'self'" in h["Content-Security-Policy"]
        assert "unsafe-inline" not in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"


def test_overview_api(dash):
    o = _json(dash.opener(), dash.url + "api/overview")
    assert o["nodes_alive"] == 1 and o["nodes"][0]["is_head"]
    assert o["resources"]["CPU"]["total"] == 4
    assert o["store"]["used"] >= OBJECT_BYTES
    assert o["tasks_finished_total"] >= 21  # 20 quick + broken (+ the actor's ticks)


def test_tasks_api_filters_and_searches(dash):
    op = dash.opener()
    running = _json(op, dash.url + "api/tasks?state=RUNNING")["rows"]
    assert [t["name"] for t in running if t["name"] == "slow_task"] == ["slow_task", "slow_task"]
    failed = _json(op, dash.url + "api/tasks?state=FAILED&q=broken")["rows"]
    assert failed and "broken on purpose" in failed[0]["error_message"]
    quick = _json(op, dash.url + "api/tasks?q=quick&limit=5")
    assert len(quick["rows"]) == 5 and quick["total"] == 20
    code = status(op, dash.url + "api/tasks?limit=lots")
    assert code == 400


def test_actors_objects_jobs_api(dash):
    op = dash.opener()
    actors = _json(op, dash.url + "api/actors")["rows"]
    (ticker,) = [a for a in actors if a["name"] == ACTOR_NAME]
    assert ticker["state"] == "ALIVE" and ticker["class_name"] == "Ticker" and ticker["pid"] == dash.actor_pid
    objects = _json(op, dash.url + "api/objects")["rows"]
    assert any(o["size"] >= OBJECT_BYTES and o["state"] == "READY" for o in objects), objects
    jobs = _json(op, dash.url + "api/jobs")["rows"]
    assert [(j["submission_id"], j["status"]) for j in jobs] == [(dash.job_id, "SUCCEEDED")]


def test_log_api_tails_the_actor_worker_as_it_prints(dash):
    op = dash.opener()
    name = f"worker-{dash.actor_pid}.out"
    assert name in {f["name"] for f in _json(op, dash.url + "api/logs")["rows"]}
    first = _json(op, dash.url + f"api/logs/{name}?offset=-1")
    assert "tick" in first["data"]
    later = wait_until(lambda: _json(op, dash.url + f"api/logs/{name}?offset={first['offset']}")["data"], 30, 0.2)
    assert "tick" in later
    assert status(op, dash.url + "api/logs/..%2Fhead.log") in (400, 404)
    assert status(op, dash.url + "api/logs/no-such.log") == 404


def test_untrusted_names_are_escaped(dash):
    body = dash.opener().open(dash.url + "actors", timeout=30).read().decode()
    assert ACTOR_NAME not in body and "&lt;b&gt;ticker&lt;/b&gt;" in body
