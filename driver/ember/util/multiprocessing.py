"""``Pool``: the standard library's ``multiprocessing.Pool`` API, run on ember actors across
the cluster (Ray's ``ray.util.multiprocessing``). Each pool process is an actor that runs
``initializer(*initargs)`` once, then the chunks of work sent to it, in order."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError
from typing import Any

from ember import _context
from ember.api import cluster_resources, get, init, kill, remote, wait
from ember.object_ref import ObjectRef

__all__ = ["AsyncResult", "Pool", "TimeoutError"]


class _PoolProcess:
    """One pool process: runs the initializer, then chunks of calls."""

    def __init__(self, initializer: Callable | None, initargs: tuple) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run(self, func: Callable, chunk: list, star: bool) -> list:
        if star:
            return [func(*args) for args in chunk]
        return [func(arg) for arg in chunk]


class AsyncResult:
    """The result of ``apply_async``/``map_async``: ``get(timeout)``, ``wait``, ``ready``,
    ``successful`` (as in the standard library)."""

    def __init__(self, refs: list[ObjectRef], single: bool, callback: Callable | None = None,
                 error_callback: Callable | None = None) -> None:
        self._refs = refs
        self._single = single
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        if callback is not None or error_callback is not None:
            threading.Thread(target=self._collect, args=(callback, error_callback),
                             name="ember-pool-result", daemon=True).start()

    def _collect(self, callback: Callable | None, error_callback: Callable | None) -> None:
        self._resolve(None)
        if self._error is None:
            if callback is not None:
                callback(self._value)
        elif error_callback is not None:
            error_callback(self._error)

    def _resolve(self, timeout: float | None) -> bool:
        if self._done.is_set():
            return True
        ready, _ = wait(self._refs, num_returns=len(self._refs), timeout=timeout)
        if len(ready) < len(self._refs):
            return False
        try:
            values = list(itertools.chain.from_iterable(get(self._refs)))
            self._value = values[0] if self._single else values
        except Exception as exc:  # noqa: BLE001 - handed to get()/error_callback
            self._error = exc
        self._done.set()
        return True

    def get(self, timeout: float | None = None) -> Any:
        """The result (a list for map_async); raises the call's error, or TimeoutError."""
        if not self._resolve(timeout):
            raise TimeoutError(f"the pool's result was not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready (or ``timeout`` passes)."""
        self._resolve(timeout)

    def ready(self) -> bool:
        return self._resolve(0)

    def successful(self) -> bool:
        """Whether the call raised no error; ValueError while it is not ready."""
        if not self.ready():
            raise ValueError("the result is not ready yet")
        return self._error is None


class Pool:
    """A pool of ``processes`` actors (default: the cluster's CPUs), used like
    ``multiprocessing.Pool``; as a context manager it terminates the pool on exit.

    ``ray_address`` connects (when not yet connected); ``ray_remote_args`` are the options of
    each pool actor (default ``num_cpus=1``).
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable | None = None,
        initargs: Iterable[Any] | None = None,
        maxtasksperchild: int | None = None,
        context: Any = None,
        ray_address: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
    ) -> None:
        if maxtasksperchild is not None:
            raise NotImplementedError("Pool(maxtasksperchild=...) is not implemented by ember yet")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if _context.current_runtime() is None:
            init(address=ray_address)
        options = {"num_cpus": 1, **(ray_remote_args or {})}
        if processes is None:
            cpus = options.get("num_cpus") or 1
            processes = max(1, int(cluster_resources().get("CPU", 1) // cpus))
        if not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be a positive integer, got {processes!r}")
        cls = remote(_PoolProcess).options(**options)
        args = tuple(initargs or ())
        self._actors = [cls.remote(initializer, args) for _ in range(processes)]
        self._next = itertools.cycle(range(processes))
        self._outstanding: list[ObjectRef] = []
        self._prune_at = 64
        self._state = "running"

    # ------------------------------------------------------------------ helpers
    def _check_running(self) -> None:
        if self._state != "running":
            raise ValueError("Pool not running")

    def _send(self, func: Callable, chunk: list, star: bool) -> ObjectRef:
        actor = self._actors[next(self._next)]
        ref = actor.run.remote(func, chunk, star)
        self._outstanding.append(ref)
        if len(self._outstanding) > self._prune_at:  # forget finished work (join waits for the rest)
            done = _ready(self._outstanding)
            self._outstanding = [r for r in self._outstanding if r not in done]
            self._prune_at = max(64, 2 * len(self._outstanding))
        return ref

    def _chunks(self, func: Callable, iterable: Iterable, chunksize: int | None, star: bool) -> list[ObjectRef]:
        self._check_running()
        items = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(items), len(self._actors) * 4)
            chunksize += bool(extra)
        if not isinstance(chunksize, int) or chunksize < 1:
            chunksize = 1
        return [self._send(func, items[i:i + chunksize], star) for i in range(0, len(items), chunksize)]

    # ------------------------------------------------------------------ single calls
    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None) -> Any:
        """``func(*args, **kwds)`` in a pool process; waits for and returns the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: dict | None = None,
                    callback: Callable | None = None, error_callback: Callable | None = None) -> AsyncResult:
        """``func(*args, **kwds)`` in a pool process; an AsyncResult at once."""
        self._check_running()
        call = _Call(func, kwds or {})
        return AsyncResult([self._send(call, [tuple(args)], True)], True, callback, error_callback)

    # ------------------------------------------------------------------ maps
    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """``[func(x) for x in iterable]``, computed in the pool (in order)."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None,
                  callback: Callable | None = None, error_callback: Callable | None = None) -> AsyncResult:
        return AsyncResult(self._chunks(func, iterable, chunksize, False), False, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """``[func(*args) for args in iterable]``, computed in the pool (in order)."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None,
                      callback: Callable | None = None, error_callback: Callable | None = None) -> AsyncResult:
        return AsyncResult(self._chunks(func, iterable, chunksize, True), False, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> Iterator:
        """Results of ``func`` over ``iterable`` one by one, in order, as they are computed."""
        refs = self._chunks(func, iterable, chunksize, False)
        for ref in refs:
            yield from get(ref)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> Iterator:
        """Results of ``func`` over ``iterable`` in the order they finish."""
        pending = self._chunks(func, iterable, chunksize, False)
        while pending:
            ready, pending = wait(pending, num_returns=1)
            yield from get(ready[0])

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Accept no more work; the pool ends after its outstanding work (see join)."""
        if self._state == "running":
            self._state = "closed"

    def terminate(self) -> None:
        """End the pool processes now; outstanding work is lost."""
        if self._state == "terminated":
            return
        self._state = "terminated"
        for actor in self._actors:
            try:
                kill(actor)
            except Exception:  # noqa: BLE001 - the cluster may already be gone
                pass
        self._outstanding = []

    def join(self) -> None:
        """Wait for outstanding work after close() (or terminate()), then end the processes."""
        if self._state == "running":
            raise ValueError("Pool is still running; call close() or terminate() first")
        if self._outstanding:
            wait(self._outstanding, num_returns=len(self._outstanding))
        self.terminate()

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __reduce__(self):
        raise TypeError("a Pool cannot be passed to tasks or actors; pass its results instead")


def _ready(refs: list[ObjectRef]) -> set[ObjectRef]:
    if not refs:
        return set()
    ready, _ = wait(refs, num_returns=len(refs), timeout=0)
    return set(ready)


class _Call:
    """``func`` with keyword arguments, called with positional ones (for apply)."""

    def __init__(self, func: Callable, kwds: dict) -> None:
        self.func = func
        self.kwds = kwds

    def __call__(self, *args: Any) -> Any:
        return self.func(*args, **self.kwds)
