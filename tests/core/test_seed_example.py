"""The seed example (examples/seed_chapter.py) runs as a script and prints what the
chapter promises: ordered results, a parallel speed-up, results as they finish."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_chapter.py"
WORDS = ["Fast", "and", "Simple", "Distributed", "Computing"]
EXPECTED = [(i, 2 * i, WORDS[i % 5]) for i in range(10)]


def _timing(lines: list[str], pattern: str) -> float:
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return float(m.group(1))
    raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(lines))


def test_seed_example(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    print(proc.stdout)

    sequential = _timing(lines, r"^timing: sequential calls: ([\d.]+) s")
    parallel = _timing(lines, r"^timing: parallel get: ([\d.]+) s")
    first = _timing(lines, r"^timing: wait loop: first result after ([\d.]+) s")
    wait_all = _timing(lines, r"^timing: wait loop: .* all after ([\d.]+) s")

    # The parallel get: all ten results, in order.
    data_lines = [line for line in lines if line.startswith("[(")]
    assert data_lines, proc.stdout
    assert ast.literal_eval(data_lines[0]) == EXPECTED

    # The wait loop: one finished result per line, each of the ten exactly once,
    # starting with the task that sleeps 0 s.
    waited = [
        ast.literal_eval(line) for line in lines if re.fullmatch(r"\[\(\d+, \d+, '\w+'\)\]", line)
    ]
    flat = [item for batch in waited for item in batch]
    assert sorted(flat) == EXPECTED, waited
    assert flat[0] == (0, 0, "Fast"), waited

    # The last line: refs passed as arguments arrive resolved.
    assert ast.literal_eval(lines[-1]) == [
        ((2, 4, "Simple"), (4, 8, "Computing")),
        ((4, 8, "Computing"), (8, 16, "Distributed")),
        ((6, 12, "and"), (12, 24, "Simple")),
    ]

    # The shape of the timings (loose on purpose; the targets live in bench/):
    # sequential sleeps add up to 4.5 s; in parallel on 8 CPUs the longest chain is
    # about 0.9-1.0 s; the first result of the wait loop comes long before the last.
    assert sequential >= 4.4, sequential
    assert 0.85 <= parallel < 2.0, f"parallel get took {parallel} s (sequential {sequential} s)"
    assert first < wait_all / 2, f"first result after {first} s, all after {wait_all} s"
