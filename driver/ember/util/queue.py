"""``Queue``: a first-in first-out queue shared by tasks, actors and the driver, held by an
actor (Ray's ``ray.util.queue``). Pass the Queue object itself to tasks and actors."""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any

from ember.api import get, kill, remote


class Empty(_stdlib_queue.Empty):
    """Raised by get when the queue holds nothing (after ``timeout``, or at once)."""


class Full(_stdlib_queue.Full):
    """Raised by put when the queue is at ``maxsize`` (after ``timeout``, or at once)."""


_OK = 0
_TIMED_OUT = 1


class _QueueActor:
    """Holds the items (an asyncio.Queue in an async actor, so blocked calls cost nothing)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None) -> int:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except TimeoutError:
            return _TIMED_OUT
        return _OK

    async def get(self, timeout: float | None) -> tuple[int, Any]:
        try:
            return _OK, await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return _TIMED_OUT, None

    async def put_nowait(self, item: Any) -> int:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return _TIMED_OUT
        return _OK

    async def put_nowait_batch(self, items: list) -> int:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return _TIMED_OUT
        for item in items:
            self.queue.put_nowait(item)
        return _OK

    async def get_nowait(self) -> tuple[int, Any]:
        try:
            return _OK, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return _TIMED_OUT, None

    async def get_nowait_batch(self, num_items: int) -> tuple[int, list]:
        if num_items > self.queue.qsize():
            return _TIMED_OUT, []
        return _OK, [self.queue.get_nowait() for _ in range(num_items)]


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
        raise ValueError(f"'timeout' must be a non-negative number or None, got {timeout!r}")


class Queue:
    """A FIFO queue usable from anywhere in the cluster: ``Queue(maxsize=0)`` (0: unbounded).

    ``actor_options`` are the options of the actor that holds the items (e.g. ``num_cpus``).
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"maxsize must be an integer, got {maxsize!r}")
        self.maxsize = maxsize
        options = {"num_cpus": 0, **(actor_options or {})}
        self.actor = remote(_QueueActor).options(**options).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """How many items the queue holds now."""
        return get(self.actor.qsize.remote())

    def qsize(self) -> int:
        """How many items the queue holds now."""
        return self.size()

    def empty(self) -> bool:
        return get(self.actor.empty.remote())

    def full(self) -> bool:
        return get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; when full, wait (up to ``timeout`` s) for room, then raise Full.
        With ``block=False``, raise Full at once."""
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        if get(self.actor.put.remote(item, timeout)) != _OK:
            raise Full(f"the queue stayed full (maxsize {self.maxsize}) for {timeout} s")

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """``put`` for async code: awaits room instead of blocking the thread."""
        if not block:
            status = await self.actor.put_nowait.remote(item)
        else:
            _check_timeout(timeout)
            status = await self.actor.put.remote(item, timeout)
        if status != _OK:
            raise Full(f"the queue is full (maxsize {self.maxsize})")

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item; when empty, wait (up to ``timeout`` s) for one,
        then raise Empty. With ``block=False``, raise Empty at once."""
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        status, item = get(self.actor.get.remote(timeout))
        if status != _OK:
            raise Empty(f"the queue stayed empty for {timeout} s")
        return item

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for async code: awaits an item instead of blocking the thread."""
        if not block:
            status, item = await self.actor.get_nowait.remote()
        else:
            _check_timeout(timeout)
            status, item = await self.actor.get.remote(timeout)
        if status != _OK:
            raise Empty("the queue is empty")
        return item

    def put_nowait(self, item: Any) -> None:
        """Add ``item`` now, or raise Full."""
        if get(self.actor.put_nowait.remote(item)) != _OK:
            raise Full(f"the queue is full (maxsize {self.maxsize})")

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all of ``items`` now, or none of them and raise Full."""
        items = list(items)
        if get(self.actor.put_nowait_batch.remote(items)) != _OK:
            raise Full(f"cannot add {len(items)} items to a queue of maxsize {self.maxsize} "
                       f"holding {self.size()}")

    def get_nowait(self) -> Any:
        """Remove and return the oldest item now, or raise Empty."""
        status, item = get(self.actor.get_nowait.remote())
        if status != _OK:
            raise Empty("the queue is empty")
        return item

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return the ``num_items`` oldest items now, or none and raise Empty."""
        if not isinstance(num_items, int) or isinstance(num_items, bool) or num_items < 0:
            raise ValueError(f"num_items must be a non-negative integer, got {num_items!r}")
        status, items = get(self.actor.get_nowait_batch.remote(num_items))
        if status != _OK:
            raise Empty(f"cannot get {num_items} items from a queue holding {self.size()}")
        return items

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the actor holding the queue (its items are gone)."""
        if self.actor is not None:
            kill(self.actor)
        self.actor = None
