"""Worker processes: ``python -m ember.worker --zygote SOCKET`` and the workers it forks.

The node agent starts one *zygote* per node. The zygote imports the runtime once, then forks a
worker whenever the agent asks ("F <worker_id>" on its stdin); it reports each child's pid
("P <worker_id> <pid>") and exit status ("X <pid> <status>") on a control pipe of its own
(never stdout: workers print to their own files, see ``ember._output``). Forked workers
share the zygote's memory pages, so a pool of workers starts in milliseconds and costs little.

A worker connects to the agent's socket, then runs the tasks the agent sends, in order, in its
main thread (so user code may use signals). While a task waits in ``get``/``wait``, the worker
tells the agent it is blocked and hands back tasks queued behind it.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import inspect
import os
import selectors
import signal
import sys
import threading
import time
import traceback
from typing import Any

from ember import _context
from ember import _messages as M
from ember._call_limit import take_retire
from ember._claims import ClaimSlot, claim_path
from ember._concurrency_groups import GroupExecutors, method_groups
from ember._direct import DirectSender
from ember._generator_run import GENERATOR_TYPES, GeneratorRunner
from ember._oom import make_worker_first
from ember._output import OutputMarks, redirect_stdio
from ember._runtime import CoreRuntime, Dep, SessionInfo
from ember._serialization import deserialize, loads_function, serialize
from ember._wire import ClientConnection, encode
from ember.exceptions import (
    RayTaskError,
    TaskCancelledError,
    UnserializableException,
    format_remote_traceback,
)
from ember.runtime_context import ActorInfo, TaskInfo, reset_current_task, set_current_task
from ember.runtime_env import ActorEnv

_PR_SET_PDEATHSIG = 1
BATCH_MAX = 64  # results held back while the next queued task runs (see Worker._done)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Worker:
    """Runs tasks sent by the agent over one connection."""

    def __init__(self, rt: CoreRuntime, worker_id: int = 0, marks: OutputMarks | None = None) -> None:
        self.rt = rt
        self.worker_id = worker_id
        self.marks = marks or OutputMarks(False)  # attributes what tasks print (ember._output)
        self.actor_mark: tuple[str, str] | None = None  # an actor's: its creator's job, its class
        self.functions: dict[bytes, Any] = {}
        # function bodies as received: a task handed back (blocked in get) or taken back
        # (work stealing) may come again without its body, which this worker was sent once
        self.blobs: dict[bytes, bytes] = {}
        self.cancelled: set[bytes] = rt.cancelled_tasks  # (runtime contexts read it too)
        self.claim: ClaimSlot | None = None
        self.direct = DirectSender()
        self.instance: Any = None
        self.aloop: asyncio.AbstractEventLoop | None = None
        # an async or threaded actor's loops or thread pools, by concurrency group
        self.executors: GroupExecutors | None = None
        self.async_running: dict[bytes, asyncio.Task] = {}  # an async actor's calls in progress
        self.generators = GeneratorRunner(rt, self._pack, self._task_error)  # tasks that yield
        rt.message_hook = self._on_message

    # messages from the agent other than objects and replies
    def _on_message(self, msg: tuple) -> bool:
        t = msg[0]
        rt = self.rt
        if t == M.EXEC:
            spec = msg[1]
            if spec[2] is not None and spec[1] not in self.functions:
                self.blobs[spec[1]] = spec[2]
            if rt.blocked:
                rt.send((M.BOUNCE, [msg[1]]))
            else:
                rt.task_queue.append(msg)
            return True
        if t == M.CANCEL:
            tid = msg[1]
            if tid == rt.current_task_id and self.instance is None:
                rt.cancel_current = True  # a task (actor calls are never interrupted)
            else:
                self.cancelled.add(tid)
                running = self.async_running.get(tid)
                if running is not None:  # an async actor's call: cancelled at its next await
                    running.get_loop().call_soon_threadsafe(running.cancel)
            return True
        if t == M.EXIT:
            rt.exit_requested = True
            return True
        if t == M.CREDIT:
            self.generators.on_credit(msg)
            return True
        return False

    def loop(self) -> None:
        rt = self.rt
        queue = rt.task_queue
        while not rt.exit_requested:
            if queue:
                self.execute(queue.popleft()[1])
                continue
            try:
                rt.wait_until(lambda: bool(queue) or rt.exit_requested, None)
            except Exception:  # noqa: BLE001 - the agent is gone
                return

    def _function(self, fn_id: bytes, blob: bytes | None) -> Any:
        fn = self.functions.get(fn_id)
        if fn is None:
            blob = blob or self.blobs.get(fn_id)
            if blob is None:
                raise RuntimeError("the node agent sent a task for an unknown function")
            fn = loads_function(blob)
            self.functions[fn_id] = fn
            self.blobs.pop(fn_id, None)
        return fn

    def _begin(self, seq: int) -> bool:
        """A task queued behind another (``seq`` > 0) starts only if the agent has not
        taken it back for a worker that freed up first (ember._claims)."""
        if self.claim is None:
            self.claim = ClaimSlot(claim_path(self.rt.session.session_dir, self.worker_id))
        return self.claim.begin(seq)

    def _args(self, blob: bytes, deps: tuple) -> tuple[tuple, dict]:
        rt = self.rt
        values = []
        for oid, kind, payload in deps:
            if kind == M.INLINE:
                values.append(deserialize(payload))
            else:
                values.append(deserialize(rt.map_object(oid, payload)))
        args, kwargs = deserialize(blob)
        if values:
            args = tuple(values[a.index] if type(a) is Dep else a for a in args)
            if kwargs:
                kwargs = {k: values[v.index] if type(v) is Dep else v for k, v in kwargs.items()}
        return args, kwargs

    def execute(self, task: tuple) -> None:
        """Run one task, actor constructor or actor call sent by the agent."""
        actor = task[10]
        ex = self.executors
        if ex is not None and actor is not None and actor[0] == "call":
            group = ex.group_of(actor[1], actor[2] if len(actor) > 2 else None)
            if ex.loops:
                loop, semaphore = ex.loop_for(group)
                asyncio.run_coroutine_threadsafe(self._run_async(task, semaphore), loop)
                return
            ex.pool_for(group).submit(self._run, task)
            return
        self._run(task)

    def _target(self, fn_id: bytes, fn_blob: bytes | None, actor: tuple | None) -> Any:
        if actor is not None and actor[0] == "call":
            if self.instance is None:
                raise RuntimeError("this actor has no instance (its constructor did not run)")
            if actor[1] == READY_METHOD:
                return _ready
            return getattr(self.instance, actor[1])
        return self._function(fn_id, fn_blob)

    def _run(self, task: tuple) -> None:
        (task_id, fn_id, fn_blob, name, args_blob, deps, rids, retry_exc, retries_left, env, actor, seq) = task
        if seq and not self._begin(seq):
            return  # taken back: it runs elsewhere
        rt = self.rt
        start = time.perf_counter()
        retry = False
        if task_id in self.cancelled:
            self.cancelled.discard(task_id)
            results = self._error_results(rids, TaskCancelledError(f"task {name} was cancelled"))
            rt.send((M.DONE, task_id, results, False, 0.0, False))
            return
        if actor is None or actor[0] == "create":  # the caller's namespace, for named actors
            rt.namespace = env.get("namespace") if env else None
            job = (env.get("job") if env else None) or ""
            if job:
                rt.job_id = bytes.fromhex(job)  # nested tasks and get_job_id() say whose work this is
            self.marks.mark(job, name)
            if actor is not None:
                self.actor_mark = (job, name)
        elif self.actor_mark is not None:
            self.marks.mark(*self.actor_mark)
        if env and "gpus" in env:  # the GPUs this task (or actor) may use
            rt.gpu_ids = list(env["gpus"])
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in rt.gpu_ids)
        rt.current_task_id = task_id
        rt.cancel_current = False
        streamed = False
        ctx_token = set_current_task(TaskInfo(task_id, name, env.get("resources", {}) if env else {}))
        value = None
        try:
            if rt.signal_pending:  # a cancel signal came just before this task started
                rt.signal_pending = False
                _check_cancel(rt)
            target = self._target(fn_id, fn_blob, actor)
            args, kwargs = self._args(args_blob, deps)
            if isinstance(target, ActorEnv):  # an actor with runtime_env env_vars
                target = target.apply()
            if actor is not None and actor[0] == "create" and inspect.iscoroutinefunction(
                    getattr(target, "__init__", None)):
                value = self._construct_async(target, args, kwargs)
            else:
                value = target(*args, **kwargs)
            del args, kwargs
            if type(value) in GENERATOR_TYPES:  # a generator task: its values go back as yielded
                streamed = True
                value = self.generators.run(task_id, rids, value, name,
                                            lambda e: retries_left != 0 and _matches(retry_exc, e))
            if actor is not None and actor[0] == "create":
                self._become_actor(value, actor, rids[0], env)
                value = None
            if task_id in self.cancelled:  # a threaded actor's call, cancelled while it ran
                self.cancelled.discard(task_id)
                raise TaskCancelledError(f"the call {name} was cancelled while it ran")
            results = self._pack(rids, value, name)
        except TaskCancelledError as exc:
            results = self._error_results(rids, exc)
        except SystemExit as exc:
            if actor is not None and actor[0] == "call":
                self._exit_actor(name)
            results = self._task_error(rids, name, exc)
        except KeyboardInterrupt as exc:
            if rt.cancel_current:
                results = self._error_results(rids, TaskCancelledError(f"task {name} was cancelled"))
            else:
                results = self._task_error(rids, name, exc)
        except BaseException as exc:  # noqa: BLE001 - every user failure is reported, not raised
            cancel = _cancellation_in(exc)
            if cancel is not None:  # the cancel landed in code that wrapped it (e.g. pickling)
                results = self._error_results(rids, cancel)
            else:
                retry = retries_left != 0 and _matches(retry_exc, exc)
                results = self._task_error(rids, name, exc)
        finally:
            rt.current_task_id = None
            rt.cancel_current = False
            reset_current_task(ctx_token)
        elapsed = time.perf_counter() - start
        # (a generator's values went through the agent: its end must not overtake them)
        direct = not retry and not streamed and env is not None and self._send_direct(env.get("reply"), results)
        self._done((M.DONE, task_id, results, retry, elapsed, direct))
        # Only now may refs inside the value go: their release must not reach the agent
        # before the result that names them (and pins them) is queued to go out first.
        del value
        if take_retire():  # a max_calls function's last call here (ember._call_limit)
            self._retire()

    def _retire(self) -> None:
        """Exit once this worker's results are out, handing the tasks queued here back to the
        agent (which gives them to other workers and starts fresh ones as needed)."""
        rt = self.rt
        metrics = sys.modules.get("ember.util.metrics")
        if metrics is not None:
            metrics.flush(rt)
        try:
            rt.request(M.REQUEST, "retire", None, timeout=60)  # goes after the held results
        except Exception:  # noqa: BLE001 - the agent is gone: so is everything queued here
            pass
        rt.task_queue.clear()
        rt.exit_requested = True

    def _send_direct(self, path: str | None, results: list) -> bool:
        """Send small results straight to the waiting driver (see ember._direct).

        Not a result holding refs: the driver would take them up before the agent has heard
        of them (this worker's messages that create or count them may still be queued), and
        the agent would drop its addref of an object it does not know yet."""
        if not path or not results or any(kind == M.STORE or contained for _, kind, _, contained in results):
            return False
        data = b"".join(encode((M.OBJ, rid, kind, payload)) for rid, kind, payload, _ in results)
        return self.direct.send(path, data)

    def _done(self, msg: tuple) -> None:
        """Report a finished task. While more tasks are queued here, results are held and go
        out together (with the next one's, at most BATCH_MAX, or within a few milliseconds
        by the runtime's flusher if the next task runs long): no bet on how long it runs."""
        rt = self.rt
        if threading.current_thread() is not threading.main_thread():
            rt.send(msg)  # a threaded or async actor's call
            return
        if not rt.task_queue or rt.hold(msg) >= BATCH_MAX:
            if rt.task_queue:
                rt.flush()
            else:
                rt.send(msg)

    def _become_actor(self, instance: Any, actor: tuple, actor_id: bytes, env: dict | None) -> None:
        _, concurrency, is_async, *more = actor
        groups = more[1] if len(more) > 1 else {}
        from ember.actor import method_table

        methods, _, _ = method_table(type(instance))
        self.rt.actor = ActorInfo(actor_id, type(instance).__qualname__, methods, is_async,
                                  more[0] if more else 0, dict(env.get("resources", {})) if env else {})
        self.instance = instance
        self.rt.no_block = True  # an actor keeps its resources while it waits
        if is_async or concurrency > 1 or groups:
            self.executors = GroupExecutors(groups, method_groups(type(instance)))
            if is_async:
                self.executors.start_async(self._start_loop(), concurrency)
            else:  # a threaded actor (with groups, even its default group has a thread of its own)
                self.executors.start_threaded(concurrency)
        # As in Ray, a running actor call is never interrupted (the actor has state): the
        # cancel signal only notes the call as cancelled (the message may wait behind a busy
        # main thread); an async call's asyncio task is cancelled, a sync or threaded call
        # sees get_runtime_context().is_canceled() and then reports TaskCancelledError.
        signal.signal(signal.SIGUSR1, lambda signum, frame: _note_cancel(self.rt))

    def _start_loop(self) -> asyncio.AbstractEventLoop:
        """The async actor's event loop, in a thread of its own (started once)."""
        if self.aloop is None:
            self.aloop = asyncio.new_event_loop()
            threading.Thread(target=self.aloop.run_forever, name="ember-actor-loop", daemon=True).start()
        return self.aloop

    def _construct_async(self, cls: type, args: tuple, kwargs: dict) -> Any:
        """An instance of a class whose ``__init__`` is ``async def``: awaited on the actor's
        event loop, where its methods will run (as Ray does)."""
        instance = cls.__new__(cls)
        asyncio.run_coroutine_threadsafe(instance.__init__(*args, **kwargs), self._start_loop()).result()
        return instance

    async def _run_async(self, task: tuple, semaphore: asyncio.Semaphore) -> None:
        (task_id, fn_id, fn_blob, name, args_blob, deps, rids, retry_exc, retries_left, env, actor, _) = task
        rt = self.rt
        start = time.perf_counter()
        self.async_running[task_id] = asyncio.current_task()
        cancelled = TaskCancelledError(f"the call {name} was cancelled")
        try:
            if task_id in self.cancelled:
                raise asyncio.CancelledError
            async with semaphore:
                set_current_task(TaskInfo(task_id, name, {}))  # (this coroutine's own context)
                try:
                    target = self._target(fn_id, fn_blob, actor)
                    args, kwargs = self._args(args_blob, deps)
                    value = target(*args, **kwargs)
                    if inspect.isawaitable(value):
                        value = await value
                    elif type(value) in GENERATOR_TYPES:  # values go back as yielded
                        value = await self.generators.run_async(task_id, rids, value, name, lambda e: False)
                    results = self._pack(rids, value, name)
                except asyncio.CancelledError as exc:
                    if task_id not in self.cancelled:  # the method's own, not ember.cancel()
                        results = self._task_error(rids, name, exc)
                    else:
                        results = self._error_results(rids, cancelled)
                except SystemExit:
                    self._exit_actor(name)
                except BaseException as exc:  # noqa: BLE001 - reported to the caller
                    results = self._task_error(rids, name, exc)
        except asyncio.CancelledError:  # cancelled before it started
            results = self._error_results(rids, cancelled)
        finally:
            self.async_running.pop(task_id, None)
            self.cancelled.discard(task_id)
        rt.send((M.DONE, task_id, results, False, time.perf_counter() - start, False))

    def _exit_actor(self, name: str) -> None:
        """The actor ends on purpose (sys.exit() or exit_actor() in a method): as in Ray, it
        is not restarted, and this call and later ones raise ActorDiedError."""
        rt = self.rt
        reason = f"exited: its method {name} called sys.exit() or exit_actor()"
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            rt.request(M.REQUEST, "kill_actor", (rt.actor.actor_id, True, reason), timeout=30)
        except BaseException:  # noqa: BLE001 - the agent ends this process meanwhile
            pass
        finally:
            os._exit(0)

    def _pack(self, rids: tuple, value: Any, name: str) -> list:
        n = len(rids)
        if n == 0:
            return []
        if n == 1:
            values = [value]
        else:
            try:
                values = list(value)
            except TypeError:
                raise ValueError(
                    f"task {name} has num_returns={n} but returned a {type(value).__name__}, not a sequence"
                ) from None
            if len(values) != n:
                raise ValueError(f"task {name} has num_returns={n} but returned {len(values)} values")
        out = []
        rt = self.rt
        for rid, v in zip(rids, values, strict=True):
            ser = serialize(v)
            if ser.total <= M.INLINE_LIMIT:
                out.append((rid, M.INLINE, ser.to_bytes(), ser.contained))
            else:
                offset, size = rt.write_to_store(rid, ser)
                out.append((rid, M.STORE, (offset, size), ser.contained))
        return out

    def _task_error(self, rids: tuple, name: str, exc: BaseException) -> list:
        tb = format_remote_traceback(exc)
        # an error that came from a nested get keeps the original exception as its cause,
        # so the caller can still catch it by its own type
        cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
        try:
            blob = serialize(RayTaskError(name, tb, cause, os.getpid())).to_bytes()
            back = deserialize(blob)  # an exception class may pickle but not unpickle
            if cause is not None and back.cause is None:  # the cause alone did not pickle
                serialize(cause)  # raises the reason
                raise TypeError(f"{type(cause).__name__} does not pickle")
        except Exception as why:  # noqa: BLE001 - fall back to the text of the error
            note = (f"\n(the exception {type(exc).__name__} could not be sent to the caller: "
                    f"{type(why).__name__}: {why}; only its text is kept)")
            cause = UnserializableException(tb + note)
            blob = serialize(RayTaskError(name, tb + note, cause, os.getpid())).to_bytes()
        return [(rid, M.ERROR, blob, ()) for rid in rids]

    def _error_results(self, rids: tuple, exc: BaseException) -> list:
        blob = serialize(exc).to_bytes()
        return [(rid, M.ERROR, blob, ()) for rid in rids]


READY_METHOD = "__ray_ready__"  # every actor answers it (True) once its constructor has run


def _ready() -> bool:
    return True


def _matches(retry_exc: Any, exc: BaseException) -> bool:
    if retry_exc is True:
        return isinstance(exc, Exception)
    if not retry_exc:
        return False
    try:
        types = tuple(deserialize(retry_exc)) if isinstance(retry_exc, bytes) else tuple(retry_exc)
        return isinstance(exc, types)
    except Exception:  # noqa: BLE001
        return False


def _on_cancel_signal(signum: int, frame: Any) -> None:
    """SIGUSR1 from the agent: a CANCEL message for the running task is on the socket."""
    rt = _context.current_runtime()
    if rt is None:
        return
    if rt.current_task_id is None:  # between tasks: the task it is for may be about to start
        rt.signal_pending = True
        return
    if rt.sending or rt._reading:  # never interrupt a frame half-sent or half-read: once done
        rt.signal_pending = True
        return
    _check_cancel(rt)


def _cancellation_in(exc: BaseException) -> TaskCancelledError | None:
    """The TaskCancelledError that ``exc`` was raised from or during, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, TaskCancelledError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _note_cancel(rt: CoreRuntime) -> None:
    """In an actor: mark the call the agent names in the cancel file as cancelled."""
    path = os.path.join(rt.session.session_dir, f"cancel-{os.getpid()}")
    try:
        with open(path) as f:
            named = f.read().strip()
        os.unlink(path)
        rt.cancelled_tasks.add(bytes.fromhex(named))
    except (OSError, ValueError):
        return


def _check_cancel(rt: CoreRuntime) -> None:
    """Raise TaskCancelledError if the agent cancelled the running task: it names the task
    in a file (ember_node.agent.cancel_file) before sending the signal."""
    task_id = rt.current_task_id
    if task_id is None:
        return
    path = os.path.join(rt.session.session_dir, f"cancel-{os.getpid()}")
    try:
        with open(path) as f:
            named = f.read().strip()
        os.unlink(path)
    except OSError:
        return
    if named == task_id.hex() and not rt.blocked:
        rt.cancel_current = False
        raise TaskCancelledError("the task was cancelled while it ran")


def run_worker(socket_path: str, session: dict, worker_id: int, marks: OutputMarks | None = None) -> None:
    """Body of a forked worker process."""
    die_with_parent()
    make_worker_first()  # the OOM killer takes workers before the agent and drivers
    head = session.get("head_address")
    if head:  # a worker on a worker node talks to the head over gRPC
        from ember._remote import GrpcConnection

        with open(session["token_file"]) as f:
            conn: Any = GrpcConnection(head, f.read().strip(), session.get("tls_ca"))
    else:
        conn = ClientConnection.connect(socket_path)
    rt = CoreRuntime(conn, SessionInfo(session), "worker", remote=bool(head))
    rt.on_deferred_signal = lambda: _check_cancel(rt)
    _context.set_runtime(rt)
    worker = Worker(rt, worker_id, marks)
    signal.signal(signal.SIGUSR1, _on_cancel_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    rt.send((M.HELLO, "worker", os.getpid(), worker_id, M.hello_info({"node_id": session.get("node_id")})))
    code = 0
    try:
        worker.loop()
    except BaseException:  # noqa: BLE001 - a bug in the worker itself: leave a trace in the log
        traceback.print_exc()
        code = 70
    finally:
        sys.stderr.flush()
        os._exit(code)


def zygote_main(socket_path: str, session_json: str, control_fd: int) -> None:
    """Fork workers on request; report pids and exit statuses on ``control_fd``, a pipe to the
    agent that no worker keeps open (workers print to files of their own: ember._output)."""
    import json

    die_with_parent()
    session = json.loads(session_json)
    # everything a worker needs is imported now, once, and shared copy-on-write
    import cloudpickle  # noqa: F401

    import ember  # noqa: F401

    gc.collect()
    gc.freeze()
    sel = selectors.DefaultSelector()
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stdin = sys.stdin.buffer.raw  # type: ignore[attr-defined]

    def report(line: bytes) -> None:
        os.write(control_fd, line)  # shorter than PIPE_BUF: written whole
    sel.register(stdin, selectors.EVENT_READ, "cmd")
    sel.register(rfd, selectors.EVENT_READ, "sig")
    pending = b""
    while True:
        for key, _ in sel.select():
            if key.data == "sig":
                try:
                    os.read(rfd, 4096)
                except BlockingIOError:
                    pass
            else:
                data = os.read(stdin.fileno(), 65536)
                if not data:
                    return  # the agent is gone
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == b"F":
                        wid = int(parts[1])
                        pid = os.fork()
                        if pid == 0:
                            try:
                                sel.close()
                                os.close(rfd)
                                os.close(wfd)
                                os.close(control_fd)
                                marks = OutputMarks(redirect_stdio(session.get("log_dir")))
                                signal.set_wakeup_fd(-1)
                                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                                gc.unfreeze()
                                run_worker(socket_path, session, wid, marks)
                            except BaseException:  # noqa: BLE001
                                traceback.print_exc()
                            finally:
                                os._exit(1)
                        report(b"P %d %d\n" % (wid, pid))
            # reap every child that has exited
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                report(b"X %d %d\n" % (pid, status))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 5 and argv[0] == "--zygote" and argv[3] == "--control-fd":
        zygote_main(argv[1], argv[2], int(argv[4]))
    else:
        sys.exit("usage: python -m ember.worker --zygote SOCKET SESSION_JSON --control-fd FD "
                 "(started by the node agent)")


if __name__ == "__main__":
    main()
