"""Where ember keeps its state on a machine (ember._local_cluster): filesystem only, no processes."""

from __future__ import annotations

import os
import shutil
import time

from ember import _local_cluster as lc


def test_socket_dir_is_short_whatever_the_session_dir(tmp_path):
    deep = tmp_path.joinpath(*(["d" * 40] * 4))
    assert lc.socket_dir(str(tmp_path)) == str(tmp_path)  # short enough: the session's own
    short = lc.socket_dir(str(deep))
    try:
        assert len(os.path.join(short, "d-4194304-abcdef.sock")) <= lc.MAX_UNIX_PATH
        assert os.stat(short).st_mode & 0o777 == 0o700
        assert lc.socket_dir(str(deep)) == short  # the same for the same session
        lc.remove_socket_dir(str(deep))
        assert not os.path.exists(short)
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_old_sessions_are_pruned_live_and_recent_ones_kept(tmp_path, monkeypatch):
    """Only the newest KEEP_SESSIONS ended sessions stay (filesystem only, no processes)."""
    import tempfile


    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = lc.sessions_dir()
    now = time.time()
    ended = []
    for i in range(lc.KEEP_SESSIONS + 3):
        path = os.path.join(root, f"ember-old-{i}")
        os.makedirs(os.path.join(path, "logs"))
        os.utime(path, (now - 3600 + i, now - 3600 + i))  # ended an hour ago, oldest first
        ended.append(path)
    recent = os.path.join(root, "ember-starting")  # no pid file yet, but new: never pruned
    os.makedirs(recent)
    fresh = lc.new_session_dir("ember-")
    left = set(os.listdir(root))
    assert left == {os.path.basename(p) for p in ended[-lc.KEEP_SESSIONS:]} | {"ember-starting",
                                                                               os.path.basename(fresh)}
    assert os.path.isdir(os.path.join(fresh, "logs"))

