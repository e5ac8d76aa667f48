"""What the agent accepts from a peer: the shape of every client-to-agent message.

``check`` is a pure function: it looks at one decoded message (and whether the peer has
said HELLO yet) and returns why it is not a message of the protocol, or None. The agent
closes a connection whose peer sends anything ``check`` refuses, so a handler only ever
sees messages of the right arity and field types; an exception a handler still raises is
an internal error (see ``Agent._on_readable``).
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import Any

from ember import _messages as M

from ember_node.scheduler import strategy_of

PEER_KINDS = ("driver", "worker", "node", "tool", "output")  # output: a driver's printed-lines connection

_Check = Callable[[tuple], str | None]


# These run on every message the agent reads (a SUBMIT and a DONE per task): exact-type
# tests first, then the general isinstance (an ABC's such as Real costs ~1 us per call).
def _is_id(v: Any) -> bool:
    return type(v) is bytes or isinstance(v, bytes)


def _ids(v: Any) -> bool:
    if type(v) is not list and type(v) is not tuple and not isinstance(v, list | tuple):
        return False
    for x in v:
        if type(x) is not bytes and not isinstance(x, bytes):
            return False
    return True


def _int(v: Any) -> bool:
    return type(v) is int or (isinstance(v, int) and not isinstance(v, bool))


def _real(v: Any) -> bool:
    """A real number (bool included: callers that refuse it say so)."""
    return type(v) is float or type(v) is int or isinstance(v, Real)


def _resources_ok(resources: Any) -> bool:
    if type(resources) is not dict and not isinstance(resources, dict):
        return False
    for k, v in resources.items():
        if type(k) is not str and not isinstance(k, str):
            return False
        if not _real(v) or isinstance(v, bool) or not v >= 0:
            return False
    return True


def _hello(m: tuple) -> str | None:
    _, kind, pid, wid, info = m
    if kind not in PEER_KINDS:
        return f"unknown peer kind {kind!r}"
    if not _int(pid) or not (wid is None or _int(wid)) or not (info is None or isinstance(info, dict)):
        return "HELLO needs (kind, pid, worker id or None, info dict or None)"
    if kind == "node" and not (isinstance(info, dict) and isinstance(info.get("node_id"), str)
                               and isinstance(info.get("resources"), dict)):
        return "a node's HELLO needs its node_id and resources"
    if isinstance(info, dict) and "protocol" in info:
        # (a peer from before protocol versions sends none: it is let through)
        from ember import __version__

        return M.version_mismatch(kind, info["protocol"], info.get("ember"), M.PROTOCOL_VERSION, __version__)
    return None


def _register_fn(m: tuple) -> str | None:
    _, fn_id, blob, contained = m
    if not _is_id(fn_id) or not isinstance(blob, bytes) or not _ids(contained):
        return "REGISTER_FN needs (fn_id bytes, blob bytes, contained ids)"
    return None


def task_spec_problem(spec: Any) -> str | None:
    """Why ``spec`` is not a SUBMIT task spec (see ``ember_node.tasks.Task``), or None."""
    if not isinstance(spec, tuple) or len(spec) not in (12, 13):
        return "SUBMIT needs a task spec of 12 fields (13 with a scheduling strategy)"
    tid, fn_id, name, args, deps, rids, resources, max_retries, _retry_exc, contained, extra, ns = spec[:12]
    if len(spec) == 13:
        try:
            strategy_of(spec[12])
        except ValueError:
            return "a task spec's scheduling strategy must be ('SPREAD',) or ('NODE', node id, soft)"
    if not _is_id(tid) or not (fn_id is None or _is_id(fn_id)) or not isinstance(name, str):
        return "a task spec needs a task id, a function id and a name"
    if not isinstance(args, bytes | bytearray | memoryview | None) or not _ids(deps) or not _ids(rids):
        return "a task spec's arguments, dependencies or return ids are malformed"
    if not _resources_ok(resources):
        return "a task spec's resources must map names to non-negative numbers"
    if not _int(max_retries) or not _ids(contained):
        return "a task spec's max_retries or contained ids are malformed"
    if extra is not None:
        problem = _extra_problem(extra)
        if problem:
            return problem
    if not (ns is None or isinstance(ns, str)):
        return "a task spec's namespace must be a string"
    return None


# what an actor creation's spec must hold (see ember.actor), key -> accepted types
_CREATE_SPEC: dict[str, tuple[type, ...]] = {
    "name": (str, type(None)), "namespace": (str, type(None)), "detached": (bool,),
    "max_restarts": (int,), "max_task_retries": (int,), "max_concurrency": (int,), "is_async": (bool,),
    "held": (dict,), "cpu_node": (bool,), "meta": (bytes,),
}


def _extra_problem(extra: Any) -> str | None:
    if not isinstance(extra, tuple) or not extra:
        return "a task spec's extra must be None or a ('create' | 'call', ...) tuple"
    if extra[0] == "call":
        if (len(extra) not in (3, 4) or not _is_id(extra[1]) or not isinstance(extra[2], str)
                or (len(extra) == 4 and not isinstance(extra[3], str))):
            return "an actor call's extra needs ('call', actor id, method name[, concurrency group])"
        return None
    if extra[0] == "create":
        spec = extra[1] if len(extra) == 2 else None
        if not isinstance(spec, dict):
            return "an actor creation's extra needs ('create', spec dict)"
        for key, types in _CREATE_SPEC.items():
            if not isinstance(spec.get(key), types):
                return f"an actor creation's spec needs {key!r} of type {' or '.join(t.__name__ for t in types)}"
        if not all(isinstance(k, str) and isinstance(v, Real) and v >= 0 for k, v in spec["held"].items()):
            return "an actor creation's held resources must map names to non-negative numbers"
        groups = spec.get("concurrency_groups", {})
        if not isinstance(groups, dict) or not all(
                isinstance(k, str) and _int(v) and v > 0 for k, v in groups.items()):
            return "an actor creation's concurrency groups must map names to positive integers"
        return None
    return "a task spec's extra must be None or a ('create' | 'call', ...) tuple"


def _site_problem(m: tuple, at: int) -> str | None:
    """A message's optional last item, where user code made its objects (ember._call_site)."""
    if len(m) > at and not (isinstance(m[at], str) and len(m[at]) <= 1024):
        return "a call site must be a string of at most 1024 characters"
    return None


