"""The head's log calls over gRPC: LogFiles (what its session's ``logs/`` holds) and
StreamLog (one file, its end, followed as it grows). Only files directly in that directory
are served (``ember_node.log_files``); an actor or task id is mapped to its worker's file
with the head's state rows.

Mixed into ``grpc_server.NodeServicer``, whose ``agent`` attribute is the head's agent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
from ember._proto import node_pb2 as pb

from ember_node import log_files as lf


class LogServicer:
    """The log methods of the head's ``Node`` service."""

    agent: Any = None

    def _log_dir(self) -> str:
        return os.path.join(self.agent.session_dir, "logs")

    def LogFiles(self, request: pb.LogFilesRequest, context: grpc.ServicerContext) -> pb.LogFilesReply:
        files = lf.list_logs(self._log_dir())
        return pb.LogFilesReply(node_id=self.agent.node_id, files=[
            pb.LogFileInfo(name=f.name, size=f.size, mtime=f.mtime, kind=f.kind, pid=f.pid or 0, job=f.job)
            for f in files])

    def _rows(self, what: str) -> list[dict]:
        """The head's state rows, read from this gRPC thread while the agent's loop may change
        its tables: a read that meets a table changing size is tried again."""
        for _ in range(20):
            try:
                return self.agent.state_rows(what)
            except RuntimeError:  # "dictionary changed size during iteration"
                continue
        return self.agent.state_rows(what)

    def _pick(self, request: pb.StreamLogRequest) -> lf.LogFile:
        pid: int | None = request.worker_pid or None
        node = self.agent.node_id
        for key, value in (("actor_id", request.actor_id), ("task_id", request.task_id)):
            if value:
                rows = self._rows("actors" if key == "actor_id" else "tasks")
                pid, ran_on = lf.worker_of(rows, key, value)
                if ran_on and ran_on != node:
                    raise lf.LogNotFound(
                        f"{key.split('_')[0]} {value} ran on node {ran_on[:12]} (worker pid {pid}); its "
                        f"output is in that node's own session directory, not the head's: run "
                        f"`ember logs --worker-pid {pid}` on that machine")
        files = [lf.LogFile(f.name, f.size, f.mtime, f.kind, f.pid, f.job, node)
                 for f in lf.list_logs(self._log_dir())]
        return lf.pick(files, name=request.name and lf.check_name(request.name), worker_pid=pid,
                       job=request.job, stderr=request.stderr)

    def StreamLog(self, request: pb.StreamLogRequest, context: grpc.ServicerContext) -> Iterator[pb.LogChunk]:
        try:
            f = self._pick(request)
            path = lf.path_in(self._log_dir(), f.name)
            start = lf.tail_start(path, request.tail_lines if request.tail_lines >= 0 else None)
        except lf.LogNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (ValueError, OSError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        yield pb.LogChunk(name=f.name)
        for data in lf.read_log(path, start, request.follow, context.is_active):
            yield pb.LogChunk(data=data)
