"""Generator tasks, as Ray runs them: a task or actor method that ``yield``s.

- Streaming (the default for a generator function, or ``num_returns="streaming"``):
  ``.remote()`` returns an :class:`ObjectRefGenerator`; iterating it (``for ref in gen``,
  ``next(gen)``, ``async for``) gives one ObjectRef per value as the task yields it, before
  the task ends. An error raised midway is the next ref's (``get`` of it raises the task's
  error); iteration then stops. ``_generator_backpressure_num_objects=N`` pauses the generator
  while N of its values are unconsumed.
- ``num_returns="dynamic"``: ``.remote()`` returns one ObjectRef whose value is a
  :class:`DynamicObjectRefGenerator` over the refs of every yielded value.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

from ember import _messages as M
from ember._ids import dynamic_id, item_id, stream_id
from ember.exceptions import ObjectLostError
from ember.object_ref import ObjectRef

STREAMING = "streaming"
DYNAMIC = "dynamic"
BACKPRESSURE_OPTION = "_generator_backpressure_num_objects"


class GeneratorMode:
    """How a generator task's values come back: ``kind`` "streaming" or "dynamic", and for
    streaming the backpressure threshold (0: none)."""

    __slots__ = ("kind", "backpressure")

    def __init__(self, kind: str, backpressure: int = 0) -> None:
        self.kind = kind
        self.backpressure = backpressure

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, GeneratorMode) and other.kind == self.kind
                and other.backpressure == self.backpressure)

    def __repr__(self) -> str:
        return f"GeneratorMode({self.kind!r}, {self.backpressure})"

    def __reduce__(self):
        return (GeneratorMode, (self.kind, self.backpressure))


def check_num_returns(n: Any) -> None:
    """Raise ValueError unless ``n`` is a valid ``num_returns`` (a count, "streaming" or "dynamic")."""
    if n in (STREAMING, DYNAMIC) and isinstance(n, str):
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"num_returns must be a non-negative integer, \"streaming\" or \"dynamic\", got {n!r}")


def check_backpressure(n: Any) -> None:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n == 0 or n < -1):
        raise ValueError(f"{BACKPRESSURE_OPTION} must be a positive integer (or -1 for none), got {n!r}")


def returns_of(fn: Any, options: dict[str, Any]) -> int | GeneratorMode:
    """What a task's ``num_returns`` means: a count (the fast path), or how its generator's
    values come back. A generator function without ``num_returns`` streams, as in Ray."""
    n = options.get("num_returns")
    check_num_returns(n if n is not None else 1)
    backpressure = options.get(BACKPRESSURE_OPTION)
    check_backpressure(backpressure)
    if n is None:
        n = STREAMING if is_generator_function(fn) else 1
    if n == STREAMING:
        return GeneratorMode(STREAMING, max(backpressure or 0, 0))
    if n == DYNAMIC:
        return GeneratorMode(DYNAMIC)
    return n


def with_options(current: int | GeneratorMode, options: dict[str, Any]) -> int | GeneratorMode:
    """An actor method's returns (``current``) with the call's ``.options(...)`` applied."""
    n = options.get("num_returns", current)
    backpressure = options.get(BACKPRESSURE_OPTION)
    if isinstance(n, GeneratorMode):
        if backpressure is None:
            return n
        n = n.kind
    check_num_returns(n)
    check_backpressure(backpressure)
    if n == STREAMING:
        return GeneratorMode(STREAMING, max(backpressure or 0, 0))
    if n == DYNAMIC:
        return GeneratorMode(DYNAMIC)
    return n


def is_generator_function(fn: Any) -> bool:
    """Whether calling ``fn`` makes a generator (sync or async)."""
    fn = inspect.unwrap(fn) if callable(fn) else fn
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def submit(rt: Any, mode: GeneratorMode, fn_id: bytes, name: str, args: tuple, kwargs: dict,
           resources: dict[str, float], max_retries: int, retry_exceptions: Any,
           extra: Any = None, strategy: tuple | None = None) -> Any:
    """Submit a generator task: an ObjectRefGenerator (streaming) or an ObjectRef (dynamic)."""
    if mode.kind == DYNAMIC:
        return rt.submit(fn_id, name, args, kwargs, 1, resources, max_retries, retry_exceptions, extra,
                         ids=lambda tid, n: (dynamic_id(tid),), strategy=strategy)[0]
    stream: dict[int, ObjectRef] = {}

    def ids(tid: bytes, n: int) -> tuple[bytes, ...]:
        rt.streams[tid] = stream  # before the task is sent: its first value may come at once
        return (stream_id(tid, mode.backpressure),)

    end = rt.submit(fn_id, name, args, kwargs, 1, resources, max_retries, retry_exceptions, extra, ids=ids,
                    strategy=strategy)[0]
    return ObjectRefGenerator(rt, end, stream, mode.backpressure)


class ObjectRefGenerator:
    """The refs a streaming generator task yields, in order, as they come.

    ``for ref in gen`` / ``next(gen)`` wait for the next value (``async for`` / ``await
    gen.__anext__()`` in async code); ``ember.get(ref)`` reads it. An error the task raised
    midway, or a failure that ended it (its worker died, it was cancelled with
    ``ember.cancel(gen)``), is the next ref's; iteration stops after it. Dropping the
    generator drops the values not taken yet. It cannot be passed to other tasks.
    """

    def __init__(self, rt: Any, end: ObjectRef, stream: dict[int, ObjectRef], backpressure: int = 0) -> None:
        self._rt = rt
        self._end = end  # completes when the task ends: the number of values, or its error
        self._task_id = end.task_id()
        self._stream = stream
        self._backpressure = backpressure
        self._index = 0
        self._done = False

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        return self._next(None)

    def _next(self, timeout: float | None) -> ObjectRef:
        if self._done:
            raise StopIteration
        if not self._rt.wait_for(self.next_ready, timeout):
            from ember.exceptions import GetTimeoutError

            raise GetTimeoutError(f"the generator's next value did not come within {timeout} s")
        return self._take()

    def _take(self) -> ObjectRef:
        i = self._index
        ref = self._stream.pop(i, None)
        if ref is not None:
            self._index = i + 1
            if self._backpressure:
                self._rt.send((M.CONSUMED, self._task_id, i + 1))
            return ref
        kind, payload = self._rt.objects[self._end._id]
        self._done = True
        self._release()
        if kind == M.ERROR:  # the task ended without finishing its stream: the next ref says why
            return self._rt.local_error_ref(item_id(self._task_id, i), payload)
        count = self._rt.get([self._end], None)[0]
        if i < count:  # reported but never came (its node was lost)
            from ember._serialization import serialize

            blob = serialize(ObjectLostError(f"value {i} of the generator task was lost")).to_bytes()
            return self._rt.local_error_ref(item_id(self._task_id, i), blob)
        raise StopIteration

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        if not self.next_ready():
            await asyncio.get_running_loop().run_in_executor(None, self._rt.wait_for, self.next_ready, None)
        try:
            return self._take()
        except StopIteration:
            raise StopAsyncIteration from None

    # ------------------------------------------------------------------ state
    def next_ready(self) -> bool:
        """Whether ``next()`` would return without waiting."""
        return self._done or self._index in self._stream or self._end._id in self._rt.objects

    def is_finished(self) -> bool:
        """Whether the task has ended and every ref has been taken (``next`` raises StopIteration)."""
        if self._done:
            return True
        if self._index in self._stream or self._end._id not in self._rt.objects:
            return False
        kind, _ = self._rt.objects[self._end._id]
        return kind != M.ERROR and self._index >= self._rt.get([self._end], None)[0]

    def completed(self) -> ObjectRef:
        """A ref that is ready once the task has ended (``get`` raises its error if it failed)."""
        return self._end

    def task_id(self) -> bytes:
        return self._task_id

    def _release(self) -> None:
        self._rt.streams.pop(self._task_id, None)

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __reduce__(self):
        raise TypeError("an ObjectRefGenerator cannot be pickled or passed to another task; "
                        "iterate it here and pass the ObjectRefs it gives")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"


def wait_with_generators(rt: Any, items: list, num_returns: int, timeout: float | None) -> tuple[list, list]:
    """``ember.wait`` over ObjectRefs and ObjectRefGenerators: a generator is ready when its
    next ``next()`` would not wait. Both lists keep the input order."""
    for x in items:
        if not isinstance(x, ObjectRef | ObjectRefGenerator):
            raise TypeError(f"wait() expects ObjectRefs or ObjectRefGenerators, but the list holds a "
                            f"{type(x).__name__}")
    if len({id(x) for x in items}) != len(items):
        raise ValueError("wait() got the same ObjectRef or generator twice in its list; pass each once")
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or not 0 <= num_returns <= len(items):
        raise ValueError(f"num_returns must be between 0 and the number of items ({len(items)}), got {num_returns!r}")
    refs = [x for x in items if isinstance(x, ObjectRef)]
    if refs:
        rt.wait(refs, 0, 0)  # asks for the refs' values
    objects = rt.objects

    def is_ready(x: Any) -> bool:
        return x.next_ready() if isinstance(x, ObjectRefGenerator) else x._id in objects

    rt.wait_for(lambda: sum(map(is_ready, items)) >= num_returns, timeout)
    ready, rest = [], []
    for x in items:
        (ready if len(ready) < num_returns and is_ready(x) else rest).append(x)
    return ready, rest


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task: the refs of the values it yielded, in
    order (``for ref in gen``; ``len(gen)``). If the task raised midway, its last ref holds
    the error."""

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"