def _submit(m: tuple) -> str | None:
    return task_spec_problem(m[1]) or _site_problem(m, 2)


def _put(m: tuple) -> str | None:
    _, oid, payload, contained = m[:4]
    if not _is_id(oid) or not isinstance(payload, bytes | bytearray) or not _ids(contained):
        return "PUT needs (object id, payload bytes, contained ids[, call site])"
    return _site_problem(m, 4)


def _seal(m: tuple) -> str | None:
    _, oid, offset, size, contained = m[:5]
    if not _is_id(oid) or not _int(offset) or not _int(size) or offset < 0 or size < 0 or not _ids(contained):
        return "SEAL needs (object id, offset >= 0, size >= 0, contained ids[, call site])"
    return _site_problem(m, 5)


def _id_list(m: tuple) -> str | None:
    return None if _ids(m[1]) else "this message needs a list of object ids"


def _done(m: tuple) -> str | None:
    _, tid, results, retry, duration, _direct = m
    if not _is_id(tid) or not isinstance(results, list | tuple) or not _real(duration):
        return "DONE needs (task id, results, retry, duration, direct)"
    if not isinstance(retry, bool | int):
        return "DONE's retry must be a bool"
    for r in results:
        if not isinstance(r, tuple) or len(r) != 4 or not _is_id(r[0]) or not _ids(r[3]):
            return "each result of DONE needs (object id, kind, payload, contained ids)"
        problem = _result_problem(r[1], r[2])
        if problem:
            return problem
    return None


def _result_problem(kind: Any, payload: Any) -> str | None:
    if kind == M.STORE:
        if not (isinstance(payload, tuple) and len(payload) == 2 and all(_int(x) and x >= 0 for x in payload)):
            return "a stored result needs (offset, size)"
    elif kind not in (M.INLINE, M.ERROR) or not isinstance(payload, bytes | bytearray):
        return "a result's kind must be INLINE, STORE or ERROR"
    return None


def _yielded(m: tuple) -> str | None:
    _, tid, index, oid, kind, payload, contained = m
    if not _is_id(tid) or not _int(index) or index < 0 or not _is_id(oid) or not _ids(contained):
        return "YIELDED needs (task id, index >= 0, object id, kind, payload, contained ids)"
    return _result_problem(kind, payload)


def _consumed(m: tuple) -> str | None:
    _, tid, count = m
    if not _is_id(tid) or not _int(count) or count < 0:
        return "CONSUMED needs (task id, count >= 0)"
    return None


def _bounce(m: tuple) -> str | None:
    specs = m[1]
    if not isinstance(specs, list | tuple) or not all(isinstance(s, tuple) and s and _is_id(s[0]) for s in specs):
        return "BOUNCE needs a list of task tuples"
    return None


def _cancel(m: tuple) -> str | None:
    return None if _is_id(m[1]) else "CANCEL needs a task id"


