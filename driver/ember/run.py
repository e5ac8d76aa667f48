"""``ember run script.py [args]`` / ``python -m ember.run script.py [args]``: run an unmodified
Ray program on ember.

The program runs as ``python script.py [args]`` would (same ``sys.argv``, ``__main__``, exit
status), in an environment where ``import ray`` and every ``ray.*`` import resolve to ember
(ember._ray_alias) — in the program, in the workers of the cluster it starts, and in every
Python subprocess it starts (``multiprocessing`` children, ``subprocess`` calls), since they
inherit the environment. ``-m module`` runs a module instead of a script.
"""

from __future__ import annotations

import os
import sys

from ember._ray_alias import child_environment

USAGE = "usage: ember run script.py [args...]  |  ember run -m module [args...]"


def command(argv: list[str]) -> list[str]:
    """The interpreter command line that runs ``argv`` (script or ``-m module``, then args)."""
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(USAGE)
    if argv[0] == "-m":
        if len(argv) < 2:
            raise SystemExit(USAGE)
        return [sys.executable, "-m", *argv[1:]]
    if argv[0].startswith("-"):
        raise SystemExit(f"ember run: unknown option {argv[0]!r}\n{USAGE}")
    if not os.path.exists(argv[0]):
        raise SystemExit(f"ember run: no such file: {argv[0]}")
    return [sys.executable, *argv]


def main(argv: list[str] | None = None) -> int:
    """Replace this process with the program, run under the ``ray`` alias."""
    args = command(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, child_environment(dict(os.environ)))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
