"""Job submission with Ray's names: run an entrypoint command on the cluster's head.

    from ember.job_submission import JobSubmissionClient, JobStatus

    client = JobSubmissionClient("127.0.0.1:6380")          # the head's gRPC port
    sid = client.submit_job(entrypoint="python script.py", runtime_env={"working_dir": "./"})
    client.get_job_status(sid)                               # JobStatus.RUNNING, ...
    print(client.get_job_logs(sid))

The entrypoint runs on the head as a driver of the cluster (``ember.init()`` inside it joins
the cluster), in the uploaded working directory, so it does not depend on the submitter
staying connected. Everything goes through the head's one token-checked gRPC port; the token
comes as for ``ember.init(address)``: ``token=...`` or ``EMBER_TOKEN`` (or, for the head that
``ember start`` started on this machine, its token file).
"""

from __future__ import annotations

import asyncio
import codecs
import enum
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any


class JobStatus(enum.StrEnum):
    """The state of a submitted job."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        """True once the job has ended (it will not change again)."""
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass
class JobDetails:
    """What the head knows of a job (Ray's ``JobDetails``; times in milliseconds since the epoch)."""

    submission_id: str
    status: JobStatus
    entrypoint: str
    message: str = ""
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    driver_exit_code: int | None = None
    driver_pid: int | None = None
    type: str = "SUBMISSION"
    job_id: str | None = None


JobInfo = JobDetails


def _strip_scheme(address: str) -> str:
    for scheme in ("http://", "https://", "ember://", "ray://"):
        if address.startswith(scheme):
            address = address[len(scheme):]
    return address.rstrip("/")


def resolve_address(address: str | None, token: str | None) -> tuple[str, str | None]:
    """The head's ``host:port`` and token: ``address``, else ``EMBER_ADDRESS``, else the head
    ``ember start`` started on this machine; ``token``, else ``EMBER_TOKEN``, else that
    head's token file when the address is its own."""
    from ember._local_cluster import read_record

    address = address or os.environ.get("EMBER_ADDRESS") or None
    rec = None
    if address in (None, "auto"):
        rec = read_record()
        if rec is None or not rec.get("address"):
            raise ConnectionError(
                "no head address: pass --address HOST:PORT (or JobSubmissionClient('HOST:PORT')), "
                "set EMBER_ADDRESS, or start a head here with `ember start --head`")
        address = str(rec["address"])
    address = _strip_scheme(address)
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"the head's address must be 'host:port' (its gRPC port), got {address!r}")
    token = token or os.environ.get("EMBER_TOKEN") or None
    if token is None:
        rec = rec or read_record()
        if rec is not None and rec.get("address") == address and rec.get("token_file"):
            with open(rec["token_file"]) as f:
                token = f.read().strip()
    if not token:
        raise ValueError(f"talking to the head at {address} needs the cluster token: token=... or the "
                         "EMBER_TOKEN environment variable (`ember start --head` prints it)")
    return address, token


def _details(msg: Any) -> JobDetails:
    return JobDetails(
        submission_id=msg.submission_id, status=JobStatus(msg.status), entrypoint=msg.entrypoint,
        message=msg.message, error_type=msg.error_type or None,
        start_time=msg.start_time_ms or None, end_time=msg.end_time_ms or None,
        metadata=dict(msg.metadata), runtime_env=json.loads(msg.runtime_env_json or "{}"),
        driver_exit_code=msg.driver_exit_code if msg.HasField("driver_exit_code") else None,
        driver_pid=msg.driver_pid or None)


