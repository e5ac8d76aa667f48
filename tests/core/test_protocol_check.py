"""Unit tests of ``ember_node.protocol.check`` (pure: no process is started)."""

from __future__ import annotations

import pytest
from ember import _messages as M
from ember_node.protocol import check, name_of, task_spec_problem

TID = b"t" * 16
RID = b"r" * 20
SPEC = (TID, b"f" * 16, "f", b"args", [], [RID], {"CPU": 1.0}, 3, False, [], None, "ns")


@pytest.mark.parametrize("msg", [
    (M.SUBMIT, SPEC),
    (M.SUBMIT, (*SPEC[:5], [], *SPEC[6:])),  # num_returns=0
    (M.FETCH, [RID, RID]),
    (M.PUT, RID, b"x", []),
    (M.SEAL, RID, 0, 10, [RID]),
    (M.DONE, TID, [(RID, M.INLINE, b"x", []), (RID, M.STORE, (4096, 10), ())], False, 0.1, False),
    (M.REQUEST, 7, "stats", None),
    (M.HEARTBEAT,), (M.HEARTBEAT, (1, 2, 3), [RID]),
    (M.NODE_EVENT, "X", 123, -9),
    (M.CANCEL, TID, True, False),
    (M.BLOCKED,),
    (M.YIELDED, TID, 0, RID, M.INLINE, b"x", []), (M.YIELDED, TID, 3, RID, M.STORE, (0, 10), [RID]),
    (M.YIELDED, TID, 1, RID, M.ERROR, b"err", ()),
    (M.CONSUMED, TID, 2),
])
def test_messages_of_the_protocol_pass(msg):
    assert check(msg, greeted=True) is None


@pytest.mark.parametrize("msg,words", [
    (12345, "tuple"), ((), "tuple"), ([M.FETCH, []], "tuple"),
    ((999,), "unknown"), ((True,), "unknown"), (("x",), "unknown"),
    ((M.SUBMIT,), "items"), ((M.FETCH, [RID], 1), "items"),
    ((M.SUBMIT, SPEC[:11]), "12 fields"),
    ((M.SUBMIT, (*SPEC[:6], {"CPU": -1}, *SPEC[7:])), "non-negative"),
    ((M.SUBMIT, (*SPEC[:6], {"CPU": "1"}, *SPEC[7:])), "non-negative"),
    ((M.SUBMIT, (*SPEC[:10], ("other",), SPEC[11])), "extra"),
    ((M.SUBMIT, (*SPEC[:10], ("call",), SPEC[11])), "actor call"),
    ((M.SUBMIT, (*SPEC[:10], ("call", "not an id", "m"), SPEC[11])), "actor call"),
    ((M.SUBMIT, (*SPEC[:10], ("create",), SPEC[11])), "creation"),
    ((M.SUBMIT, (*SPEC[:10], ("create", {"name": None}), SPEC[11])), "creation's spec"),
    ((M.FETCH, 7), "ids"), ((M.FETCH, ["x"]), "ids"),
    ((M.SEAL, RID, -1, 10, []), "offset"),
    ((M.DONE, TID, [(RID, M.STORE, (-1, 10), [])], False, 0.0, False), "offset"),
    ((M.DONE, TID, [(RID, 9, b"", [])], False, 0.0, False), "kind"),
    ((M.REQUEST, 1, "no such", None), "REQUEST"),
    ((M.YIELDED, TID, -1, RID, M.INLINE, b"x", []), "YIELDED"),
    ((M.YIELDED, TID, 0, "rid", M.INLINE, b"x", []), "YIELDED"),
    ((M.YIELDED, TID, 0, RID, 9, b"x", []), "kind"),
    ((M.YIELDED, TID, 0, RID, M.STORE, (1,), []), "offset"),
    ((M.YIELDED, TID, 0, RID, M.INLINE, b"x"), "items"),
    ((M.CONSUMED, TID, -2), "CONSUMED"), ((M.CONSUMED, TID, True), "CONSUMED"),
    ((M.HELLO, "driver", 1, None, None), "twice"),
])
def test_malformed_messages_are_refused_with_a_reason(msg, words):
    problem = check(msg, greeted=True)
    assert problem is not None and words in problem


def test_hello_comes_first_and_names_a_known_peer_kind():
    assert check((M.HELLO, "driver", 1, None, {"direct": None}), greeted=False) is None
    assert "before HELLO" in check((M.FETCH, [RID]), greeted=False)
    assert "kind" in check((M.HELLO, "admin", 1, None, None), greeted=False)
    assert "node_id" in check((M.HELLO, "node", 1, None, {}), greeted=False)


