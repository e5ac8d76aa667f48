"""``ember memory`` and ``list_objects``' ``call_site`` on a real head started by
``ember start``: a driver puts objects from two lines and submits a task, then asks the CLI
while it still holds them. Agents run under a test-private TMPDIR (see test_cli)."""

from __future__ import annotations

import json

from .helpers import last_json, run_driver
from .test_cli import cli  # noqa: F401 - the fixture

HOLDER = r"""
import json, subprocess, sys
import numpy as np
import ember
from ember.util.state import list_objects

ember.init(address="auto", log_to_driver=False)
big = [ember.put(np.zeros(1 << 20, dtype=np.uint8)) for _ in range(3)]  # BIG_LINE
small = [ember.put(i) for i in range(5)]  # SMALL_LINE


@ember.remote
def make():
    return b"x" * 1000


made = make.remote()  # TASK_LINE
ember.get(made, timeout=60)


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "ember_node.cli", "memory", *args], capture_output=True,
                       text=True, timeout=60)
    return r.stdout + r.stderr


print(json.dumps({"table": cli(), "by_count": cli("--sort-by", "count", "--json"),
                  "limit": cli("--limit", "1", "--objects"),
                  "rows": list_objects(limit=1000)}))
"""


def test_memory_by_call_site(cli):  # noqa: F811
    cli.start_head()
    script = HOLDER
    lines = {tag: next(i + 1 for i, ln in enumerate(script.splitlines()) if tag in ln)
             for tag in ("BIG_LINE", "SMALL_LINE", "TASK_LINE")}
    r = run_driver(cli.procs, script, env={"TMPDIR": str(cli.root), "EMBER_RECORD_CALLSITE": "1"})
    assert r.returncode == 0, r.stderr
    out = last_json(r)
    big, small, task = (f":{lines[t]}" for t in ("BIG_LINE", "SMALL_LINE", "TASK_LINE"))
    table = out["table"].splitlines()
    assert table[1].startswith("CALL_SITE"), out["table"]
    assert big in table[2] and " 3 " in table[2], out["table"]  # the largest total first
    assert any(small in ln and " 5 " in ln for ln in table), out["table"]
    assert any(task in ln for ln in table), out["table"]
    by_count = json.loads(out["by_count"])["groups"]
    assert by_count[0]["call_site"].endswith(small) and by_count[0]["count"] == 5
    assert "1 of" in out["limit"] and "largest objects:" in out["limit"], out["limit"]
    sites = {row["call_site"] for row in out["rows"]}
    assert any(s.endswith(big) for s in sites) and any(s.endswith(task) for s in sites), sites


UNRECORDED = r"""
import json
import ember
from ember.util.state import list_objects

ember.init(address="auto", log_to_driver=False)
ref = ember.put(b"y" * 10)
import subprocess, sys
subprocess.run([sys.executable, "-m", "ember_node.cli", "memory"], timeout=60)  # its table, then the hint
print(json.dumps([r["call_site"] for r in list_objects(filters=[("object_id", "=", ref.hex())])]))
"""


def test_call_sites_off_by_default(cli):  # noqa: F811
    cli.start_head()
    r = cli.driver(UNRECORDED)
    assert r.returncode == 0, r.stderr
    assert last_json(r) == [""]
    assert "no call sites recorded" in r.stdout and "EMBER_RECORD_CALLSITE=1" in r.stdout, r.stdout
