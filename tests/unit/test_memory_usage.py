"""Reading a node's memory usage: cgroup v2, cgroup v1 and /proc/meminfo, from fake
filesystem trees made in tmp_path (no processes)."""

from __future__ import annotations

import os
from pathlib import Path

from ember_node.memory_usage import (
    MemoryUsage,
    UsageReader,
    parse_meminfo,
    parse_proc_cgroup,
    parse_usage_file,
    tightest,
)

MiB = 1 << 20
GiB = 1 << 30

MEMINFO = "MemTotal:       16777216 kB\nMemFree:  1000 kB\nMemAvailable:   12582912 kB\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_meminfo():
    u = parse_meminfo(MEMINFO)
    assert u == MemoryUsage(4 * GiB, 16 * GiB, "/proc/meminfo")
    assert u.fraction == 0.25
    assert parse_meminfo("MemTotal: 100 kB\n") is None


def test_proc_cgroup_v1_and_v2():
    text = "12:memory:/kubepods/pod1\n4:cpu,cpuacct:/x\n0::/user.slice/app\n"
    assert parse_proc_cgroup(text) == ("/user.slice/app", "/kubepods/pod1")
    assert parse_proc_cgroup("") == (None, None)


def test_usage_file():
    assert parse_usage_file("10 100\n", "/f") == (MemoryUsage(10, 100, "EMBER_MEMORY_USAGE_FILE=/f"), None)
    assert parse_usage_file("10 100 42", "/f")[1] == 42
    assert parse_usage_file("garbage", "/f") is None


def test_tightest():
    a = MemoryUsage(50, 100, "a")
    b = MemoryUsage(900, 1000, "b")
    assert tightest([a, b]) is b
    assert tightest([]) is None


def _reader(tmp_path: Path, proc_cgroup: str) -> UsageReader:
    write(tmp_path / "proc_cgroup", proc_cgroup)
    write(tmp_path / "meminfo", MEMINFO)
    return UsageReader(cgroup_root=str(tmp_path / "cg"), proc_cgroup=str(tmp_path / "proc_cgroup"),
                       meminfo=str(tmp_path / "meminfo"), usage_file="")


def test_cgroup_v2_own_limit_minus_inactive_file(tmp_path):
    cg = tmp_path / "cg"
    write(cg / "cgroup.controllers", "memory\n")
    write(cg / "app" / "memory.max", f"{1 * GiB}\n")
    write(cg / "app" / "memory.current", f"{900 * MiB}\n")
    write(cg / "app" / "memory.stat", f"anon 1\ninactive_file {100 * MiB}\nactive_file 5\n")
    r = _reader(tmp_path, "0::/app\n")
    u = r.read()
    assert u is not None and u.used == 800 * MiB and u.total == 1 * GiB
    assert u.source == f"cgroup {cg / 'app'}"
    assert r.limit() == 1 * GiB


def test_cgroup_v2_ancestor_limit(tmp_path):
    cg = tmp_path / "cg"
    write(cg / "cgroup.controllers", "memory\n")
    write(cg / "pod" / "memory.max", f"{2 * GiB}\n")
    write(cg / "pod" / "memory.current", f"{1900 * MiB}\n")
    write(cg / "pod" / "ctr" / "memory.max", "max\n")  # no limit of its own
    write(cg / "pod" / "ctr" / "memory.current", f"{1000 * MiB}\n")
    u = _reader(tmp_path, "0::/pod/ctr\n").read()
    assert u is not None and u.total == 2 * GiB and u.used == 1900 * MiB


def test_cgroup_v2_in_a_container_reads_the_mount_root(tmp_path):
    cg = tmp_path / "cg"  # the container sees its own cgroup as the root
    write(cg / "cgroup.controllers", "memory\n")
    write(cg / "memory.max", f"{512 * MiB}\n")
    write(cg / "memory.current", f"{256 * MiB}\n")
    u = _reader(tmp_path, "0::/kubepods/burstable/pod9/abc\n").read()
    assert u is not None and u.total == 512 * MiB and u.fraction == 0.5


def test_cgroup_v1(tmp_path):
    mem = tmp_path / "cg" / "memory"
    write(mem / "memory.limit_in_bytes", "9223372036854771712\n")  # root: no limit
    write(mem / "memory.usage_in_bytes", f"{3 * GiB}\n")
    write(mem / "job" / "memory.limit_in_bytes", f"{1 * GiB}\n")
    write(mem / "job" / "memory.usage_in_bytes", f"{700 * MiB}\n")
    write(mem / "job" / "memory.stat", f"cache 5\ntotal_inactive_file {200 * MiB}\n")
    r = _reader(tmp_path, "4:memory:/job\n0::/\n")
    u = r.read()
    assert u is not None and u.used == 500 * MiB and u.total == 1 * GiB
    assert r.limit() == 1 * GiB


def test_no_cgroup_limit_falls_back_to_meminfo(tmp_path):
    mem = tmp_path / "cg" / "memory"
    write(mem / "memory.limit_in_bytes", "9223372036854771712\n")
    write(mem / "memory.usage_in_bytes", f"{3 * GiB}\n")
    r = _reader(tmp_path, "4:memory:/\n")
    assert r.read() == MemoryUsage(4 * GiB, 16 * GiB, "/proc/meminfo")
    assert r.limit() == 16 * GiB


def test_machine_tighter_than_a_loose_cgroup(tmp_path):
    cg = tmp_path / "cg"
    write(cg / "cgroup.controllers", "memory\n")
    write(cg / "memory.max", f"{64 * GiB}\n")  # above the machine's RAM
    write(cg / "memory.current", f"{4 * GiB}\n")
    r = _reader(tmp_path, "0::/\n")
    assert r.read().source == "/proc/meminfo"
    assert r.limit() == 16 * GiB


def test_fake_usage_file(tmp_path):
    f = tmp_path / "usage"
    r = UsageReader(usage_file=str(f))
    assert r.read() is None  # missing: no reading
    f.write_text(f"{3 * GiB} {4 * GiB}")
    assert r.read().fraction == 0.75
    f.write_text(f"{3 * GiB} {4 * GiB} {os.getpid()}")  # held by a live process
    assert r.read().fraction == 0.75


def test_fake_usage_file_of_a_dead_process(tmp_path):
    with open("/proc/sys/kernel/pid_max") as pid_max:
        no_such_pid = int(pid_max.read()) + 1  # above every pid the kernel hands out
    f = tmp_path / "usage"
    f.write_text(f"{3 * GiB} {4 * GiB} {no_such_pid}")
    assert UsageReader(usage_file=str(f)).read() is None