def _request(m: tuple) -> str | None:
    _, req_id, what, _arg = m
    if not _int(req_id) or not isinstance(what, str) or not what.isidentifier():
        return "REQUEST needs (request id, what, argument)"
    return None


def _heartbeat(m: tuple) -> str | None:
    if len(m) > 1 and not (isinstance(m[1], tuple) and all(_int(x) for x in m[1])):
        return "HEARTBEAT's store figures must be integers"
    if len(m) > 2 and not _ids(m[2]):
        return "HEARTBEAT's dropped copies must be object ids"
    if len(m) > 3 and m[3] is not None and not (
            isinstance(m[3], tuple) and len(m[3]) == 3 and _int(m[3][0]) and _int(m[3][1]) and isinstance(m[3][2], str)):
        return "HEARTBEAT's memory reading must be (used, total, source)"
    return None


def _node_event(m: tuple) -> str | None:
    _, kind, a, b = m
    if kind not in ("P", "X") or not _int(a) or not (b is None or _int(b)):
        return "NODE_EVENT needs ('P' | 'X', int, int)"
    return None


def _none(m: tuple) -> str | None:
    return None


def _node_output(m: tuple) -> str | None:
    batches = m[1]
    if not isinstance(batches, list | tuple) or not all(
            isinstance(b, tuple) and len(b) == 5 and isinstance(b[0], str) and _int(b[1])
            and isinstance(b[3], str) and isinstance(b[4], list | tuple) and all(isinstance(x, str) for x in b[4])
            for b in batches):
        return "NODE_OUTPUT needs a list of (job, pid, is_stderr, name, lines)"
    return None


# type -> (name, least items, most items, field check)
SCHEMA: dict[int, tuple[str, int, int, _Check]] = {
    M.HELLO: ("HELLO", 5, 5, _hello),
    M.REGISTER_FN: ("REGISTER_FN", 4, 4, _register_fn),
    M.SUBMIT: ("SUBMIT", 2, 3, _submit),
    M.PUT: ("PUT", 4, 5, _put),
    M.SEAL: ("SEAL", 5, 6, _seal),
    M.FETCH: ("FETCH", 2, 2, _id_list),
    M.ADDREF: ("ADDREF", 2, 2, _id_list),
    M.RELEASE: ("RELEASE", 2, 2, _id_list),
    M.UNPIN: ("UNPIN", 2, 2, _id_list),
    M.BLOCKED: ("BLOCKED", 1, 1, _none),
    M.UNBLOCKED: ("UNBLOCKED", 1, 1, _none),
    M.DONE: ("DONE", 6, 6, _done),
    M.BOUNCE: ("BOUNCE", 2, 2, _bounce),
    M.CANCEL: ("CANCEL", 4, 4, _cancel),
    M.REQUEST: ("REQUEST", 4, 4, _request),
    M.SHUTDOWN: ("SHUTDOWN", 1, 1, _none),
    M.HEARTBEAT: ("HEARTBEAT", 1, 4, _heartbeat),
    M.NODE_EVENT: ("NODE_EVENT", 4, 4, _node_event),
    M.NODE_OUTPUT: ("NODE_OUTPUT", 2, 2, _node_output),
    M.YIELDED: ("YIELDED", 7, 7, _yielded),
    M.CONSUMED: ("CONSUMED", 3, 3, _consumed),
}


def name_of(msg: Any) -> str:
    """A message's type name for logs (``?`` for anything that is not a known message)."""
    if isinstance(msg, tuple) and msg and isinstance(msg[0], int) and msg[0] in SCHEMA:
        return SCHEMA[msg[0]][0]
    return "?"


def check(msg: Any, greeted: bool) -> str | None:
    """Why ``msg`` is not a message the agent accepts from a peer, or None when it is.

    ``greeted``: the peer has sent its HELLO (the first message, and only once)."""
    if not isinstance(msg, tuple) or not msg:
        return f"a message must be a non-empty tuple, not {type(msg).__name__}"
    t = msg[0]
    entry = SCHEMA.get(t) if isinstance(t, int) and not isinstance(t, bool) else None
    if entry is None:
        return f"unknown message type {t!r:.40}"
    name, least, most, fields = entry
    if not least <= len(msg) <= most:
        return f"{name} has {len(msg)} items, not {least if least == most else f'{least} to {most}'}"
    if (t == M.HELLO) == greeted:
        return "HELLO was sent twice" if greeted else f"{name} came before HELLO"
    try:
        return fields(msg)
    except (TypeError, ValueError, AttributeError) as exc:
        return f"{name} is malformed ({exc})"
