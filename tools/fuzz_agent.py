"""``make fuzz``: random frames against a running head agent for a while (default 60 s).

Starts a head agent (local socket and gRPC port on 127.0.0.1) in a private temp dir and,
until the time is up, opens connections that send random input: bytes that are no frame,
random length headers, pickles of random values, and messages of the protocol's types
with random fields (before and after HELLO), on the Unix socket and through the ``Session``
stream, plus random bytes to every gRPC method. Every second it checks that the agent
answers a request; at the end a driver runs tasks. Prints the figures, exits 1 when the
agent died or stopped answering.

    python tools/fuzz_agent.py [--seconds 60] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter

import grpc
from ember import _messages as M
from ember._proto import node_pb2 as pb
from ember._wire import ClientConnection, ConnectionClosed, FrameError, FrameReader
from ember_node.protocol import SCHEMA

SERVICE = pb.DESCRIPTOR.services_by_name["Node"].full_name
METHODS = {"Ping": "uu", "ClusterInfo": "uu", "Session": "ss", "WriteObject": "su", "ReadObject": "us",
           "ReadCopy": "us"}


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def random_value(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(12 if depth < 2 else 8)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([0, 1, -1, 2**31, -(2**63), 4096, rng.randrange(1 << 20)])
    if pick == 2:
        return rng.random() * rng.choice([1, -1, 1e9])
    if pick == 3:
        return rng.randbytes(rng.choice([0, 1, 16, 20, 28, 100]))
    if pick == 4:
        return rng.choice(["", "driver", "worker", "node", "tool", "stats", "nodes", "session", "x" * 300])
    if pick == 5:
        return rng.choice([True, False])
    if pick == 6:
        return uuid.uuid4().bytes + rng.randbytes(rng.choice([0, 4, 12]))
    if pick == 7:
        return rng.choice([M.INLINE, M.STORE, M.ERROR, "P", "X", "create", "call"])
    if pick == 8:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 9:
        return tuple(random_value(rng, depth + 1) for _ in range(rng.randrange(13)))
    if pick == 10:
        return {str(random_value(rng, depth + 1))[:10]: random_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return {"CPU": rng.choice([1.0, -1.0, 1e300, 0.0])}


def random_message(rng: random.Random) -> tuple:
    t = rng.choice(list(SCHEMA) + [rng.randrange(-5, 100)])
    entry = SCHEMA.get(t)
    n = rng.randint(entry[1], entry[2]) if entry and rng.random() < 0.8 else rng.randrange(7)
    return (t, *(random_value(rng) for _ in range(max(n - 1, 0))))


REQUESTS = ["stats", "nodes", "list", "session", "alloc", "pin", "get_actor", "kill_actor", "nope"]


def plausible_message(rng: random.Random, ids: list[bytes]) -> tuple:
    """A message that passes ``protocol.check`` but asks for random things (unknown ids,
    odd resources, ids other connections made, requests with random arguments)."""
    def oid() -> bytes:
        return rng.choice(ids) if ids and rng.random() < 0.5 else uuid.uuid4().bytes + rng.randbytes(4)

    t = rng.choice([M.SUBMIT, M.SUBMIT, M.PUT, M.SEAL, M.FETCH, M.ADDREF, M.RELEASE, M.UNPIN, M.DONE,
                    M.BOUNCE, M.CANCEL, M.REQUEST, M.REQUEST, M.BLOCKED, M.UNBLOCKED, M.HEARTBEAT,
                    M.NODE_EVENT, M.REGISTER_FN, M.YIELDED, M.CONSUMED])
    if t == M.SUBMIT:
        rid = uuid.uuid4().bytes + rng.randbytes(4)
        ids.append(rid)
        extra = rng.choice([None, None, ("call", oid()), ("call",), ("create", random_value(rng)), ("create",)])
        return (t, (uuid.uuid4().bytes, rng.choice([None, oid()]), "fuzzed", rng.randbytes(rng.randrange(30)),
                    [oid() for _ in range(rng.randrange(3))], [rid], {"CPU": rng.choice([0.0, 0.5, 1.0, 1e9])},
                    rng.choice([0, 1, -1]), rng.choice([False, True]), [oid() for _ in range(rng.randrange(2))],
                    extra, rng.choice([None, "ns"])))
    if t == M.PUT:
        o = oid()
        ids.append(o)
        return (t, o, rng.randbytes(rng.randrange(64)), [])
    if t == M.SEAL:
        return (t, oid(), rng.randrange(0, 1 << 27, 4096), rng.randrange(1 << 20), [])
    if t in (M.FETCH, M.ADDREF, M.RELEASE, M.UNPIN):
        return (t, [oid() for _ in range(rng.randrange(1, 4))])
    if t == M.DONE:
        return (t, uuid.uuid4().bytes, [(oid(), M.INLINE, b"x", [])], rng.choice([False, True]), 0.001, False)
    if t == M.BOUNCE:
        return (t, [(uuid.uuid4().bytes,)])
    if t == M.CANCEL:
        return (t, uuid.uuid4().bytes, rng.choice([False, True]), False)
    if t == M.REQUEST:
        return (t, rng.randrange(1 << 20), rng.choice(REQUESTS), random_value(rng))
    if t == M.HEARTBEAT:
        return (t, (1, 2, 3), [oid()])
    if t == M.NODE_EVENT:
        return (t, rng.choice(["P", "X"]), rng.randrange(100), rng.randrange(100))
    if t == M.REGISTER_FN:
        return (t, oid(), rng.randbytes(20), [])
    if t == M.YIELDED:  # a task id taken from a return id another connection made
        o = oid()
        kind, payload = rng.choice([(M.INLINE, b"x"), (M.STORE, (rng.randrange(0, 1 << 27, 4096), 4096))])
        return (t, o[:16], rng.randrange(3), o[:16] + rng.randbytes(4), kind, payload, [])
    if t == M.CONSUMED:
        return (t, oid()[:16], rng.randrange(1 << 40))
    return (t,)


def random_frames(rng: random.Random, figures: Counter, ids: list[bytes] | None = None) -> bytes:
    out = []
    if rng.random() < 0.7:
        out.append(frame(pickle.dumps((M.HELLO, rng.choice(["driver", "tool"]), os.getpid(), None, None))))
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.3 and ids is not None and out:
            body = pickle.dumps(plausible_message(rng, ids))
            figures["well-formed, random content"] += 1
        elif kind < 0.55:
            body = pickle.dumps(random_message(rng))
            figures["protocol-shaped"] += 1
        elif kind < 0.7:
            body = pickle.dumps(random_value(rng))
            figures["pickled values"] += 1
        elif kind < 0.85:
            body = rng.randbytes(rng.randrange(64))
            figures["random bytes"] += 1
        else:
            out.append(struct.pack("<I", rng.choice([0xFFFFFFFF, 1 << 31, rng.randrange(1 << 32)])))
            figures["random length headers"] += 1
            break
        if rng.random() < 0.05:  # a truncated frame
            out.append(frame(body)[: rng.randrange(1, len(body) + 4)])
            figures["truncated"] += 1
            break
        out.append(frame(body))
    figures["frames"] += len(out)
    return b"".join(out)


def drain(sock: socket.socket, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def goodbyes(data: bytes) -> int:
    try:
        msgs = FrameReader().feed(data)
    except FrameError as exc:
        msgs = exc.messages
    return sum(1 for m in msgs if isinstance(m, tuple) and m and m[0] == M.GOODBYE)


def fuzz_unix(path: str, rng: random.Random, figures: Counter, ids: list[bytes]) -> None:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        s.sendall(random_frames(rng, figures, ids))
        figures["unix connections"] += 1
        figures["GOODBYEs"] += goodbyes(drain(s, 0.05))
    except OSError:
        figures["unix send errors (peer closed first)"] += 1
    finally:
        s.close()


def fuzz_grpc(address: str, token: str, rng: random.Random, figures: Counter, ids: list[bytes]) -> None:
    chan = grpc.insecure_channel(address)
    meta = (("authorization", f"Bearer {token}"),)
    try:
        method = rng.choice(list(METHODS))
        kind = METHODS[method]
        if method == "Session":
            call = chan.stream_stream(f"/{SERVICE}/Session", request_serializer=pb.Frames.SerializeToString,
                                      response_deserializer=pb.Frames.FromString)
            data = random_frames(rng, figures, ids)
            cuts = sorted(rng.sample(range(len(data) + 1), min(3, len(data) + 1)))
            chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]
            got = b"".join(r.data for r in call(iter(pb.Frames(data=c) for c in chunks), metadata=meta, timeout=5))
            figures["GOODBYEs"] += goodbyes(got)
        else:
            payload = rng.randbytes(rng.randrange(40))
            factory = {"uu": chan.unary_unary, "us": chan.unary_stream, "su": chan.stream_unary}[kind]
            call = factory(f"/{SERVICE}/{method}")
            if kind == "su":
                call(iter([payload] * rng.randint(1, 3)), metadata=meta, timeout=5)
            elif kind == "us":
                list(call(payload, metadata=meta, timeout=5))
            else:
                call(payload, metadata=meta, timeout=5)
        figures[f"grpc {method} ok"] += 1
    except grpc.RpcError as exc:
        figures[f"grpc {exc.code().name}"] += 1
    finally:
        chan.close()
        figures["grpc calls"] += 1


def answers(path: str) -> bool:
    try:
        conn = ClientConnection.connect(path, timeout=10)
    except OSError:
        return False
    try:
        conn.send((M.HELLO, "tool", os.getpid(), None, None))
        conn.send((M.REQUEST, 1, "stats", None))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(m[0] == M.REPLY and m[1] == 1 for m in conn.recv(1.0)):
                return True
        return False
    except ConnectionClosed:
        return False
    finally:
        conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep-log", default=None, help="copy the agent's log here at the end")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    root = tempfile.mkdtemp(prefix="ember-fuzz-")
    token = uuid.uuid4().hex
    token_file = os.path.join(root, "token")
    with open(token_file, "w") as f:
        f.write(token)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = os.path.join(root, "agent.log")
    rfd, wfd = os.pipe()
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "ember_node", "--session-dir", os.path.join(root, "s"), "--num-cpus", "1",
             "--object-store-memory", str(64 << 20), "--port", str(port), "--token-file", token_file,
             "--ready-fd", str(wfd)], pass_fds=(wfd,), stdout=log, stderr=log, start_new_session=True)
    os.close(wfd)
    figures: Counter = Counter()
    ids: list[bytes] = []  # object ids some connection made: later ones refer to them
    ok = False
    try:
        with os.fdopen(rfd) as ready:
            info = json.loads(ready.readline())
        address = f"127.0.0.1:{port}"
        started = time.monotonic()
        last_check = started
        while time.monotonic() - started < args.seconds and agent.poll() is None:
            if rng.random() < 0.6:
                fuzz_unix(info["socket"], rng, figures, ids)
            else:
                fuzz_grpc(address, token, rng, figures, ids)
            del ids[:-2000]
            if time.monotonic() - last_check >= 1.0:
                last_check = time.monotonic()
                figures["liveness checks"] += 1
                if not answers(info["socket"]):
                    figures["liveness checks failed"] += 1
        elapsed = time.monotonic() - started
        alive = agent.poll() is None and answers(info["socket"])
        driver_ok = alive and run_driver(address, token)
        with open(log_path, errors="replace") as f:
            text = f.read()
        ok = alive and driver_ok and not figures["liveness checks failed"]
        print(f"fuzz: seed {seed}, {elapsed:.0f} s against one head agent")
        for key in sorted(figures):
            print(f"  {key:40s} {figures[key]:>9}")
        print(f"  {'refusals logged':40s} {text.count('closing the connection of'):>9}")
        print(f"  {'internal errors logged (tracebacks)':40s} {text.count('internal error'):>9}")
        kinds = Counter(line.split(":", 1)[0] + ": " + line.split(":", 1)[1].strip()[:70]
                        for line in text.splitlines()
                        if re.match(r"^\w+(Error|Exception): ", line))
        for kind, n in kinds.most_common(8):
            print(f"    {n:>6} x {kind}")
        print(f"  {'agent alive at the end':40s} {'yes' if alive else 'NO':>9}")
        print(f"  {'a driver ran tasks afterwards':40s} {'yes' if driver_ok else 'NO':>9}")
        if not ok:
            print(f"agent log tail:\n{text[-4000:]}")
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if args.keep_log:
            shutil.copy(log_path, args.keep_log)
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


def run_driver(address: str, token: str) -> bool:
    script = textwrap.dedent(f"""
        import ember
        ember.init({address!r}, token={token!r})

        @ember.remote
        def square(x):
            return x * x

        assert ember.get([square.remote(i) for i in range(10)]) == [i * i for i in range(10)]
        ember.shutdown()
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "EMBER_TOKEN")}
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
