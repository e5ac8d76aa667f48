"""A worker node on another host as far as the network goes: its own network namespace,
made by the test, whose only way out is a veth pair to the head's address (issue 4: where it
matters, distinct network namespaces). Objects cross that link both ways through the node's
store. Real agents and workers; skipped with the reason when not root."""

from __future__ import annotations

import hashlib

import ember
import numpy as np

from .helpers import MiB, start_head, start_worker_node, wait_cluster


def test_objects_cross_to_and_from_a_node_in_another_namespace(procs, tmp_short, netns, connect):
    ns, host_ip, ns_ip = netns
    head = start_head(procs, tmp_short, num_cpus=1, host=host_ip)
    start_worker_node(procs, head, tmp_short, "far", num_cpus=2, resources={"far": 1},
                      prefix=["ip", "netns", "exec", ns])
    wait_cluster(head, alive_nodes=2, idle_workers=3)
    connect(head)

    @ember.remote(resources={"far": 0.5})
    def digest(x):
        import hashlib

        import psutil

        mine = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
        return hashlib.sha256(x.data).hexdigest(), sorted(mine)

    @ember.remote(resources={"far": 0.5})
    def make(nbytes, seed):
        import numpy as np

        return np.random.default_rng(seed).integers(0, 256, size=nbytes, dtype=np.uint8)

    data = np.random.default_rng(3).integers(0, 256, size=64 * MiB, dtype=np.uint8)
    ref = ember.put(data)
    h, addresses = ember.get(digest.remote(ref), timeout=90)
    assert ns_ip in addresses and host_ip not in addresses, addresses  # it ran in the namespace
    assert h == hashlib.sha256(data.data).hexdigest()
    assert ember.get(digest.remote(ref), timeout=90)[0] == h  # again, from the node's copy

    made = make.remote(48 * MiB, 5)
    back = ember.get(made, timeout=90)
    expected = np.random.default_rng(5).integers(0, 256, size=48 * MiB, dtype=np.uint8)
    assert hashlib.sha256(back.data).hexdigest() == hashlib.sha256(expected.data).hexdigest()
    assert ember.get(digest.remote(made), timeout=90)[0] == hashlib.sha256(expected.data).hexdigest()
