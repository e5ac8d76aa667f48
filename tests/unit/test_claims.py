"""Claim slots (ember._claims): a worker process and the agent race for queued tasks; every
task is started by the worker or taken back by the agent, never both, never neither. Two
real processes share the slot file (the only I/O is that file)."""

from __future__ import annotations

import multiprocessing
import os

from ember._claims import ClaimSlot, claim_path

N = 3000


def _worker(path: str, out: str) -> None:
    slot = ClaimSlot(path)
    began = [seq for seq in range(1, N + 1) if slot.begin(seq)]
    with open(out, "w") as f:
        f.write("\n".join(map(str, began)))


def _race(tmp_path, k: int) -> tuple[set[int], set[int]]:
    path = claim_path(str(tmp_path), k)
    agent = ClaimSlot(path, create=True)
    out = str(tmp_path / f"began-{k}")
    proc = multiprocessing.get_context("fork").Process(target=_worker, args=(path, out))
    proc.start()
    taken: set[int] = set()
    up_to = 0
    while up_to < N:
        up_to = min(up_to + 25, N)
        started = agent.revoke(up_to)
        while started is None:  # the worker holds the lock this instant
            started = agent.revoke(up_to)
        taken.update(range(started + 1, up_to + 1))
    proc.join(60)
    assert proc.exitcode == 0
    with open(out) as f:
        began = {int(x) for x in f.read().split()}
    agent.close(unlink=True)
    assert not os.path.exists(path)
    return began, taken


def test_each_task_is_begun_or_taken_back_exactly_once(tmp_path):
    for k in range(10):  # until the two processes really raced (they may not, on a busy machine)
        began, taken = _race(tmp_path, k)
        assert not (began & taken), "a task was both started and taken back"
        assert began | taken == set(range(1, N + 1)), "a task was neither started nor taken back"
        if began and taken:
            return


def test_revoked_numbers_never_start(tmp_path):
    path = claim_path(str(tmp_path), 1)
    agent = ClaimSlot(path, create=True)
    worker = ClaimSlot(path)
    assert worker.begin(1)
    assert agent.revoke(3) == 1
    assert not worker.begin(2) and not worker.begin(3)
    assert worker.begin(4)
    worker.close()
    agent.close(unlink=True)
