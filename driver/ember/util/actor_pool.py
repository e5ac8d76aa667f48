"""``ActorPool``: run work over a fixed set of actors, one call per idle actor at a time
(Ray's ``ray.util.ActorPool``)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ember.api import get, wait
from ember.object_ref import ObjectRef

Submit = Callable[[Any, Any], ObjectRef]  # fn(actor, value) -> the ref of a call on actor


class ActorPool:
    """A pool of actor handles. ``fn(actor, value)`` starts one call on an idle actor and
    returns its ref; values wait in the pool until an actor is free.

        pool = ActorPool([Worker.remote(), Worker.remote()])
        list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3]))   # [2, 4, 6]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle: list[Any] = list(actors)
        self._running: dict[ObjectRef, tuple[int, Any]] = {}  # ref -> (submission index, actor)
        self._by_index: dict[int, ObjectRef] = {}
        self._submitted = 0  # index the next submission gets
        self._returned = 0  # index get_next returns next
        self._waiting: collections.deque[tuple[Submit, Any]] = collections.deque()

    # ------------------------------------------------------------------ submitting
    def submit(self, fn: Submit, value: Any) -> None:
        """Start ``fn(actor, value)`` on an idle actor, or queue it until one is free."""
        if self._idle:
            actor = self._idle.pop()
            ref = fn(actor, value)
            if not isinstance(ref, ObjectRef):
                raise TypeError(f"the function given to ActorPool must return an ObjectRef "
                                f"(e.g. actor.method.remote(value)), got {type(ref).__name__}")
            index = self._submitted
            self._submitted += 1
            self._running[ref] = (index, actor)
            self._by_index[index] = ref
        else:
            self._waiting.append((fn, value))

    def map(self, fn: Submit, values: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn`` to every value; yields the results in the order of ``values``."""
        self._discard_results()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Submit, values: Iterable[Any]) -> Iterator[Any]:
        """Like ``map``, but yields each result as soon as it is ready."""
        self._discard_results()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def _discard_results(self) -> None:
        """Results of earlier submissions nobody took: a new map starts clean."""
        while self._running:
            ref = next(iter(self._running))
            wait([ref])
            self._take(ref)
        self._returned = self._submitted

    # ------------------------------------------------------------------ results
    def has_next(self) -> bool:
        """True while some submitted work has not been returned by get_next*."""
        return bool(self._running) or bool(self._waiting)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The result of the oldest submission not yet returned (in submission order).

        Raises StopIteration when nothing is pending, TimeoutError when ``timeout`` passes
        first (with ``ignore_if_timedout=True`` that submission's result is then dropped)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._returned >= self._submitted and not self._waiting:
            raise ValueError("get_next() cannot be used after get_next_unordered() took the "
                             "remaining results; use get_next_unordered()")
        ref = self._by_index[self._returned]
        ready, _ = wait([ref], timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                self._returned += 1
                self._take(ref)
            raise TimeoutError(f"the next result of the ActorPool was not ready within {timeout} s")
        self._returned += 1
        return get(self._take(ref))

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Any one result that is ready (waiting for the first one to be). Raises
        StopIteration when nothing is pending, TimeoutError when ``timeout`` passes first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = wait(list(self._running), num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError(f"no result of the ActorPool was ready within {timeout} s")
        ref = ready[0]
        index = self._running[ref][0]
        self._returned = max(self._returned, index + 1)
        return get(self._take(ref))

    def _take(self, ref: ObjectRef) -> ObjectRef:
        """Forget a finished submission and give its actor back (starting queued work)."""
        index, actor = self._running.pop(ref)
        self._by_index.pop(index, None)
        self.push(actor)
        return ref

    # ------------------------------------------------------------------ actors
    def has_free(self) -> bool:
        """True when an actor is idle and no work waits for one."""
        return bool(self._idle) and not self._waiting

    def pop_idle(self) -> Any | None:
        """Take an idle actor out of the pool (None when none is idle)."""
        if self.has_free():
            return self._idle.pop()
        return None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it takes queued work at once)."""
        busy = [a for _, a in self._running.values()]
        if actor in self._idle or actor in busy:
            raise ValueError("this actor is already in the pool")
        self._idle.append(actor)
        if self._waiting:
            fn, value = self._waiting.popleft()
            self.submit(fn, value)
