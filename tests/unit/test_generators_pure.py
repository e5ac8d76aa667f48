"""Unit tests of the pure parts of generator tasks (no process is started): how a task's
return ids say how its generator runs (``ember._ids``), the backpressure rule, and what
``num_returns`` means for a function (``ember.generators``)."""

from __future__ import annotations

import pickle

import pytest
from ember._generator_run import ends_task, may_continue
from ember._ids import IdGenerator, dynamic_id, generator_mode, item_id, return_ids, stream_id
from ember.exceptions import TaskCancelledError
from ember.generators import GeneratorMode, returns_of, with_options


def test_return_ids_say_how_a_generator_runs():
    tid = IdGenerator().task_id()
    assert generator_mode(stream_id(tid)) == ("streaming", 0)
    assert generator_mode(stream_id(tid, 5)) == ("streaming", 5)
    assert generator_mode(dynamic_id(tid)) == ("dynamic", 0)
    for rid in return_ids(tid, 3):
        assert generator_mode(rid) == ("static", 0)
    assert generator_mode(IdGenerator().put_id()) == ("static", 0)


def test_item_ids_are_distinct_and_name_their_task():
    tid = IdGenerator().task_id()
    items = {item_id(tid, i) for i in range(70_000)}  # more than a 2-byte index holds
    assert len(items) == 70_000
    assert all(oid[:16] == tid for oid in items)
    assert not items & set(return_ids(tid, 3)) and stream_id(tid) not in items
    assert generator_mode(item_id(tid, 0)) == ("static", 0)


@pytest.mark.parametrize("produced,consumed,threshold,expected", [
    (5, 0, 0, True),   # no backpressure
    (1, 0, 2, True), (2, 0, 2, False), (2, 1, 2, True), (10, 8, 2, False), (10, 9, 2, True),
    (1, 0, 1, False), (1, 1, 1, True),
])
def test_backpressure_rule(produced, consumed, threshold, expected):
    assert may_continue(produced, consumed, threshold) is expected


def test_errors_that_end_the_task_rather_than_the_stream():
    assert ends_task(TaskCancelledError("x")) and ends_task(KeyboardInterrupt())
    wrapped = ValueError("pickling failed")
    wrapped.__context__ = TaskCancelledError("cancelled meanwhile")
    assert ends_task(wrapped)
    assert not ends_task(ValueError("user error"))


def test_num_returns_of_functions():
    def plain():
        return 1

    def gen():
        yield 1

    async def agen():
        yield 1

    assert returns_of(plain, {}) == 1
    assert returns_of(plain, {"num_returns": 3}) == 3
    assert returns_of(gen, {}) == GeneratorMode("streaming")
    assert returns_of(agen, {}) == GeneratorMode("streaming")
    assert returns_of(gen, {"num_returns": 2}) == 2
    assert returns_of(gen, {"num_returns": "dynamic"}) == GeneratorMode("dynamic")
    assert returns_of(gen, {"_generator_backpressure_num_objects": 4}) == GeneratorMode("streaming", 4)
    assert returns_of(gen, {"_generator_backpressure_num_objects": -1}) == GeneratorMode("streaming", 0)
    with pytest.raises(ValueError, match="num_returns"):
        returns_of(gen, {"num_returns": "many"})
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        returns_of(gen, {"_generator_backpressure_num_objects": 0})


def test_method_options_and_pickling():
    mode = GeneratorMode("streaming")
    assert with_options(mode, {}) is mode
    assert with_options(mode, {"_generator_backpressure_num_objects": 2}) == GeneratorMode("streaming", 2)
    assert with_options(mode, {"num_returns": 1}) == 1
    assert with_options(1, {"num_returns": "streaming"}) == GeneratorMode("streaming")
    assert pickle.loads(pickle.dumps(GeneratorMode("streaming", 3))) == GeneratorMode("streaming", 3)
