"""Message type tags for the intra-host protocol (``_wire``); the first item of each tuple.

Client (driver or worker) to agent:
  HELLO(kind, pid, worker_id, info)            first message on a connection; ``info`` carries
                                               the peer's PROTOCOL_VERSION (``hello_info``)
  REGISTER_FN(fn_id, blob, contained)          a function's pickled body, once per driver
  SUBMIT(spec[, site])                         a task (see TaskSpec in ember_node.tasks); ``site``:
                                               where user code called it (ember._call_site)
  PUT(obj_id, payload, contained[, site])      a small value, inline
  ALLOC(req_id, obj_id, size)                  reserve store space; REPLY(offset | error)
  SEAL(obj_id, offset, size, contained[, site])  the value is written at offset
  FETCH(ids)                                   send OBJ for each id when it is ready
  ADDREF(ids) / RELEASE(ids)                   this process started / stopped holding refs
  UNPIN(ids)                                   this process no longer maps these store objects
  BLOCKED / UNBLOCKED                          a worker waits in get/wait (gives its CPU back)
  DONE(task_id, results, retry, duration)      a worker finished a task
  BOUNCE(tasks)                                a blocked worker hands queued tasks back
  CANCEL(task_id, force)                       cancel a task
  REQUEST(req_id, what, arg)                   introspection; REPLY(req_id, value)
  SHUTDOWN()                                   the embedded cluster's driver is done
  HEARTBEAT(store, dropped, memory)            a worker node is alive (node to head), with its
                                               store (used, capacity, copies), copies dropped,
                                               and memory usage (used, total, where read) or None
  NODE_EVENT(kind, a, b)                       a worker node's zygote event: ('P', wid, pid), ('X', pid, status)
  NODE_OUTPUT([(job, pid, is_stderr, name, lines)])  what a worker node's workers printed
  YIELDED(task_id, index, obj_id, kind, payload, contained)
                                               a generator task yielded its index-th value
                                               (kind/payload as in DONE's results); the
                                               agent makes it an object its caller holds
  CONSUMED(task_id, count)                     the caller of a generator task with
                                               backpressure has taken ``count`` of its values

Agent to client:
  OBJ(obj_id, kind, payload)                   a value: kind INLINE, STORE (offset, size) or ERROR
  REPLY(req_id, value)
  EXEC(task tuple)                             run a task (to a worker)
  CANCEL(task_id)                              stop this task if it is running (to a worker)
  EXIT()                                       the worker should exit
  START_WORKER(wid) / KILL_WORKER(pid)         head to a worker node: fork a worker, kill one
  EVICT(ids)                                   these objects were freed: drop cached copies
  WARN(text)                                   a warning for the driver's user (logged there)
  GOODBYE(reason)                              the agent refused what this peer sent and closes
                                               the connection (the last message on it)
  OUTPUT([(pid, is_stderr, name, lines)])      what workers printed, to a driver's output connection
                                               (HELLO kind "output"; see ember._output)
  ITEM(task_id, index, obj_id, kind, payload)  to the caller of a generator task: its index-th
                                               value is ready (kind/payload as in OBJ)
  CREDIT(task_id, count)                       to the worker running a generator task: its
                                               caller has taken ``count`` values (backpressure)
"""

from typing import Any

# The version of this protocol (the messages here, their fields, and the gRPC service):
# raised whenever a message changes shape. A peer's HELLO (and a gRPC Ping) carries it, and
# an agent refuses a peer that speaks another one, naming both (see ``version_mismatch``).
PROTOCOL_VERSION = 1

HELLO = 1
REGISTER_FN = 2
SUBMIT = 3
PUT = 4
ALLOC = 5
SEAL = 6
FETCH = 7
ADDREF = 8
RELEASE = 9
UNPIN = 10
BLOCKED = 11
UNBLOCKED = 12
DONE = 13
BOUNCE = 14
CANCEL = 15
REQUEST = 16
SHUTDOWN = 17
HEARTBEAT = 18
NODE_EVENT = 19
NODE_OUTPUT = 20
YIELDED = 21
CONSUMED = 22

OBJ = 30
REPLY = 31
EXEC = 32
EXIT = 33
START_WORKER = 34
KILL_WORKER = 35
EVICT = 36
WARN = 37
GOODBYE = 38
OUTPUT = 39
ITEM = 40
CREDIT = 41

# object payload kinds
INLINE = 0
STORE = 1
ERROR = 2

# values above this size go to the shared-memory store instead of inline in messages
INLINE_LIMIT = 100 * 1024


def hello_info(info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A HELLO's info dict: ``info`` with this side's protocol version and ember version."""
    from ember import __version__

    return {**(info or {}), "protocol": PROTOCOL_VERSION, "ember": __version__}


def version_mismatch(peer: str, theirs: Any, their_ember: Any, ours: int, our_ember: str) -> str | None:
    """Why a ``peer`` (driver, worker, node...) speaking protocol ``theirs`` cannot talk to a
    cluster speaking ``ours``, naming both and the fix; None when they match."""
    if theirs == ours:
        return None
    from_ember = f" (ember {their_ember})" if isinstance(their_ember, str) and their_ember else ""
    return (f"the {peer} speaks ember protocol {theirs!r}{from_ember}, the cluster {ours}: install the "
            f"same ember version as the cluster ({our_ember}) where the {peer} runs")
