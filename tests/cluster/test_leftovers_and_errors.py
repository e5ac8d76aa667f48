"""Issue 11, part 7: leftovers of killed agents, and the error types of lost values.

A head killed with SIGKILL leaves its /dev/shm arena; the next ``ember start --head`` removes
it, and any agent's start sweeps this user's arenas that no process holds. A spill file
that vanished makes get and tasks fail with ObjectLostError naming the object. An exception
class the driver cannot import comes back as a RayTaskError with the task's name, the
remote traceback as text and the missing module.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import uuid

from .helpers import free_port, last_json, pid_alive, run_driver, start_head, wait_until


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ember_node.cli", *args], env=env, capture_output=True,
                          text=True, timeout=90)


def _head_record(tmp) -> dict:
    paths = glob.glob(os.path.join(tmp, f"ember-{os.getuid()}", "agents", "*.json"))
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return json.load(f)


def test_a_killed_heads_arena_is_removed_at_the_next_start(procs, tmp_short):
    tmp = tmp_short / "tmp"
    tmp.mkdir(mode=0o700)
    env = procs.env({"TMPDIR": str(tmp)})
    env.pop("XDG_RUNTIME_DIR", None)
    start = ["start", "--head", "--num-cpus", "1", "--object-store-memory", str(64 << 20)]
    first = _cli(env, *start, "--port", str(free_port()))
    assert first.returncode == 0, first.stderr
    rec = _head_record(tmp)
    procs.track(rec["pid"])
    arena = rec["arena"]
    assert arena and os.path.exists(arena)
    procs.kill_tree(rec["pid"])
    assert wait_until(lambda: not pid_alive(rec["pid"]), 30)
    assert os.path.exists(arena), "the killed head's arena should still be there before the next start"
    second = _cli(env, *start, "--port", str(free_port()))
    try:
        assert second.returncode == 0, second.stderr
        procs.track(_head_record(tmp)["pid"])
        assert not os.path.exists(arena), f"{arena} of the killed head survived the next start"
        # the killed head's logs are kept; the rest of its session dir is gone
        assert os.path.isdir(os.path.join(rec["session_dir"], "logs"))
        assert not os.path.exists(os.path.join(rec["session_dir"], "agent.sock"))
    finally:
        _cli(env, "stop")


def test_an_agent_start_sweeps_arenas_no_process_holds(procs, tmp_short):
    tag = uuid.uuid4().hex[:8]
    stale = f"/dev/shm/ember-h11stale-{tag}"
    held = f"/dev/shm/ember-h11held-{tag}"
    for path in (stale, held):
        with open(path, "wb") as f:
            f.truncate(4096)
    keep = open(held, "rb")  # noqa: SIM115 - held open across the agent's start
    try:
        start_head(procs, tmp_short, num_cpus=1, store_bytes=64 << 20)
        assert not os.path.exists(stale), "an arena nobody holds was not swept"
        assert os.path.exists(held), "an arena a live process holds was removed"
    finally:
        keep.close()
        for path in (stale, held):
            if os.path.exists(path):
                os.unlink(path)


def test_a_lost_spill_file_is_object_lost_error_naming_the_object(procs, tmp_short):
    head = start_head(procs, tmp_short, num_cpus=1, store_bytes=64 << 20)
    spill = os.path.join(head.session_dir, "spill")
    script = f"""
        import glob, json, os, ember
        from ember.exceptions import ObjectLostError
        ember.init({head.address!r}, token={head.token!r})

        @ember.remote
        def size(b):
            return len(b)

        refs = [ember.put(bytes([i]) * (24 << 20)) for i in range(3)]  # 72 MiB: one is spilled
        gone = glob.glob(os.path.join({spill!r}, "*"))
        for path in gone:
            os.unlink(path)
        names = [os.path.basename(p) for p in gone]
        out = {{"spilled": names, "get": [], "task": []}}
        for ref in refs:
            if ref.hex() not in names:
                continue
            for what, call in (("task", lambda: ember.get(size.remote(ref))), ("get", lambda: ember.get(ref))):
                try:
                    call()
                    out[what].append("no error")
                except ObjectLostError as exc:
                    out[what].append(ref.hex() in str(exc) and "spilled" in str(exc))
                except Exception as exc:
                    out[what].append(type(exc).__name__ + ": " + str(exc))
        print(json.dumps(out))
        ember.shutdown()
    """
    out = last_json(run_driver(procs, script, timeout=120))
    assert out["spilled"], "nothing was spilled"
    assert out["get"] and all(v is True for v in out["get"]), out
    assert out["task"] and all(v is True for v in out["task"]), out
    assert head.proc.poll() is None


def test_an_exception_class_the_driver_cannot_import_is_ray_task_error(procs, tmp_short):
    mod_dir = tmp_short / "only_workers"
    mod_dir.mkdir()
    (mod_dir / "h11_private_errors.py").write_text(
        "class PrivateError(Exception):\n    pass\n")
    script = f"""
        import json, ember
        from ember.exceptions import RayTaskError
        ember.init(num_cpus=1)

        @ember.remote
        def raises_private():
            import sys
            sys.path.insert(0, {str(mod_dir)!r})
            import h11_private_errors
            raise h11_private_errors.PrivateError("the secret detail")

        try:
            ember.get(raises_private.remote())
            out = "no error"
        except RayTaskError as exc:
            out = {{"msg": str(exc), "missing": exc.missing_module, "cause": exc.cause_name}}
        except Exception as exc:
            out = type(exc).__name__ + ": " + str(exc)
        print(json.dumps(out))
        ember.shutdown()
    """
    out = last_json(run_driver(procs, script, timeout=120, env={"PYTHONPATH": ""}))
    assert isinstance(out, dict), out
    assert out["missing"] == "h11_private_errors"
    assert out["cause"] == "PrivateError"
    msg = out["msg"]
    assert "raises_private" in msg and "the secret detail" in msg and "Traceback" in msg
    assert "h11_private_errors" in msg and "PrivateError" in msg


def test_a_killed_head_left_running_is_not_swept(procs, tmp_short):
    """A head stopped with SIGSTOP (alive, holding its arena) keeps it when another agent starts."""
    first = start_head(procs, tmp_short / "a", num_cpus=1, store_bytes=64 << 20)
    os.kill(first.proc.pid, signal.SIGSTOP)
    try:
        start_head(procs, tmp_short / "b", num_cpus=1, store_bytes=64 << 20)
        assert os.path.exists(first.info["arena"])
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
