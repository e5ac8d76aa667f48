"""Where the dashboard comes from: ``ember start --head`` (its flags, a taken port) and the
embedded cluster of ``ember.init()`` (the one-click URL it prints, ``include_dashboard``).
Real agents and drivers; every CLI call has a private ``TMPDIR``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from .helpers import cli_records, ember_cli, free_port, last_json, short_tmpdir


@pytest.fixture
def env(procs):
    root = short_tmpdir()
    e = procs.env({"TMPDIR": str(root)})
    yield e
    for rec in cli_records(root):
        procs.track(int(rec["pid"]))
    ember_cli(e, "stop", timeout=30)
    procs.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _code(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _start(env, *flags: str) -> str:
    r = ember_cli(env, "start", "--head", "--port", str(free_port()), "--num-cpus", "1",
                  "--object-store-memory", str(256 << 20), *flags)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_start_head_serves_the_dashboard_on_its_port(env):
    port = free_port()
    out = _start(env, "--dashboard-port", str(port))
    assert f"dashboard:        http://127.0.0.1:{port}/  (log in with the cluster token)" in out
    assert _code(f"http://127.0.0.1:{port}/login") == 200
    assert _code(f"http://127.0.0.1:{port}/api/overview") == 401


def test_start_head_include_dashboard_false_serves_none(env):
    port = free_port()
    out = _start(env, "--include-dashboard", "false", "--dashboard-port", str(port))
    assert "dashboard:" not in out
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10)


def test_start_head_with_a_taken_dashboard_port_says_so_and_runs(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _start(env, "--dashboard-port", str(port))
        assert f"dashboard:        not served: cannot serve the dashboard on 127.0.0.1:{port}" in out
        assert "--dashboard-port" in out
    status = ember_cli(env, "status")
    assert status.returncode == 0 and "nodes: 1 alive" in status.stdout


EMBEDDED = """
import http.cookiejar, json, sys, urllib.request, ember
port = int(sys.argv[1]) if len(sys.argv) > 1 else None
info = ember.init(num_cpus=1, dashboard_port=port, include_dashboard=port is not None)
out = {"dashboard_url": info.dashboard_url}
if port is not None:
    login = ember._context.current_runtime().session.raw["dashboard_login_url"]
    op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    op.open(login, timeout=30).read()
    out["nodes_alive"] = json.loads(op.open(f"http://127.0.0.1:{port}/api/overview", timeout=30).read())["nodes_alive"]
ember.shutdown()
print(json.dumps(out))
"""


def _driver(procs, *args: str):
    path = short_tmpdir("embdd-") / "driver.py"
    path.write_text(EMBEDDED)
    try:
        p = procs.spawn([sys.executable, str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, env=procs.env(), start_new_session=True)
        out, err = p.communicate(timeout=90)
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)
    finally:
        os.unlink(path)
        os.rmdir(path.parent)


def test_embedded_init_prints_a_url_that_logs_in(procs):
    port = free_port()
    r = _driver(procs, str(port))
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("ember: dashboard at ")]
    assert len(lines) == 1 and lines[0].startswith(f"ember: dashboard at http://127.0.0.1:{port}/?token=")
    assert last_json(r) == {"dashboard_url": f"127.0.0.1:{port}", "nodes_alive": 1}


def test_embedded_init_include_dashboard_false(procs):
    r = _driver(procs)
    assert r.returncode == 0, r.stderr
    assert "dashboard" not in r.stderr
    assert last_json(r) == {"dashboard_url": None}
