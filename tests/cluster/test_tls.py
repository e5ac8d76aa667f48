"""Optional TLS (issue 4): a head serving gRPC with --tls-cert/--tls-key, a worker node and a
remote driver that verify it with the CA (--tls-ca, init(tls_ca=)), and a client without the
CA refused. Certificates are made by the test with the openssl command (skipped without it).
Real agents on loopback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import ember
import numpy as np
import pytest

from .helpers import MiB, query, start_head, start_worker_node, wait_cluster


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certs(tmp_short):
    """(ca.pem, cert.pem, key.pem): a CA, and a certificate it signed for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_short / "tls"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=ember test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "req.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


def test_tls_head_with_a_worker_node_and_a_remote_driver(procs, tmp_short, certs):
    ca, cert, key = certs
    head = start_head(procs, tmp_short, num_cpus=1, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    start_worker_node(procs, head, tmp_short, "t", num_cpus=1, resources={"t": 1},
                      extra_args=["--tls-ca", str(ca)])
    wait_cluster(head, alive_nodes=2)
    (nodes,) = query(head, ("nodes", None))
    worker = [n for n in nodes if not n["IsHead"]][0]
    assert worker["peer_address"] == "", "with TLS, copies must not cross between nodes in clear"

    # without the CA the driver cannot complete the handshake: a clear error, not a hang
    with pytest.raises(ConnectionError, match="cannot reach"):
        ember.init(head.address, token=head.token)
    assert not ember.is_initialized()

    ember.init(head.address, token=head.token, tls_ca=str(ca))
    try:
        @ember.remote(resources={"t": 1})
        def total(x):
            import os

            return int(x.sum()), os.environ.get("EMBER_TEST_NODE")

        @ember.remote(resources={"t": 1})
        def make(n):
            import numpy as np

            return np.full(n, 2, dtype=np.uint8)

        data = np.ones(12 * MiB, dtype=np.uint8)
        assert ember.get(total.remote(ember.put(data)), timeout=60) == (12 * MiB, "t")  # up, and to the node
        back = ember.get(make.remote(10 * MiB), timeout=60)  # made on the node, down to the driver
        assert back.nbytes == 10 * MiB and int(back.sum()) == 20 * MiB
    finally:
        ember.shutdown()
