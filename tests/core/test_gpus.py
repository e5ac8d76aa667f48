"""GPU scheduling on a node told it has 2 GPUs (none exist here: only the accounting and
CUDA_VISIBLE_DEVICES are checked, on a real embedded cluster)."""

from __future__ import annotations

import time

import ember

CLUSTER_ARGS = {"num_cpus": 4, "num_gpus": 2}


def test_each_task_sees_only_its_gpus(cluster):
    @ember.remote(num_gpus=1)
    def one_gpu():
        import os

        time.sleep(0.5)
        return os.environ.get("CUDA_VISIBLE_DEVICES"), ember.get_gpu_ids()

    results = ember.get([one_gpu.remote() for _ in range(2)], timeout=60)
    devices = sorted(r[0] for r in results)
    assert devices == ["0", "1"], results  # two tasks at once: one GPU each, not the same one
    assert all(r[1] == [int(r[0])] for r in results)

    @ember.remote
    def no_gpu():
        import os

        return os.environ.get("CUDA_VISIBLE_DEVICES"), ember.get_gpu_ids()

    assert ember.get(no_gpu.remote(), timeout=60) == ("", [])


def test_fractional_gpus_share_one_device(cluster):
    @ember.remote(num_gpus=0.5)
    def half():
        import os

        time.sleep(0.5)
        return os.environ["CUDA_VISIBLE_DEVICES"]

    # four halves on two GPUs at once: each GPU holds two of them
    devices = ember.get([half.remote() for _ in range(4)], timeout=60)
    assert sorted(devices) == ["0", "0", "1", "1"], devices
    assert _eventually(lambda: ember.available_resources().get("GPU") == 2.0)


def test_gpu_actor_holds_its_gpu(cluster):
    @ember.remote(num_gpus=1)
    class Model:
        def devices(self):
            import os

            return os.environ["CUDA_VISIBLE_DEVICES"]

    model = Model.remote()
    device = ember.get(model.devices.remote(), timeout=60)
    assert device in ("0", "1")
    assert ember.available_resources().get("GPU") == 1.0
    ember.kill(model)
    assert _eventually(lambda: ember.available_resources().get("GPU") == 2.0)


def _eventually(check, timeout: float = 10.0) -> bool:
    """Resources come back when the agent has processed the end of the work, which may be a
    moment after the driver has the results."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
