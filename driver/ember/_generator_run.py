"""Running a generator task in a worker: what ``ember.worker`` does with a task or actor
method that returned a generator.

How the values go back is read from the task's first return id (``ember._ids.generator_mode``):
- streaming: each value is reported as it is yielded (YIELDED: inline, or written to the store
  first as results are), and the task's one return ends the stream with the number of values.
  An error the generator raises becomes its next value (the caller's ``get`` of that ref
  raises it), unless the task is to be retried for it; with backpressure the generator waits
  after each yield while ``threshold`` values are unconsumed (CREDIT messages say how many
  the caller has consumed).
- dynamic: every value is stored, and the one return is a ``DynamicObjectRefGenerator`` over
  them (an error raised midway is its last ref).
- static (``num_returns=n``): the yields are the task's n returns.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ember import _messages as M
from ember._ids import generator_mode, item_id
from ember._serialization import deserialize
from ember.exceptions import RayTaskError, TaskCancelledError

GENERATOR_TYPES = (types.GeneratorType, types.AsyncGeneratorType)
CREDIT_POLL_S = 0.002  # an async generator's wait for its caller to consume (no thread to block)

Pack = Callable[[tuple, Any, str], list]  # (return ids, value, task name) -> results
Fail = Callable[[tuple, str, BaseException], list]  # (return ids, task name, error) -> results
Retry = Callable[[BaseException], bool]  # whether the task is re-run for this error


def may_continue(produced: int, consumed: int, threshold: int) -> bool:
    """Whether a generator with backpressure ``threshold`` (0: none) may produce its next
    value, having yielded ``produced`` values of which its caller consumed ``consumed``."""
    return threshold <= 0 or produced - consumed < threshold


def ends_task(exc: BaseException) -> bool:
    """An error that ends the whole task rather than becoming the stream's next value."""
    if isinstance(exc, TaskCancelledError | KeyboardInterrupt | SystemExit | asyncio.CancelledError):
        return True
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, TaskCancelledError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


class StoredError:
    """A value that raises its error when read: a dynamic generator's error, kept as its last
    ref (``get`` of it raises the task's error, as for a failed task's return)."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self):
        return (_raise_stored, (self.blob,))


def _raise_stored(blob: bytes) -> Any:
    err = deserialize(blob)
    if isinstance(err, RayTaskError):
        raise err.as_instanceof_cause()
    raise err


def _sync_iter(agen: Any) -> Iterator[Any]:
    """An async generator's values, driven by an event loop of its own (a task, not an actor)."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


async def _async_iter(gen: Any) -> AsyncIterator[Any]:
    if isinstance(gen, types.AsyncGeneratorType):
        async for v in gen:
            yield v
    else:
        for v in gen:
            yield v


class GeneratorRunner:
    """Runs generators for one worker; ``pack``/``fail`` make results as the worker does."""

    def __init__(self, rt: Any, pack: Pack, fail: Fail) -> None:
        self.rt = rt
        self.pack = pack
        self.fail = fail
        self.credits: dict[bytes, int] = {}  # task id -> values its caller has consumed

    def on_credit(self, msg: tuple) -> None:
        _, tid, count = msg
        if count > self.credits.get(tid, 0):
            self.credits[tid] = count

    # ---------------------------------------------------------------- sync (a task's thread)
    def run(self, task_id: bytes, rids: tuple, gen: Any, name: str, retry: Retry) -> Any:
        """Consume ``gen``; returns the value of the task's return(s)."""
        if isinstance(gen, types.AsyncGeneratorType):
            gen = _sync_iter(gen)
        mode, threshold = generator_mode(rids[0]) if rids else ("static", 0)
        if mode == "static":
            return _static(list(gen), len(rids), name)
        if mode == "dynamic":
            return self._dynamic(gen, name, retry)
        index = 0
        try:
            try:
                for value in gen:
                    self._report(task_id, index, value, name)
                    index += 1
                    if threshold and not may_continue(index, self.credits.get(task_id, 0), threshold):
                        self._wait_credit(task_id, index, threshold)
            except BaseException as exc:  # noqa: BLE001 - the stream's next value, or the task's end
                if ends_task(exc) or retry(exc):
                    raise
                self._report_error(task_id, index, name, exc)
                index += 1
        finally:
            self.credits.pop(task_id, None)
        return index

    def _wait_credit(self, task_id: bytes, produced: int, threshold: int) -> None:
        """Pause until the caller has consumed enough (a cancel still interrupts the wait)."""
        credits = self.credits
        self.rt.wait_until(lambda: may_continue(produced, credits.get(task_id, 0), threshold), None)

    def _dynamic(self, gen: Iterator[Any], name: str, retry: Retry) -> Any:
        from ember.generators import DynamicObjectRefGenerator

        rt = self.rt
        refs = []
        try:
            for value in gen:
                refs.append(rt.put(value))
        except BaseException as exc:  # noqa: BLE001 - kept as the last ref
            if ends_task(exc) or retry(exc):
                raise
            blob = self.fail((b"",), name, exc)[0][2]
            refs.append(rt.put(StoredError(blob)))
        return DynamicObjectRefGenerator(refs)

    def _report(self, task_id: bytes, index: int, value: Any, name: str) -> None:
        oid = item_id(task_id, index)
        _, kind, payload, contained = self.pack((oid,), value, name)[0]
        self.rt.send((M.YIELDED, task_id, index, oid, kind, payload, contained))

    def _report_error(self, task_id: bytes, index: int, name: str, exc: BaseException) -> None:
        oid = item_id(task_id, index)
        _, kind, payload, contained = self.fail((oid,), name, exc)[0]
        self.rt.send((M.YIELDED, task_id, index, oid, kind, payload, contained))

    # ---------------------------------------------------------------- async (an actor's loop)
    async def run_async(self, task_id: bytes, rids: tuple, gen: Any, name: str, retry: Retry) -> Any:
        """``run`` for an async actor's method, on its event loop."""
        mode, threshold = generator_mode(rids[0]) if rids else ("static", 0)
        if mode != "streaming":
            values = [v async for v in _async_iter(gen)]
            if mode == "static":
                return _static(values, len(rids), name)
            return self._dynamic(iter(values), name, retry)
        index = 0
        try:
            try:
                async for value in _async_iter(gen):
                    self._report(task_id, index, value, name)
                    index += 1
                    while threshold and not may_continue(index, self.credits.get(task_id, 0), threshold):
                        await asyncio.sleep(CREDIT_POLL_S)
            except BaseException as exc:  # noqa: BLE001 - the stream's next value, or the task's end
                if ends_task(exc) or retry(exc):
                    raise
                self._report_error(task_id, index, name, exc)
                index += 1
        finally:
            self.credits.pop(task_id, None)
        return index


def _static(values: list, n: int, name: str) -> Any:
    """A generator task with ``num_returns=n``: its n yields are its n returns."""
    if len(values) != n:
        raise ValueError(f"task {name} has num_returns={n} but its generator yielded {len(values)} values; "
                         f"yield exactly {n}, or use num_returns=\"streaming\" for any number")
    return values[0] if n == 1 else values
