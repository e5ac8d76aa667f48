"""Job submission on a real head started by ``ember start --head`` (issue 16, "Jobs").

The ``ember job`` CLI and ``ember.job_submission.JobSubmissionClient`` go through the head's
token-checked gRPC port; each entrypoint runs on the head as a real subprocess and a driver
of the cluster (its tasks and actors run in the head's workers). Every CLI call runs with a
test-private ``TMPDIR`` (records, token and sessions stay inside it); the head is stopped by
``ember stop`` and then by pid, and the module fails if any process of this run survives it
(``conftest._no_survivors``: entrypoints inherit the run's mark).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import textwrap
from pathlib import Path

import pytest
from ember.job_submission import JobStatus, JobSubmissionClient

from .helpers import (
    cli_records,
    ember_cli,
    free_port,
    pid_alive,
    short_tmpdir,
    start_head,
    start_worker_node,
    wait_cluster,
    wait_until,
)

SCRIPT = """
import os, ember, helper
ember.init()
import pkg.mod  # imported after init()

@ember.remote
def square(x):
    return x * x

@ember.remote
def color():
    return os.environ.get("COLOR")

@ember.remote
def shout():  # runs in a worker, which has no working dir: helper travels by value
    return helper.GREETING.upper() + " " + helper.Tool().name() + " " + pkg.mod.VALUE

print(helper.GREETING, sum(ember.get([square.remote(i) for i in range(10)])), os.environ.get("COLOR"),
      ember.get(color.remote()))
print(ember.get(shout.remote()), ember.get(ember.remote(helper.twice).remote(21)))
"""

LONG = """
import os, time, ember
ember.init()
out = os.environ["PID_DIR"]

@ember.remote
def forever():
    open(os.path.join(out, "task"), "w").write(str(os.getpid()))
    time.sleep(600)

@ember.remote
class Holder:
    def pid(self):
        return os.getpid()

