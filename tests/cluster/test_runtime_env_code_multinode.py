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
