"""Run a small Ray program the way a user would (``ember run prog.py`` in a subprocess), and
build a tiny wheel for runtime_env pip tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def ember_command() -> str:
    """The ``ember`` console script of the interpreter running the tests."""
    return os.path.join(os.path.dirname(sys.executable), "ember")


def run_ray_program(
    directory: Path,
    source: str,
    *args: str,
    via: str = "cli",
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Write ``source`` to ``directory/prog.py`` and run it with ``ember run`` (``via="cli"``)
    or ``python -m ember.run`` (``via="module"``); returns the finished process (text)."""
    prog = directory / "prog.py"
    prog.write_text(textwrap.dedent(source))
    head = [ember_command(), "run"] if via == "cli" else [sys.executable, "-m", "ember.run"]
    return subprocess.run(
        [*head, str(prog), *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def output_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The program's stdout lines; fails with its stderr when it did not exit 0."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-6000:]}"
    return proc.stdout.splitlines()


def build_wheel(root, name: str = "tinyember_pkg", value: int = 42) -> str:
    """A wheel of a one-module package ``name`` whose ``VALUE`` is ``value``."""
    src = root / f"src-{name}"
    (src / name).mkdir(parents=True)
    (src / name / "__init__.py").write_text(f"VALUE = {value}\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name.replace("_", "-")}"\nversion = "1.0"\n')
    out = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = [p for p in out.iterdir() if p.name.startswith(name)]
    return str(wheel)
