"""Fixtures that run the real operator (kopf, in-process) against kmock's API emulator.

kmock emulates the Kubernetes API server over real HTTP because no real API server
exists on these machines; see ``ember_kmock.py`` for what the emulator adds to kmock.
"""

import asyncio
import contextlib
import itertools
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kopf
import kubernetes
import pytest
import yaml
from ember_kmock import EmberEmulator, declare_resources
from ember_operator.main import build_registry
from ember_operator.reconciler import ReconcilerOptions
from ember_operator.runtime import Operator, OperatorConfig
from kopf.testing import KopfRunner


@pytest.fixture
def kubeconfig(kmock: EmberEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig pointing at the emulator, made the default for kopf and our client."""
    path = tmp_path / "kubeconfig"
    server = str(kmock.url).rstrip("/")
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "kmock", "user": {"token": "kmock-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock",
                                                   "namespace": "default"}}],
    }))
    # The kubernetes package reads $KUBECONFIG once at import: patch the loader's default.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.fixture
def names() -> Iterator[str]:
    """Deterministic pod-name suffixes: 00001, 00002, ..."""
    return (f"{n:05d}" for n in itertools.count(1))


@pytest.fixture
def operator_config(names: Iterator[str]) -> OperatorConfig:
    """Test configuration: any free metrics port on loopback, no timer-driven passes."""
    return OperatorConfig(
        metrics_host="127.0.0.1",
        metrics_port=0,
        resync_seconds=3600,
        reconciler=ReconcilerOptions(suffix=lambda: next(names)),
    )


async def _wait_running(operator: Operator, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not operator.running or operator.server.port == 0:
        if loop.time() > deadline:
            raise AssertionError("the operator did not start")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_operator(config: OperatorConfig) -> AsyncIterator[Operator]:
    """One operator running (kopf in its own thread and loop) until the block ends."""
    operator = Operator(config)
    settings = kopf.OperatorSettings()
    # At the end of a test kopf may still be busy with the last change (waiting to see its
    # own patch come back): do not give it the default 2 s to finish before stopping.
    settings.queueing.exit_timeout = 0.1
    runner = KopfRunner(["run", "--standalone", "--all-namespaces"],
                        registry=build_registry(operator), settings=settings, timeout=30)
    # Enter and exit the runner from a thread of our own: its calls block, the emulator
    # serves on this loop. (asyncio.to_thread would leave the loop's default pool behind.)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1, thread_name_prefix="kopf-runner-control") as control:
        await loop.run_in_executor(control, runner.__enter__)
        try:
            await _wait_running(operator)
            yield operator
        finally:
            await loop.run_in_executor(control, runner.__exit__, None, None, None)
    with pytest.raises(OSError):  # no listening port left behind
        socket.create_connection(("127.0.0.1", operator.server.port), timeout=1).close()


async def no_threads_left(before: set[threading.Thread]) -> None:
    """Wait until every thread started since ``before`` has ended (fail after 5 s)."""
    # KopfRunner closes its loop without waiting for the loop's default executor, whose
    # worker (kopf's stop-flag waiter) exits just after: allow a moment for that.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while leftover := [t for t in set(threading.enumerate()) - before if t.is_alive()]:
        assert loop.time() < deadline, f"threads left behind: {leftover}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def operator(kmock: EmberEmulator, kubeconfig: Path, operator_config: OperatorConfig) -> AsyncIterator[Operator]:
    """The operator running (kopf in its own thread and loop) against the emulator."""
    declare_resources(kmock)
    before = set(threading.enumerate())
    async with running_operator(operator_config) as operator:
        yield operator
    await no_threads_left(before)