def test_names_for_logs():
    assert name_of((M.SUBMIT, SPEC)) == "SUBMIT"
    assert name_of(12345) == "?"
    assert task_spec_problem(SPEC) is None


def test_frame_reader_refuses_bad_frames_keeping_the_messages_before_them():
    import struct

    from ember._wire import FrameError, FrameReader, encode

    good = encode((M.FETCH, [RID]))
    for bad in (struct.pack("<I", 5) + b"\x80\x05junk", struct.pack("<I", 0xFFFFFFF0)):
        reader = FrameReader(max_frame=1 << 20)
        with pytest.raises(FrameError) as info:
            reader.feed(good + bad)
        assert info.value.messages == [(M.FETCH, [RID])]
    reader = FrameReader()
    assert reader.feed(good[:3]) == [] and reader.partial == 3
    assert reader.feed(good[3:]) == [(M.FETCH, [RID])] and reader.partial == 0


@pytest.mark.parametrize("msg", [
    (M.SUBMIT, SPEC, "driver.py:12"), (M.PUT, RID, b"x", [], "a.py:1"), (M.SEAL, RID, 0, 10, [], "b.py:2")])
def test_a_call_site_may_follow_put_seal_and_submit(msg):
    assert check(msg, greeted=True) is None


@pytest.mark.parametrize("msg", [
    (M.SUBMIT, SPEC, 12), (M.PUT, RID, b"x", [], b"a.py:1"), (M.SEAL, RID, 0, 10, [], "x" * 2000),
    (M.PUT, RID, b"x", [], "a.py:1", "extra")])
def test_a_bad_call_site_is_refused(msg):
    assert check(msg, greeted=True) is not None


def test_hello_of_this_protocol_passes_and_of_another_is_refused_naming_both():
    from ember import __version__

    assert check((M.HELLO, "driver", 1, None, M.hello_info({"job": "j"})), greeted=False) is None
    assert check((M.HELLO, "tool", 1, None, None), greeted=False) is None  # a peer from before versions
    problem = check((M.HELLO, "worker", 1, 3, {"protocol": M.PROTOCOL_VERSION + 1, "ember": "0.0.1"}),
                    greeted=False)
    assert problem == (f"the worker speaks ember protocol {M.PROTOCOL_VERSION + 1} (ember 0.0.1), the cluster "
                       f"{M.PROTOCOL_VERSION}: install the same ember version as the cluster ({__version__}) "
                       f"where the worker runs")


class _Id(bytes):
    """A bytes subclass: the exact-type fast paths must still accept it."""


class _Seconds(float):
    pass


@pytest.mark.parametrize("msg", [
    (M.SUBMIT, (_Id(TID), *SPEC[1:5], (_Id(RID),), {"CPU": 1, "GPU": 0.5, "x": _Seconds(2)}, *SPEC[7:])),
    (M.SUBMIT, (*SPEC[:6], {}, *SPEC[7:])),  # an actor call: no resources
    (M.DONE, TID, [(_Id(RID), M.INLINE, b"x", (_Id(RID),))], True, _Seconds(0.5), True),
    (M.DONE, TID, [], False, 1, False),  # an integer duration
])
def test_subclasses_and_plain_numbers_pass_the_fast_paths(msg):
    assert check(msg, greeted=True) is None


@pytest.mark.parametrize("msg,words", [
    ((M.SUBMIT, (*SPEC[:6], {"CPU": True}, *SPEC[7:])), "non-negative"),
    ((M.SUBMIT, (*SPEC[:6], {"CPU": float("nan")}, *SPEC[7:])), "non-negative"),
    ((M.SUBMIT, (*SPEC[:6], {1: 1.0}, *SPEC[7:])), "non-negative"),
    ((M.SUBMIT, (*SPEC[:6], [("CPU", 1.0)], *SPEC[7:])), "non-negative"),
    ((M.SUBMIT, (*SPEC[:5], [RID, "x"], *SPEC[6:])), "malformed"),
    ((M.SUBMIT, (*SPEC[:5], {RID}, *SPEC[6:])), "malformed"),
    ((M.DONE, TID, [], False, "0.1", False), "DONE"),
    ((M.DONE, bytearray(TID), [], False, 0.1, False), "DONE"),
])
def test_the_fast_paths_refuse_what_the_general_checks_refused(msg, words):
    problem = check(msg, greeted=True)
    assert problem is not None and words in problem, problem