class JobSubmissionClient:
    """Submit and manage jobs on the cluster whose head is at ``address`` (``host:port`` of
    its gRPC port; ``http://`` and ``ray://`` prefixes are accepted). ``metadata`` is added
    to every job this client submits."""

    def __init__(self, address: str | None = None, create_cluster_if_needed: bool = False,
                 cookies: Any = None, metadata: dict[str, str] | None = None, headers: Any = None,
                 verify: Any = True, *, token: str | None = None, tls_ca: str | None = None) -> None:
        from ember._proto import node_pb2_grpc as pb_grpc
        from ember._remote import channel

        self.address, token = resolve_address(address, token)
        self._metadata = dict(metadata or {})
        self._auth = [("authorization", f"Bearer {token}")]
        self._channel = channel(self.address, tls_ca or os.environ.get("EMBER_TLS_CA"))
        self._stub = pb_grpc.NodeStub(self._channel)

    def close(self) -> None:
        """Close the connection to the head."""
        self._channel.close()

    def __enter__(self) -> JobSubmissionClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, request: Any, timeout: float = 60.0) -> Any:
        import grpc

        try:
            return getattr(self._stub, method)(request, metadata=self._auth, timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None

    def submit_job(self, *, entrypoint: str, job_id: str | None = None, runtime_env: dict | None = None,
                   metadata: dict[str, str] | None = None, submission_id: str | None = None,
                   entrypoint_num_cpus: float | None = None, entrypoint_num_gpus: float | None = None,
                   entrypoint_memory: int | None = None,
                   entrypoint_resources: dict[str, float] | None = None) -> str:
        """Start ``entrypoint`` (a shell command) on the head; returns the submission id.

        ``runtime_env``: ``working_dir`` (a local directory, uploaded; ``excludes`` leave
        files out), ``env_vars`` (set for the entrypoint and every task and actor of it)."""
        from ember._job_package import pack, split_runtime_env
        from ember._proto import node_pb2 as pb

        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError("entrypoint must be a shell command, e.g. 'python script.py'")
        for name, value in (("entrypoint_num_cpus", entrypoint_num_cpus), ("entrypoint_num_gpus", entrypoint_num_gpus),
                            ("entrypoint_memory", entrypoint_memory), ("entrypoint_resources", entrypoint_resources)):
            if value:
                raise ValueError(f"{name} is not supported by ember yet: the entrypoint runs on the head "
                                 f"without reserving resources; leave it out")
        working_dir, excludes, kept = split_runtime_env(runtime_env)
        package = pack(working_dir, excludes) if working_dir is not None else b""
        if working_dir is not None:
            kept["working_dir"] = os.path.basename(os.path.abspath(working_dir))
        all_metadata = {**self._metadata, **(metadata or {})}
        reply = self._call("SubmitJob", pb.SubmitJobRequest(
            entrypoint=entrypoint, submission_id=submission_id or job_id or "",
            runtime_env_json=json.dumps(kept), metadata=all_metadata, working_dir_zip=package), timeout=120)
        return reply.submission_id

    def get_job_info(self, job_id: str) -> JobDetails:
        """Everything the head knows of the job ``job_id`` (its submission id)."""
        from ember._proto import node_pb2 as pb

        return _details(self._call("GetJob", pb.JobRequest(submission_id=job_id)))

    def get_job_status(self, job_id: str) -> JobStatus:
        """The job's ``JobStatus``."""
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobDetails]:
        """Every job the head knows, oldest first."""
        from ember._proto import node_pb2 as pb

        return [_details(j) for j in self._call("ListJobs", pb.ListJobsRequest()).jobs]

    def stop_job(self, job_id: str) -> bool:
        """Stop the job (SIGTERM to its processes, SIGKILL after a grace period); its tasks and
        actors end with it. False when it had already ended."""
        from ember._proto import node_pb2 as pb

        return self._call("StopJob", pb.JobRequest(submission_id=job_id)).stopped

    def delete_job(self, job_id: str) -> bool:
        """Forget an ended job (its info, logs and working directory); raises for a running one."""
        from ember._proto import node_pb2 as pb

        return self._call("DeleteJob", pb.JobRequest(submission_id=job_id)).deleted

    def get_job_logs(self, job_id: str) -> str:
        """What the job's entrypoint printed so far (stdout and stderr)."""
        call = self._open_logs(job_id, follow=False)
        return "".join(self._decode(call))

    def _open_logs(self, job_id: str, follow: bool) -> Any:
        from ember._proto import node_pb2 as pb

        return self._stub.JobLogs(pb.JobLogsRequest(submission_id=job_id, follow=follow), metadata=self._auth)

    def _decode(self, call: Any) -> Iterator[str]:
        import grpc

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for chunk in call:
                text = decoder.decode(chunk.data)
                if text:
                    yield text
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _error(exc, self.address) from None
        finally:
            call.cancel()

    def follow_job_logs(self, job_id: str) -> Iterator[str]:
        """The job's output as it is written, until the job ends (a blocking iterator)."""
        return self._decode(self._open_logs(job_id, follow=True))

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it is written, until the job ends: ``async for text in ...``."""
        call = self._open_logs(job_id, follow=True)
        chunks = self._decode(call)
        done = object()
        try:
            while True:
                text = await asyncio.to_thread(next, chunks, done)
                if text is done:
                    return
                yield text  # type: ignore[misc]
        finally:
            call.cancel()  # ends a next() still waiting in its thread


def _error(exc: Any, address: str) -> Exception:
    import grpc

    code, details = exc.code(), exc.details()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ConnectionError(f"the head at {address} refused the token: pass the right one with "
                               "token=... or EMBER_TOKEN")
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = (" (8265 is Ray's dashboard port: ember's jobs go through the head's gRPC port, "
                "6380 unless `ember start --port` said otherwise)" if address.endswith(":8265") else "")
        return ConnectionError(f"cannot reach the head at {address}: {details}{hint}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ConnectionError(f"{address} takes no jobs ({details}); give the head's address")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return ValueError(details)
    return RuntimeError(details)
