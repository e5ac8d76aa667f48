"""Concurrency groups of actors (Ray's ``concurrency_groups``): methods split into groups,
each with its own concurrency limit and its own thread(s), so that calls in one group never
wait behind calls in another (a health check beside long requests).

``@remote(concurrency_groups={"io": 2, "compute": 4})`` defines the groups,
``@method(concurrency_group="io")`` puts a method in one, ``handle.m.options(
concurrency_group="compute").remote()`` picks one for a call; every other call is in the
default group, whose limit is ``max_concurrency`` (1000 for an async actor, 1 otherwise).
In an async actor each group has an event loop of its own, in its own thread, with a
semaphore for its limit (the default group uses the actor's loop); in a threaded actor each
group is a thread pool of its size. The definitions are checked where the actor is created
(:func:`check_groups`); the worker builds the executors (:class:`GroupExecutors`).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

RESERVED = "_ray_system"  # Ray's name for its internal group; users may not define it


def check_groups(groups: Any) -> dict[str, int]:
    """``concurrency_groups`` as given (None: none), checked: names to positive integers."""
    if groups is None:
        return {}
    if not isinstance(groups, dict):
        raise TypeError(f"concurrency_groups must be a dict of group name -> max concurrency, got "
                        f"{type(groups).__name__}")
    for name, limit in groups.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"a concurrency group's name must be a non-empty str, got {name!r}")
        if name == RESERVED:
            raise ValueError(f"the concurrency group name {RESERVED!r} is reserved; pick another")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"concurrency group {name!r} needs a positive integer max concurrency, "
                             f"got {limit!r}")
    return dict(groups)


def method_groups(cls: type) -> dict[str, str]:
    """Method name -> the concurrency group its ``@method(concurrency_group=...)`` names."""
    out = {}
    for name, member in inspect.getmembers(cls, callable):
        group = getattr(member, "__ember_method_options__", {}).get("concurrency_group")
        if group is not None:
            out[name] = group
    return out


def check_method_groups(class_name: str, methods: dict[str, str], groups: dict[str, int]) -> None:
    """Every group a method names must be defined on the actor."""
    for method, group in methods.items():
        if group not in groups:
            raise ValueError(f"method {class_name}.{method} is in concurrency group {group!r}, which "
                             f"the actor does not define; define it with @remote(concurrency_groups="
                             f"{{{group!r}: N}}) or .options(concurrency_groups=...)")


def _start_loop(name: str) -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name=name, daemon=True).start()
    return loop


class GroupExecutors:
    """Where an actor's calls run, by concurrency group (in the actor's worker process)."""

    def __init__(self, groups: dict[str, int], methods: dict[str, str]) -> None:
        self.groups = groups
        self.methods = methods
        self.loops: dict[str | None, tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = {}
        self.pools: dict[str | None, ThreadPoolExecutor] = {}

    def group_of(self, method: str, chosen: str | None) -> str | None:
        """The group a call runs in: the one chosen for the call, else its method's, else
        the default group (None). A name the actor does not define means the default."""
        group = chosen if chosen is not None else self.methods.get(method)
        return group if group in self.groups else None

    def start_async(self, default_loop: asyncio.AbstractEventLoop, default_limit: int) -> None:
        self.loops[None] = (default_loop, asyncio.Semaphore(default_limit))
        for name, limit in self.groups.items():
            self.loops[name] = (_start_loop(f"ember-actor-{name}"), asyncio.Semaphore(limit))

    def start_threaded(self, default_limit: int) -> None:
        self.pools[None] = ThreadPoolExecutor(max_workers=default_limit, thread_name_prefix="ember-actor")
        for name, limit in self.groups.items():
            self.pools[name] = ThreadPoolExecutor(max_workers=limit, thread_name_prefix=f"ember-actor-{name}")

    def loop_for(self, group: str | None) -> tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]:
        return self.loops[group]

    def pool_for(self, group: str | None) -> ThreadPoolExecutor:
        return self.pools[group]
