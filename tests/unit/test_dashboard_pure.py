"""The dashboard's pure parts: the token check and cookie (auth), the escaped HTML (pages).
No process is started."""

from __future__ import annotations

from ember_node.dashboard import auth, pages


def test_token_matches_only_the_token():
    assert auth.token_matches("abc", "abc")
    assert not auth.token_matches("abd", "abc")
    assert not auth.token_matches("", "abc") and not auth.token_matches(None, "abc")
    assert not auth.token_matches("abc", "")


def test_cookie_holds_a_digest_and_is_strict():
    header = auth.set_cookie("secret-token")
    assert "secret-token" not in header
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    value = header.split(";")[0]
    assert auth.cookie_ok(value, "secret-token")
    assert auth.cookie_ok(f"other=1; {value}", "secret-token")
    assert not auth.cookie_ok(value, "another-token")
    assert not auth.cookie_ok("ember_dashboard=forged", "secret-token")
    assert not auth.cookie_ok(None, "secret-token") and not auth.cookie_ok('"\x00;;=', "secret-token")


def test_safe_next_stays_on_this_server():
    assert auth.safe_next("/tasks?state=RUNNING") == "/tasks?state=RUNNING"
    for bad in (None, "", "//evil.example/", "https://evil.example/", "/\\evil", "tasks"):
        assert auth.safe_next(bad) == "/"


def test_task_rows_are_escaped():
    html = pages.tasks({"rows": [{"name": "<script>x()</script>", "state": "FAILED", "task_id": "ab" * 8,
                                  "error": "<img src=x>", "error_message": "Traceback <boom>",
                                  "worker_pid": 7, "duration_s": 1.5}], "total": 1})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;boom&gt;" in html
    assert "1.500 s" in html and "/logs?task_id=" in html


def test_layout_has_no_inline_script_and_marks_the_page():
    html = pages.layout("tasks", "tasks", "<p>x</p>", '/tasks?q="><script>')
    assert "<script src=/static/dashboard.js defer></script>" in html
    assert html.count("<script") == 1
    assert 'data-refresh="/tasks?q=&quot;&gt;&lt;script&gt;"' in html
    assert '<a href="/tasks" class=active>' in html


def test_empty_tables_say_so():
    assert "no actors" in pages.actors({"rows": [], "total": 0})
    assert "ember job submit" in pages.jobs([], True)
    assert "embedded" in pages.jobs([], False)


def test_login_page_keeps_next_escaped():
    html = pages.login("bad token", '/x"><script>')
    assert "<script>" not in html and "bad token" in html and 'name=token' in html


def test_serve_moves_to_the_next_free_port_or_says_which_flag_to_change():
    """A real listening socket holds the port; the server runs in-process (no agent), its
    data never asked (only the port choice is checked), and closes leaving no thread."""
    import socket
    import threading
    from types import SimpleNamespace

    import pytest
    from ember_node.dashboard.server import Dashboard

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="--dashboard-port"):
            Dashboard(SimpleNamespace(query=None), "t").serve(port, tries=1)
        d = Dashboard(SimpleNamespace(query=None), "t")
        got = d.serve(port, tries=10)
        try:
            assert got != port and d.url("0.0.0.0", with_token=True) == f"http://127.0.0.1:{got}/?token=t"
        finally:
            d.close()
    assert not [t for t in threading.enumerate() if t.name == "ember-dashboard"]
