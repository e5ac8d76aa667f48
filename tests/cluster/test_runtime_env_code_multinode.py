"""runtime_env ``working_dir`` and ``py_modules`` across nodes: a remote driver (which talks
to the head's gRPC port only) ships its code through the head, and a worker node's tasks and
actors unpack it once per node, under that node's own session directory, by content hash."""

from __future__ import annotations

import os
import shutil

import ember

from .helpers import short_tmpdir, start_head, start_worker_node, wait_cluster

T = 60


def _write(root: str, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return root


def test_a_remote_driver_ships_code_to_a_worker_node(procs):
    root = short_tmpdir()
    try:
        head = start_head(procs, root, num_cpus=1)
        node = start_worker_node(procs, head, root, "a", num_cpus=2, resources={"node_a": 2})
        wait_cluster(head, alive_nodes=2, idle_workers=3)
        wd = _write(os.path.join(root, "code", "project"), {"only_here.py": "VALUE = 7\n", "notes.txt": "hi\n"})
        pkg = _write(os.path.join(root, "code", "libs"), {"helpers/__init__.py": "def twice(x):\n    return 2 * x\n"})
        ember.init(head.address, token=head.token, runtime_env={"working_dir": wd})

        @ember.remote(resources={"node_a": 1})
        def on_a(x):
            import only_here

            return only_here.VALUE + x, os.getcwd(), open("notes.txt").read().strip(), os.environ["EMBER_TEST_NODE"]

        @ember.remote(resources={"node_a": 1})
        class Helper:
            def run(self, x):
                import helpers
                import only_here

                return helpers.twice(x) + only_here.VALUE, os.getcwd()

        results = ember.get([on_a.remote(i) for i in range(4)], timeout=T)
        assert [r[0] for r in results] == [7, 8, 9, 10]
        assert {r[2] for r in results} == {"hi"} and {r[3] for r in results} == {"a"}
        cwds = {r[1] for r in results}
        assert len(cwds) == 1, f"one copy per node, got {cwds}"
        cwd = cwds.pop()
        assert os.path.realpath(cwd).startswith(os.path.realpath(node.session_dir) + os.sep), (
            f"the worker node's tasks ran in {cwd}, not under its session directory {node.session_dir}")
        helper = Helper.options(runtime_env={"py_modules": [os.path.join(pkg, "helpers")]}).remote()
        value, actor_cwd = ember.get(helper.run.remote(5), timeout=T)
        assert value == 17 and actor_cwd == cwd
        unpacked = os.listdir(os.path.dirname(cwd))
        assert len(unpacked) == 2, f"the working_dir and the package, each unpacked once: {unpacked}"
    finally:
        if ember.is_initialized():
            ember.shutdown()
        procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_each_node_installs_a_pip_env_of_its_own(procs):
    """runtime_env pip across nodes: each node makes the venv in its own cache directory
    (``EMBER_RUNTIME_ENV_DIR`` per node here), from a wheel the test built."""
    from tests.rayapi.helpers import build_wheel

    root = short_tmpdir()
    try:
        head_envs, node_envs = root / "envs-head", root / "envs-a"
        head = start_head(procs, root, num_cpus=1, resources={"on_head": 1},
                          env={"EMBER_RUNTIME_ENV_DIR": str(head_envs)})
        start_worker_node(procs, head, root, "a", num_cpus=1, resources={"node_a": 1},
                          env={"EMBER_RUNTIME_ENV_DIR": str(node_envs)})
        wait_cluster(head, alive_nodes=2, idle_workers=2)
        wheel = build_wheel(root, "tinyember_nodes", 3)
        ember.init(head.address, token=head.token, runtime_env={"pip": [wheel]})

        @ember.remote
        def value():
            import tinyember_nodes

            return tinyember_nodes.VALUE, os.environ.get("EMBER_TEST_NODE", "head")

        on_a = ember.get(value.options(resources={"node_a": 1}).remote(), timeout=120)
        on_head = ember.get(value.options(resources={"on_head": 1}).remote(), timeout=120)
        assert on_a == (3, "a") and on_head == (3, "head")
        for envs in (head_envs, node_envs):
            made = [p for p in envs.iterdir() if p.is_dir()]
            assert len(made) == 1 and (made[0] / ".ember-ready").exists(), (envs, made)
    finally:
        if ember.is_initialized():
            ember.shutdown()
        procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)
