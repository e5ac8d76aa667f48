"""Where ember keeps its state on a machine (ember._local_cluster): filesystem only, no processes."""

from __future__ import annotations

import os
import shutil

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
