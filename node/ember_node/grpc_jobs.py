"""The head's job calls over gRPC (SubmitJob, GetJob, ListJobs, StopJob, DeleteJob, JobLogs):
protobuf in, protobuf out, nothing unpickled; the work is ``ember_node.jobs.JobManager``'s.

Mixed into ``grpc_server.NodeServicer``, whose ``jobs`` attribute is the manager (None on an
agent that takes no jobs: the calls then answer UNIMPLEMENTED).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
from ember._proto import node_pb2 as pb

from ember_node.job_state import JobConflict, JobNotFound, JobRecord


def job_info(r: JobRecord) -> pb.JobInfo:
    """A job's record as its protobuf message."""
    msg = pb.JobInfo(submission_id=r.submission_id, status=r.status.value, entrypoint=r.entrypoint,
                     message=r.message, error_type=r.error_type, start_time_ms=r.start_time_ms,
                     end_time_ms=r.end_time_ms, metadata=r.metadata,
                     runtime_env_json=json.dumps(r.runtime_env), driver_pid=r.driver_pid)
    if r.driver_exit_code is not None:
        msg.driver_exit_code = r.driver_exit_code
    return msg


class JobServicer:
    """The job methods of the head's ``Node`` service."""

    jobs: Any = None

    def _manager(self, context: grpc.ServicerContext) -> Any:
        if self.jobs is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          "this agent takes no jobs: submit them to the head's gRPC port")
        return self.jobs

    @staticmethod
    def _refuse(context: grpc.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, JobNotFound):
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if isinstance(exc, JobConflict):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.ServicerContext) -> pb.SubmitJobReply:
        jobs = self._manager(context)
        try:
            runtime_env = json.loads(request.runtime_env_json or "{}")
            if not isinstance(runtime_env, dict):
                raise ValueError("runtime_env must be a JSON object")
            sid = jobs.submit(request.entrypoint, request.submission_id, runtime_env, dict(request.metadata),
                              request.working_dir_zip)
        except (ValueError, KeyError) as exc:
            self._refuse(context, exc)
        return pb.SubmitJobReply(submission_id=sid)

    def GetJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.JobInfo:
        jobs = self._manager(context)
        try:
            return job_info(jobs.info(request.submission_id))
        except KeyError as exc:
            self._refuse(context, exc)
        raise AssertionError("unreachable")

    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext) -> pb.ListJobsReply:
        return pb.ListJobsReply(jobs=[job_info(r) for r in self._manager(context).list()])

    def StopJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.StopJobReply:
        jobs = self._manager(context)
        try:
            return pb.StopJobReply(stopped=jobs.stop(request.submission_id))
        except KeyError as exc:
            self._refuse(context, exc)
        raise AssertionError("unreachable")

    def DeleteJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.DeleteJobReply:
        jobs = self._manager(context)
        try:
            return pb.DeleteJobReply(deleted=jobs.delete(request.submission_id))
        except (KeyError, ValueError) as exc:
            self._refuse(context, exc)
        raise AssertionError("unreachable")

    def JobLogs(self, request: pb.JobLogsRequest, context: grpc.ServicerContext) -> Iterator[pb.JobLogChunk]:
        jobs = self._manager(context)
        try:
            jobs.info(request.submission_id)
        except KeyError as exc:
            self._refuse(context, exc)
        for data in jobs.follow_log(request.submission_id, request.offset, request.follow, context.is_active):
            yield pb.JobLogChunk(data=data)