h = Holder.remote()
open(os.path.join(out, "actor"), "w").write(str(ember.get(h.pid.remote())))
ref = forever.remote()
print("ready", flush=True)
time.sleep(600)
"""


class Head:
    """The head ``ember start`` started, and how to reach it."""

    def __init__(self, procs, root: Path) -> None:
        self.root = root
        self.env = procs.env({"TMPDIR": str(root)})
        self.port = free_port()
        out = self.ok("start", "--head", "--port", str(self.port), "--num-cpus", "2",
                      "--object-store-memory", str(256 << 20))
        assert f"127.0.0.1:{self.port}" in out, out
        (self.record,) = [r for r in cli_records(root) if r["role"] == "head"]
        procs.track(int(self.record["pid"]))
        self.token = Path(self.record["token_file"]).read_text().strip()
        self.address = f"127.0.0.1:{self.port}"

    def __call__(self, *args: str, timeout: float = 90, env: dict | None = None):
        return ember_cli({**self.env, **(env or {})}, *args, timeout=timeout)

    def ok(self, *args: str, **kw) -> str:
        r = self(*args, **kw)
        assert r.returncode == 0, f"ember {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def client(self) -> JobSubmissionClient:
        return JobSubmissionClient(self.address, token=self.token)

    def logs_dir(self) -> Path:
        return Path(self.record["session_dir"]) / "logs"


@pytest.fixture(scope="module")
def head(module_procs):
    root = short_tmpdir()
    h = Head(module_procs, root)
    yield h
    h("stop", timeout=30)
    module_procs.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workdir():
    path = short_tmpdir("embj-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def submission_id(out: str) -> str:
    for line in out.splitlines():
        if line.startswith("job ") and line.endswith(" submitted"):
            return line.split()[1]
    raise AssertionError(f"no submission id in:\n{out}")


def wait_status(client: JobSubmissionClient, sid: str, timeout: float = 60) -> JobStatus:
    wait_until(lambda: client.get_job_status(sid).is_terminal(), timeout, 0.1)
    return client.get_job_status(sid)


def test_submit_runs_a_driver_in_the_uploaded_working_dir_and_follows_its_logs(head, workdir):
    (workdir / "helper.py").write_text('GREETING = "hello from the working dir"\n'
                                       'class Tool:\n    def name(self):\n        return "tool"\n'
                                       'def twice(x):\n    return 2 * x\n')
    (workdir / "pkg").mkdir()
    (workdir / "pkg" / "__init__.py").write_text("")
    (workdir / "pkg" / "mod.py").write_text('VALUE = "from pkg"\n')
    (workdir / "script.py").write_text(textwrap.dedent(SCRIPT))
    (workdir / "notes.log").write_text("left out\n")
    env = json.dumps({"env_vars": {"COLOR": "teal"}, "excludes": ["*.log"]})
    r = head("job", "submit", "--address", head.address, "--working-dir", str(workdir),
             "--runtime-env-json", env, "--", "python", "script.py", env={"EMBER_TOKEN": head.token})
    assert r.returncode == 0, r.stdout + r.stderr
    # the logs were followed until the end: the script's line, then the final status
    assert "hello from the working dir 285 teal teal" in r.stdout, r.stdout
    assert "HELLO FROM THE WORKING DIR tool from pkg 42" in r.stdout, r.stdout
    assert "SUCCEEDED" in r.stdout.splitlines()[-1], r.stdout
    sid = submission_id(r.stdout)
    status = head.ok("job", "status", sid)  # the address and token of the head started here
    assert "SUCCEEDED" in status, status
    assert "hello from the working dir 285 teal" in head.ok("job", "logs", sid)
    # kept in the session's logs; the working dir was unpacked under the session, without excludes
    assert "285 teal" in (head.logs_dir() / f"job-{sid}.log").read_text()
    unpacked = Path(head.record["session_dir"]) / "jobs" / sid
    assert (unpacked / "helper.py").exists() and not (unpacked / "notes.log").exists()
    info = head.client().get_job_info(sid)
    assert info.driver_exit_code == 0 and info.runtime_env["env_vars"] == {"COLOR": "teal"}
    assert info.start_time and info.end_time and info.end_time >= info.start_time


def test_a_failing_entrypoint_is_failed_with_its_exit_code(head, workdir):
    (workdir / "fail.py").write_text("import sys\nprint('about to fail')\nraise SystemExit(3)\n")
    with head.client() as client:
        sid = client.submit_job(entrypoint="python fail.py", runtime_env={"working_dir": str(workdir)},
                                metadata={"owner": "tests"})
        assert wait_status(client, sid) == JobStatus.FAILED
        info = client.get_job_info(sid)
        assert info.driver_exit_code == 3
        assert "exit code 3" in info.message and "about to fail" in info.message, info.message
        assert info.metadata == {"owner": "tests"}
        assert client.get_job_logs(sid) == "about to fail\n"
    r = head("job", "submit", "--", "python", str(workdir / "fail.py"))  # waits, then says FAILED
    assert r.returncode == 1 and "FAILED" in r.stdout, r.stdout + r.stderr


def test_stop_ends_the_job_and_its_tasks_and_actors(head, workdir):
    (workdir / "long.py").write_text(textwrap.dedent(LONG))
    pids = workdir / "pids"
    pids.mkdir()
    with head.client() as client:
        sid = client.submit_job(entrypoint="python long.py", runtime_env={
            "working_dir": str(workdir), "env_vars": {"PID_DIR": str(pids)}})
        wait_until(lambda: "ready" in client.get_job_logs(sid), 60, 0.1)
        wait_until(lambda: (pids / "task").exists() and (pids / "task").read_text(), 60, 0.1)
        task_pid = int((pids / "task").read_text())
        actor_pid = int((pids / "actor").read_text())
        driver_pid = client.get_job_info(sid).driver_pid
        assert client.get_job_status(sid) == JobStatus.RUNNING
        assert all(pid_alive(p) for p in (task_pid, actor_pid, driver_pid))
        out = head.ok("job", "stop", sid)  # waits until the job has ended
        assert "STOPPED" in out, out
        info = client.get_job_info(sid)
        assert info.status == JobStatus.STOPPED and info.driver_exit_code is not None
        assert client.stop_job(sid) is False  # already ended
        # the driver is gone, so the cluster ends its running task and its actor
        assert wait_until(lambda: not any(pid_alive(p) for p in (driver_pid, task_pid, actor_pid)), 60, 0.1), \
            [p for p in (driver_pid, task_pid, actor_pid) if pid_alive(p)]


def test_stop_kills_an_entrypoint_that_ignores_sigterm_after_the_grace_period(head, workdir):
    (workdir / "stubborn.py").write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                         "print('ignoring SIGTERM', flush=True)\ntime.sleep(600)\n")
    with head.client() as client:
        sid = client.submit_job(entrypoint="python stubborn.py", runtime_env={"working_dir": str(workdir)})
        wait_until(lambda: "ignoring SIGTERM" in client.get_job_logs(sid), 60, 0.1)
        assert client.stop_job(sid) is True
        assert wait_status(client, sid) == JobStatus.STOPPED
        assert client.get_job_info(sid).driver_exit_code == -9  # SIGKILL, after the grace period


def test_shell_entrypoints_and_what_they_leave_behind(head, workdir):
    """A command with shell syntax runs through /bin/sh; a process it leaves running is
    ended when it exits; a command that does not exist fails the job, saying so."""
    with head.client() as client:
        sid = client.submit_job(entrypoint=f"sleep 600 & echo $! > {workdir}/bg && echo started")
        assert wait_status(client, sid) == JobStatus.SUCCEEDED
        assert client.get_job_logs(sid) == "started\n"
        bg = int((workdir / "bg").read_text())
        assert wait_until(lambda: not pid_alive(bg), 30, 0.1)
        sid = client.submit_job(entrypoint="no-such-program-here --flag")
        assert wait_status(client, sid) == JobStatus.FAILED
        assert "no-such-program-here" in client.get_job_info(sid).message


def test_list_tail_and_delete(head, workdir):
    (workdir / "count.py").write_text("import time\nfor i in range(5):\n    print('tick', i, flush=True)\n"
                                      "    time.sleep(0.2)\n")
    with head.client() as client:
        sid = client.submit_job(entrypoint="python count.py", runtime_env={"working_dir": str(workdir)},
                                submission_id="counting-job")
        assert sid == "counting-job"
        with pytest.raises(RuntimeError, match="already exists"):
            client.submit_job(entrypoint="true", submission_id="counting-job")

        async def tail() -> str:
            return "".join([text async for text in client.tail_job_logs(sid)])

        text = asyncio.run(tail())  # returns once the job has ended and its output was sent
        assert text == "".join(f"tick {i}\n" for i in range(5))
        assert client.get_job_status(sid) == JobStatus.SUCCEEDED
        assert "counting-job" in [j.submission_id for j in client.list_jobs()]
        listed = head.ok("job", "list")
        assert "counting-job" in listed and "SUCCEEDED" in listed, listed
        assert head.ok("list", "jobs") == listed
        as_json = json.loads(head.ok("job", "list", "--json"))
        assert {"submission_id": "counting-job", "status": "SUCCEEDED"}.items() <= \
            next(j for j in as_json if j["submission_id"] == "counting-job").items()
        assert client.delete_job(sid) is True
        assert not (head.logs_dir() / "job-counting-job.log").exists()
        with pytest.raises(RuntimeError, match="no job with submission id"):
            client.get_job_status(sid)
    r = head("job", "status", "no-such-job")
    assert r.returncode == 1 and "no job with submission id 'no-such-job'" in r.stderr, r.stderr


def test_working_dir_size_limit_and_wrong_token(head, workdir):
    (workdir / "main.py").write_text("print('small')\n")
    (workdir / "blob.bin").write_bytes(os.urandom(256 << 10))
    small = {"EMBER_JOB_MAX_UPLOAD_BYTES": str(64 << 10)}
    r = head("job", "submit", "--working-dir", str(workdir), "--", "python", "main.py", env=small)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "more than 64 KiB" in r.stderr and "blob.bin" in r.stderr and "excludes" in r.stderr, r.stderr
    r = head("job", "submit", "--working-dir", str(workdir), "--runtime-env-json", '{"excludes": ["*.bin"]}',
             "--", "python", "main.py", env=small)
    assert r.returncode == 0 and "small" in r.stdout, r.stdout + r.stderr
    with pytest.raises(ConnectionError, match="refused the token"):
        JobSubmissionClient(head.address, token="wrong").list_jobs()


def test_job_calls_refuse_bad_requests_and_missing_tokens(head):
    """Straight to the gRPC methods: no token, no job; bad fields are INVALID_ARGUMENT."""
    import grpc
    from ember._proto import node_pb2 as pb
    from ember._proto import node_pb2_grpc as pb_grpc

    with grpc.insecure_channel(head.address) as chan:
        stub = pb_grpc.NodeStub(chan)
        before = len(head.client().list_jobs())
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitJob(pb.SubmitJobRequest(entrypoint="touch /tmp/should-not-run"), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        auth = [("authorization", f"Bearer {head.token}")]
        for bad in (pb.SubmitJobRequest(entrypoint="true", runtime_env_json="{not json"),
                    pb.SubmitJobRequest(entrypoint="true", runtime_env_json='{"env_vars": {"A": 1}}'),
                    pb.SubmitJobRequest(entrypoint="   "),
                    pb.SubmitJobRequest(entrypoint="true", submission_id="../../escape"),
                    pb.SubmitJobRequest(entrypoint="true", working_dir_zip=b"PK not a zip")):
            try:
                reply = stub.SubmitJob(bad, metadata=auth, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, exc)
            else:  # an archive that does not unpack: the job exists, FAILED, saying why
                info = head.client().get_job_info(reply.submission_id)
                assert info.status == JobStatus.FAILED and "cannot be unpacked" in info.message, info
        assert len(head.client().list_jobs()) == before + 1


def test_runtime_env_from_a_yaml_file_and_refused_ray_flags(head, workdir):
    (workdir / "env.py").write_text("import os\nprint('shape', os.environ['SHAPE'])\n")
    (workdir / "env.yaml").write_text(f"working_dir: {workdir}\nenv_vars:\n  SHAPE: hexagon\n")
    out = head.ok("job", "submit", "--runtime-env", str(workdir / "env.yaml"), "--", "python", "env.py")
    assert "shape hexagon" in out, out
    r = head("job", "submit", "--entrypoint-num-cpus", "1", "--", "python", "env.py")
    assert r.returncode == 1 and "entrypoint_num_cpus is not supported" in r.stderr, r.stderr
    with socket.socket() as probe:
        dashboard_port_free = probe.connect_ex(("127.0.0.1", 8265)) != 0
    if dashboard_port_free:  # Ray's habit of naming the dashboard port gets a hint
        r = head("job", "submit", "--address", "127.0.0.1:8265", "--", "true", env={"EMBER_TOKEN": "x"})
        assert r.returncode == 1 and "gRPC port" in r.stderr, r.stderr


def test_a_jobs_pip_packages_are_installed_for_its_entrypoint(head, workdir):
    """runtime_env pip for a submitted job: the head's node installs the wheel the test built
    (the venv cache is the test's directory, given through env_vars) and the entrypoint
    imports it; a wheel that is not there fails the job with pip's words."""
    from tests.rayapi.helpers import build_wheel

    wheel = build_wheel(workdir, "tinyember_jobpkg", 9)
    (workdir / "usepkg.py").write_text("import tinyember_jobpkg\nprint('pkg', tinyember_jobpkg.VALUE)\n")
    env_vars = {"EMBER_RUNTIME_ENV_DIR": str(workdir / "envs")}
    with head.client() as client:
        sid = client.submit_job(entrypoint=f"python {workdir / 'usepkg.py'}",
                                runtime_env={"pip": [wheel], "env_vars": env_vars})
        assert wait_status(client, sid, 180) == JobStatus.SUCCEEDED, client.get_job_logs(sid)
        assert "pkg 9" in client.get_job_logs(sid)
        assert client.get_job_info(sid).runtime_env["pip"]["packages"] == [wheel]
        sid = client.submit_job(entrypoint=f"python {workdir / 'usepkg.py'}",
                                runtime_env={"pip": [wheel + ".gone"], "env_vars": env_vars})
        assert wait_status(client, sid, 180) == JobStatus.FAILED
        logs = client.get_job_logs(sid)
        assert "RuntimeEnvSetupError" in logs and ".gone" in logs, logs


def test_stopping_the_head_ends_its_running_jobs(procs, workdir):
    root = short_tmpdir()
    try:
        h = Head(procs, root)
        (workdir / "sleep.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
        with h.client() as client:
            sid = client.submit_job(entrypoint="python sleep.py", runtime_env={"working_dir": str(workdir)})
            wait_until(lambda: "up" in client.get_job_logs(sid), 60, 0.1)
            pid = client.get_job_info(sid).driver_pid
        h.ok("stop", timeout=60)
        assert wait_until(lambda: not pid_alive(pid), 30, 0.1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


ON_NODE_A = """
import os, ember, helper
ember.init()

@ember.remote(resources={"node_a": 1})
def where():
    import sys
    return (os.environ.get("EMBER_TEST_NODE"), helper.tag(), any("embersubmit_" in p for p in sys.path),
            open("data.txt").read().strip())

print(ember.get(where.remote()))
"""


def test_a_jobs_tasks_on_a_worker_node_use_its_working_dir_modules(procs, tmp_short, workdir):
    """The worker node's workers do not have the uploaded directory on their path: helper
    travels by value, and the job's tasks run in a copy of its working directory (as in Ray:
    the job's runtime_env is its tasks'), so they read its files."""
    head = start_head(procs, tmp_short, num_cpus=1)
    start_worker_node(procs, head, tmp_short, "a", num_cpus=1, resources={"node_a": 1},
                      extra_args=["--host", "127.0.0.1"])
    wait_cluster(head, alive_nodes=2)
    (workdir / "helper.py").write_text("def tag():\n    return 'helper-on-a'\n")
    (workdir / "main.py").write_text(textwrap.dedent(ON_NODE_A))
    (workdir / "data.txt").write_text("shipped\n")
    with JobSubmissionClient(head.address, token=head.token) as client:
        sid = client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(workdir)})
        assert wait_status(client, sid, 90) == JobStatus.SUCCEEDED, client.get_job_logs(sid)
        # ran on node a, whose workers do not have the job's directory on their path
        assert "('a', 'helper-on-a', False, 'shipped')" in client.get_job_logs(sid), client.get_job_logs(sid)


def test_a_job_does_not_outlive_a_killed_head(procs, workdir):
    """SIGKILL leaves the head no chance to stop its jobs: the kernel ends the entrypoint."""
    root = short_tmpdir()
    try:
        h = Head(procs, root)
        (workdir / "sleep.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
        with h.client() as client:
            sid = client.submit_job(entrypoint="python sleep.py", runtime_env={"working_dir": str(workdir)})
            wait_until(lambda: "up" in client.get_job_logs(sid), 60, 0.1)
            pid = client.get_job_info(sid).driver_pid
        procs.remember_tree(int(h.record["pid"]))  # its workers are cleaned up by pid
        os.kill(int(h.record["pid"]), signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(pid), 30, 0.1)
        h.ok("stop", timeout=60)  # removes what the dead head left (record, shared memory)
        procs.cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)
