"""The object table's bound on small values kept in the agent's memory: past it, new small
values go to the shared-memory arena, and when that is full of values in use, the object
holds an ObjectStoreFullError naming the bound. A real arena file in /dev/shm, no processes."""

from __future__ import annotations

import uuid

import pytest
from ember import _messages as M
from ember._serialization import deserialize, serialize
from ember.exceptions import ObjectStoreFullError
from ember_node.objects import ClientRefs, ObjectTable, default_inline_limit
from ember_node.store import PAGE, Arena

KiB = 1024


@pytest.fixture
def table(tmp_path):
    arena = Arena(f"/dev/shm/ember-unit-{uuid.uuid4().hex[:12]}", 4 * PAGE)
    try:
        yield ObjectTable(arena, str(tmp_path / "spill"), inline_limit=10 * KiB)
    finally:
        arena.close()


def payload(value: object) -> bytes:
    return serialize(value).to_bytes()


def test_small_values_stay_inline_up_to_the_bound(table):
    me = ClientRefs()
    blobs = [payload(bytes([i]) * 3000) for i in range(5)]
    for i, blob in enumerate(blobs):
        table.put_inline(bytes([i]) * 16, blob, [], me)
    kinds = [table.objs[bytes([i]) * 16].kind for i in range(5)]
    assert kinds[:3] == [M.INLINE] * 3 and kinds[3:] == [M.STORE] * 2
    assert table.inline_bytes <= table.inline_limit
    assert table.inline_moved_total == 2
    # a value moved to the arena reads back the same
    offset, size = table.read_pin(bytes([4]) * 16, me)
    view = table.arena.view()
    try:
        assert deserialize(bytes(view[offset : offset + size])) == bytes([4]) * 3000
    finally:
        view.release()
    table.read_unpin(bytes([4]) * 16, me)
    table.drop_client(me)
    assert table.inline_bytes == 0 and table.arena.used == 0 and not table.objs


def test_full_store_gives_an_error_naming_the_bound(table):
    me = ClientRefs()
    for i in range(3):  # inline: 3 x ~3 KiB
        table.put_inline(b"i%d" % i, payload(b"x" * 3000), [], me)
    for i in range(4):  # the arena: 4 pages, each mapped by a reader (cannot spill)
        table.put_inline(b"s%d" % i, payload(b"y" * 3000), [], me)
        table.read_pin(b"s%d" % i, me)
    table.put_inline(b"last", payload(b"z" * 3000), [], me)
    obj = table.objs[b"last"]
    assert obj.kind == M.ERROR
    err = deserialize(obj.payload)
    assert isinstance(err, ObjectStoreFullError)
    assert "bound of 10.0 KiB (EMBER_INLINE_OBJECTS_MAX_BYTES)" in str(err)
    table.drop_client(me)
    assert table.inline_bytes == 0 and table.arena.used == 0


def test_default_inline_limit():
    assert default_inline_limit({"EMBER_INLINE_OBJECTS_MAX_BYTES": "12345"}) == 12345
    assert 16 << 20 <= default_inline_limit({}) <= 1 << 30
    with pytest.raises(ValueError, match="EMBER_INLINE_OBJECTS_MAX_BYTES='lots' must be a number of bytes"):
        default_inline_limit({"EMBER_INLINE_OBJECTS_MAX_BYTES": "lots"})
