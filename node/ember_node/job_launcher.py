"""``python -m ember_node.job_launcher PARENT_PID CMD...``: become a job's entrypoint, tied to
the head agent (``PARENT_PID``) that started it.

It asks the kernel for SIGKILL when its parent goes (``PR_SET_PDEATHSIG``, kept across the
exec), so an entrypoint does not outlive a head that was killed without the chance to stop its
jobs, then replaces itself with the command (same pid: the exit status and signals are the
command's own). A command that cannot be run exits 127 saying why, as a shell would. A job
with a runtime_env ``pip`` (``EMBER_JOB_PIP``) first gets its virtualenv on this node, and the
entrypoint imports from it (``PYTHONPATH``); a failed install exits 1 with pip's output.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, cmd = int(argv[0]), argv[1:]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the head's own shutdown still stops its jobs
    if os.getppid() != parent:  # the head died before the line above
        os._exit(1)
    from ember.runtime_env import JOB_PIP_VAR

    if os.environ.get(JOB_PIP_VAR):
        _enter_pip_env(json.loads(os.environ[JOB_PIP_VAR]))
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        print(f"ember job: cannot run {cmd[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
        os._exit(127)


def _enter_pip_env(pip: object) -> None:
    from ember._runtime_pip import ensure_env, parse_pip
    from ember.exceptions import RuntimeEnvSetupError

    spec = parse_pip(pip)
    if spec is None:
        return
    try:
        site_dir = ensure_env(spec)
    except RuntimeEnvSetupError as exc:
        print(f"ember job: RuntimeEnvSetupError: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), site_dir) if p)


if __name__ == "__main__":
    main(sys.argv[1:])
