"""Start and stop the embedded cluster: a node agent as a child process of the driver."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

from ember._local_cluster import end_session, new_session_dir


class EmbeddedCluster:
    """A node agent (and through it, a worker pool) owned by this driver process."""

    def __init__(
        self,
        num_cpus: float | None,
        num_gpus: float | None,
        resources: dict[str, float] | None,
        object_store_memory: int | None,
        timeout: float = 30.0,
        metrics_port: int | None = None,
        dashboard: tuple[str, int, bool] | None = None,
    ) -> None:
        """``dashboard``: (host, port, next free port if taken), or None for no dashboard."""
        self.session_dir = new_session_dir("ember-")
        self.log_path = os.path.join(self.session_dir, "logs", "agent.log")
        cmd = [sys.executable, "-m", "ember_node", "--embedded", "--session-dir", self.session_dir]
        if num_cpus is not None:
            cmd += ["--num-cpus", str(num_cpus)]
        if num_gpus:
            cmd += ["--num-gpus", str(num_gpus)]
        if resources:
            cmd += ["--resources", json.dumps(resources)]
        if object_store_memory:
            cmd += ["--object-store-memory", str(int(object_store_memory))]
        if metrics_port is not None:  # Prometheus /metrics and /healthz on 127.0.0.1:metrics_port
            cmd += ["--metrics-port", str(int(metrics_port))]
        if dashboard is not None:  # the web UI (ember_node.dashboard); its URL comes back in the session
            host, port, next_free = dashboard
            cmd += ["--dashboard-host", host, "--dashboard-port", str(int(port))]
            cmd += ["--dashboard-next-free"] if next_free else []
        rfd, wfd = os.pipe()
        cmd += ["--ready-fd", str(wfd)]
        self._log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=(wfd,),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                start_new_session=True,  # Ctrl-C reaches the driver, which shuts us down
            )
        finally:
            os.close(wfd)
        try:
            self.session = self._read_ready(rfd, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(rfd)

    def _read_ready(self, rfd: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the node agent did not start within {timeout:.0f} s; see {self.log_path}")
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(rfd, 65536)
            if not chunk:
                self.proc.wait(timeout=5)
                raise RuntimeError(f"the node agent failed to start:\n{self._log_tail()}")
            data += chunk
        return json.loads(data)

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """Wait for the agent to exit (it was told to), kill it if it does not, and clean up."""
        proc = self.proc
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()
        if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
            # the agent failed on its own: what it logged is the only account of why
            sys.stderr.write(f"ember: the node agent exited with status {proc.returncode}; its logs are "
                             f"in {os.path.join(self.session_dir, 'logs')}\n")
        end_session(self.session_dir)  # the logs stay: see ember._local_cluster
        arena = self.session.get("arena") if hasattr(self, "session") else None
        if arena:
            try:
                os.unlink(arena)
            except FileNotFoundError:
                pass

