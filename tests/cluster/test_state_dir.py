"""Issue 11, part 3: ember's state directory, records, sockets and session dirs are trusted
only when they are this user's own and private.

The attack: another local user creates ``$TMPDIR/ember-<our uid>/agents/<pid>.json`` naming
their own socket, and our ``init(address="auto")`` connects there and unpickles the reply.
With root, the attacker is a real second uid (``os.setuid`` in a subprocess); without root
that test is skipped. Every test uses its own TMPDIR (a sticky, world-writable dir like
/tmp), so the machine's real state dir is never touched.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from ember import _private_dir
from ember._local_cluster import base_dir

from .helpers import wait_until

NOBODY = 65534


@pytest.fixture
def tmpdir_like_tmp(tmp_short):
    """A sticky world-writable directory standing in for /tmp."""
    os.chmod(tmp_short, 0o711)  # a second user may pass through to it
    path = tmp_short / "tmp"
    path.mkdir()
    os.chmod(path, 0o1777)
    return path


def _st(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))


def test_problem_is_a_pure_check_of_owner_type_and_mode():
    me = 1000
    assert _private_dir.problem(_st(stat.S_IFDIR | 0o700, me), "dir", me) is None
    assert "owned by uid 1001" in _private_dir.problem(_st(stat.S_IFDIR | 0o700, 1001), "dir", me)
    assert "0755" in _private_dir.problem(_st(stat.S_IFDIR | 0o755, me), "dir", me)
    assert "symbolic link" in _private_dir.problem(_st(stat.S_IFLNK | 0o777, me), "dir", me)
    assert "not a directory" in _private_dir.problem(_st(stat.S_IFREG | 0o600, me), "dir", me)
    assert _private_dir.problem(_st(stat.S_IFREG | 0o644, me), "file", me) is None
    assert "change it" in _private_dir.problem(_st(stat.S_IFREG | 0o666, me), "file", me)
    assert _private_dir.problem(_st(stat.S_IFSOCK | 0o755, me), "socket", me) is None
    assert "not a socket" in _private_dir.problem(_st(stat.S_IFREG | 0o600, me), "socket", me)


def test_the_state_dir_is_made_0700_and_prefers_xdg_runtime_dir(tmpdir_like_tmp, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmpdir_like_tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    path = base_dir()
    assert path == str(tmpdir_like_tmp / f"ember-{os.getuid()}")
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700
    runtime = tmpdir_like_tmp / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert base_dir() == str(runtime / "ember")
    assert stat.S_IMODE(os.lstat(runtime / "ember").st_mode) == 0o700
    os.chmod(runtime, 0o755)  # a runtime dir others can enter is not trusted either
    with pytest.raises(_private_dir.UnsafePathError, match="0755"):
        base_dir()


def _env(tmp: os.PathLike, procs) -> dict[str, str]:
    env = procs.env({"TMPDIR": str(tmp)})
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def _init_auto(procs, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = textwrap.dedent("""
        import ember
        try:
            ember.init(address="auto")
        except Exception as exc:
            print(type(exc).__name__ + ": " + str(exc))
        else:
            print("connected")
    """)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_a_state_dir_open_to_others_is_refused_by_drivers_and_the_cli(tmpdir_like_tmp, procs):
    state = tmpdir_like_tmp / f"ember-{os.getuid()}"
    state.mkdir()
    os.chmod(state, 0o777)
    env = _env(tmpdir_like_tmp, procs)
    out = _init_auto(procs, env).stdout
    assert "UnsafePathError: refusing to use" in out and str(state) in out and "0777" in out
    started = subprocess.run([sys.executable, "-m", "ember_node.cli", "start", "--head", "--port", "0"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "refusing to use" in started.stderr and "XDG_RUNTIME_DIR" in started.stderr
    assert not (state / "agents").exists()


def test_a_record_naming_a_socket_others_can_replace_is_refused(tmpdir_like_tmp, procs, tmp_short):
    env = _env(tmpdir_like_tmp, procs)
    records = tmpdir_like_tmp / f"ember-{os.getuid()}" / "agents"
    records.mkdir(parents=True)
    os.chmod(records.parent, 0o700)
    os.chmod(records, 0o700)
    loose = tmp_short / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    # a live process whose command line names ember_node passes for an agent
    fake = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)", "ember_node"], env=env)
    (records / f"{fake.pid}.json").write_text(json.dumps(
        {"pid": fake.pid, "role": "head", "socket": str(loose / "agent.sock"), "session_dir": str(loose)}))
    os.chmod(records / f"{fake.pid}.json", 0o600)
    out = _init_auto(procs, env).stdout
    assert "UnsafePathError" in out and str(loose) in out, out


ATTACKER = """
import json, os, socket, sys, time
os.setgid({uid}); os.setuid({uid})
base = os.path.join({tmp!r}, "ember-{victim}")
os.makedirs(os.path.join(base, "agents"), mode=0o755)
os.chmod(base, 0o755)
path = os.path.join({tmp!r}, "evil.sock")
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
os.chmod(path, 0o777)
srv.listen(8)
rec = {{"pid": os.getpid(), "role": "head", "socket": path, "session_dir": {tmp!r}}}
with open(os.path.join(base, "agents", f"{{os.getpid()}}.json"), "w") as f:
    json.dump(rec, f)
print("ready", flush=True)
srv.settimeout(30)
try:
    conn, _ = srv.accept()
    print("a victim connected", flush=True)
    conn.close()
except OSError:
    pass
"""


def test_a_state_dir_planted_by_another_user_is_refused(tmpdir_like_tmp, procs):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second local user (os.setuid in a subprocess)")
    code = ATTACKER.format(uid=NOBODY, tmp=str(tmpdir_like_tmp), victim=os.getuid())
    # "ember_node" on its command line makes the attacker's pid pass for an agent
    attacker = procs.spawn([sys.executable, "-c", code, "ember_node"], stdout=subprocess.PIPE, text=True,
                           env=procs.env(), start_new_session=True)
    assert attacker.stdout.readline().strip() == "ready"
    state = tmpdir_like_tmp / f"ember-{os.getuid()}"
    assert os.lstat(state).st_uid == NOBODY
    out = _init_auto(procs, _env(tmpdir_like_tmp, procs)).stdout
    assert "UnsafePathError: refusing to use" in out and f"owned by uid {NOBODY}" in out, out
    attacker.kill()
    rest = attacker.communicate(timeout=30)[0]
    assert "a victim connected" not in rest
    assert wait_until(lambda: attacker.poll() is not None, 30)
