"""How much memory this node uses and may use: the tightest of its memory cgroup and the machine.

The kernel's out-of-memory killer acts when either the machine runs out of memory or the
memory cgroup the processes are in reaches its limit (a container's limit, a systemd slice,
a Kubernetes pod's ``resources.limits.memory``). ``read_usage`` reports whichever of these is
closest to full:

- cgroup v2: ``memory.current`` against ``memory.max`` of the agent's own cgroup and each of
  its ancestors that sets a limit (``/proc/self/cgroup`` names it, under ``/sys/fs/cgroup``);
- cgroup v1: ``memory.usage_in_bytes`` against ``memory.limit_in_bytes`` in the ``memory``
  hierarchy, the same way;
- the machine: ``MemTotal - MemAvailable`` against ``MemTotal`` from ``/proc/meminfo``.

Page cache the kernel can drop at once (``inactive_file`` in ``memory.stat``) does not count
as used, since it never makes the kernel kill anything.

Tests only: ``EMBER_MEMORY_USAGE_FILE`` names a file holding ``<used bytes> <total bytes>``,
optionally followed by a pid: the reading then holds only while that process lives (as if it
held the memory, freed when it dies). When the variable is set, that file is the only reading
(none while it is missing or unreadable), so a test puts a node under memory pressure
deterministically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

USAGE_FILE_VAR = "EMBER_MEMORY_USAGE_FILE"
CGROUP_ROOT = "/sys/fs/cgroup"
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a number near 2**63


@dataclass(frozen=True)
class MemoryUsage:
    """One reading: ``used`` of ``total`` bytes, and where it was read (for error messages)."""

    used: int
    total: int
    source: str

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total > 0 else 0.0


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None  # "max" (v2: no limit) gives None


def _stat_value(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def parse_meminfo(text: str) -> MemoryUsage | None:
    """The machine's usage from the text of ``/proc/meminfo`` (values in kB)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * 1024
    total = fields.get("MemTotal")
    available = fields.get("MemAvailable")
    if not total or available is None:
        return None
    return MemoryUsage(max(total - available, 0), total, "/proc/meminfo")


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """(cgroup v2 path, cgroup v1 memory path) from the text of ``/proc/<pid>/cgroup``."""
    v2 = v1 = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(base: str, path: str) -> list[str]:
    """``base/path`` and each of its parents up to ``base``, deepest first (existing ones only;
    the mount root alone when the path is not visible here, as in a container)."""
    parts = [p for p in path.split("/") if p]
    dirs = [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]
    found = [d for d in dirs if os.path.isdir(d)]
    return found or [base]


def _cgroup_levels(root: str, v2: str | None, v1: str | None) -> list[MemoryUsage]:
    """A reading for each cgroup level (own and ancestors) that has a memory limit."""
    out: list[MemoryUsage] = []
    if v2 is not None and os.path.exists(os.path.join(root, "cgroup.controllers")):
        for d in _ancestors(root, v2):
            limit = _read_int(os.path.join(d, "memory.max"))
            current = _read_int(os.path.join(d, "memory.current"))
            if limit is None or current is None:
                continue
            cache = _stat_value(_read(os.path.join(d, "memory.stat")), "inactive_file")
            out.append(MemoryUsage(max(current - cache, 0), limit, f"cgroup {d}"))
        if out:
            return out
    base = os.path.join(root, "memory")
    if v1 is not None and os.path.isdir(base):
        for d in _ancestors(base, v1):
            limit = _read_int(os.path.join(d, "memory.limit_in_bytes"))
            current = _read_int(os.path.join(d, "memory.usage_in_bytes"))
            if limit is None or current is None or limit >= _NO_LIMIT:
                continue
            cache = _stat_value(_read(os.path.join(d, "memory.stat")), "total_inactive_file")
            out.append(MemoryUsage(max(current - cache, 0), limit, f"cgroup {d}"))
    return out


def parse_usage_file(text: str, path: str) -> tuple[MemoryUsage, int | None] | None:
    """A test's fake reading, ``<used bytes> <total bytes> [pid]``: (reading, pid or None)."""
    parts = text.split()
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        return None
    pid = int(parts[2]) if len(parts) == 3 else None
    return MemoryUsage(int(parts[0]), int(parts[1]), f"{USAGE_FILE_VAR}={path}"), pid


def _process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return False
    return text.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def tightest(readings: list[MemoryUsage]) -> MemoryUsage | None:
    """The reading closest to its limit (the one that would make the kernel act first)."""
    return max(readings, key=lambda r: r.fraction, default=None)


class UsageReader:
    """Reads this node's memory usage; which cgroup files apply is worked out once."""

    def __init__(self, cgroup_root: str = CGROUP_ROOT, proc_cgroup: str = "/proc/self/cgroup",
                 meminfo: str = "/proc/meminfo", usage_file: str | None = None) -> None:
        self.usage_file = usage_file if usage_file is not None else os.environ.get(USAGE_FILE_VAR) or None
        self.meminfo = meminfo
        self.cgroup_root = cgroup_root
        self.v2, self.v1 = parse_proc_cgroup(_read(proc_cgroup) or "")

    def read(self) -> MemoryUsage | None:
        """The tightest reading now, or None when nothing can be read."""
        if self.usage_file:
            text = _read(self.usage_file)
            parsed = parse_usage_file(text, self.usage_file) if text is not None else None
            if parsed is None or (parsed[1] is not None and not _process_alive(parsed[1])):
                return None
            return parsed[0]
        readings = _cgroup_levels(self.cgroup_root, self.v2, self.v1)
        machine = parse_meminfo(_read(self.meminfo) or "")
        if machine is not None:
            readings.append(machine)
        return tightest(readings)

    def limit(self) -> int | None:
        """The smallest memory limit that applies (cgroup or machine), in bytes."""
        if self.usage_file:
            reading = self.read()
            return reading.total if reading else None
        totals = [r.total for r in _cgroup_levels(self.cgroup_root, self.v2, self.v1)]
        machine = parse_meminfo(_read(self.meminfo) or "")
        if machine is not None:
            totals.append(machine.total)
        return min(totals, default=None)
