"""The node's shared-memory arena: one file under /dev/shm, carved up by a first-fit allocator.

Clients map the whole arena once for writing and each object read-only on demand. Freed
ranges are reused lowest-address first, so pages already faulted in by an earlier object
are written again at memcpy speed instead of paying page faults on fresh shared memory.
"""

from __future__ import annotations

import bisect
import mmap
import os

from ember_node.memory_usage import UsageReader

PAGE = mmap.PAGESIZE


def page_align(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def memory_limit() -> int:
    """This process's memory: RAM, or its memory cgroup's limit (a container's) when lower."""
    limit = UsageReader(usage_file="").limit()
    if limit:
        return limit
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


def available_memory() -> int:
    """Memory free for use now: the machine's available memory, or, in a container, its
    limit less what the container uses, whichever is lower."""
    import psutil

    free = psutil.virtual_memory().available
    for limit_path, used_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_path) as f:
                limit = f.read().strip()
            with open(used_path) as f:
                used = f.read().strip()
        except OSError:
            continue
        if limit.isdigit() and used.isdigit():
            free = min(free, int(limit) - int(used))
        break
    return max(free, 0)


def task_memory(available: int, object_store: int) -> int:
    """The ``memory`` resource a node advertises (what ``memory=`` requests are scheduled
    against), as Ray computes it: the memory available at start less the object store's.
    Ray sizes its store from the available memory (30%); ember's default comes from the
    total, so on a busy machine it can exceed what is free: the store then counts for at
    most Ray's share, and tasks still get the other 70%."""
    return max(available - min(object_store, int(available * 0.3)), 0)


def default_capacity() -> int:
    """A sane default: 30% of memory (a container's limit included), at most half of
    /dev/shm, at least 64 MiB."""
    ram = memory_limit()
    try:
        st = os.statvfs("/dev/shm")
        shm = st.f_bsize * st.f_blocks
    except OSError:
        shm = ram
    return max(64 << 20, min(int(ram * 0.3), shm // 2))


class Arena:
    """Space in a shared-memory file; ``alloc`` returns page-aligned offsets."""

    def __init__(self, path: str, capacity: int) -> None:
        self.path = path
        self.capacity = page_align(capacity)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self.fd, self.capacity)
        self._starts: list[int] = [0]
        self._sizes: list[int] = [self.capacity]
        self.used = 0
        self._mm: mmap.mmap | None = None

    def view(self) -> memoryview:
        """The whole arena, read-write (the agent uses it to spill and restore)."""
        if self._mm is None:
            self._mm = mmap.mmap(self.fd, self.capacity)
        return memoryview(self._mm)

    def alloc(self, size: int) -> int | None:
        need = page_align(max(size, 1))
        for i, avail in enumerate(self._sizes):
            if avail >= need:
                start = self._starts[i]
                if avail == need:
                    del self._starts[i]
                    del self._sizes[i]
                else:
                    self._starts[i] = start + need
                    self._sizes[i] = avail - need
                self.used += need
                return start
        return None

    def free(self, offset: int, size: int) -> None:
        size = page_align(max(size, 1))
        self.used -= size
        starts, sizes = self._starts, self._sizes
        i = bisect.bisect_left(starts, offset)
        # merge with the next free range
        if i < len(starts) and offset + size == starts[i]:
            size += sizes[i]
            del starts[i]
            del sizes[i]
        # merge with the previous free range
        if i > 0 and starts[i - 1] + sizes[i - 1] == offset:
            sizes[i - 1] += size
        else:
            starts.insert(i, offset)
            sizes.insert(i, size)

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            self._mm = None
        try:
            os.close(self.fd)
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
