"""The lazy DAG API as Ray documents it: f.bind, Cls.bind and node.method.bind build a graph
without running it; dag.execute(...) feeds InputNode and returns refs (or a handle, or a list
for MultiOutputNode); a node shared by several others runs once per execute."""

from __future__ import annotations

import ember
import pytest
from ember.dag import InputNode, MultiOutputNode

from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 4}


def test_function_dag_with_input(cluster):
    @ember.remote
    def double(x):
        return 2 * x

    @ember.remote
    def add(a, b):
        return a + b

    with InputNode() as inp:
        dag = add.bind(double.bind(inp), 10)
    assert ember.get(dag.execute(5), timeout=60) == 20
    assert ember.get(dag.execute(1), timeout=60) == 12  # runs afresh each time

    with InputNode() as inp:
        two = add.bind(double.bind(inp[0]), inp[1])
        kw = add.options(num_cpus=1).bind(inp.a, b=inp["b"])
    assert ember.get(two.execute(2, 3), timeout=60) == 7
    assert ember.get(kw.execute(a=1, b=2), timeout=60) == 3


def test_dag_builds_nothing_until_execute_and_shares_nodes(cluster, tmp_path):
    log = tmp_path / "runs"

    @ember.remote
    def mark(path, v):
        with open(path, "a") as f:
            f.write("x")
        return v

    @ember.remote
    def pair(a, b):
        return (a, b)

    shared = mark.bind(str(log), 1)
    dag = pair.bind(shared, shared)
    assert not log.exists()
    assert ember.get(dag.execute(), timeout=60) == (1, 1)
    assert log.read_text() == "x"  # the shared node ran once


def test_actor_dag_and_multi_output(cluster):
    @ember.remote
    class Counter:
        def __init__(self, start):
            self.n = start

        def add(self, k):
            self.n += k
            return self.n

    @ember.remote
    def square(x):
        return x * x

    with InputNode() as inp:
        counter = Counter.bind(100)
        dag = MultiOutputNode([counter.add.bind(inp), square.bind(inp)])
    refs = dag.execute(3)
    assert isinstance(refs, list) and ember.get(refs, timeout=60) == [103, 9]
    handle = Counter.bind(1).execute()
    assert ember.get(handle.add.remote(1), timeout=60) == 2
    existing = Counter.remote(0)
    with InputNode() as inp:
        on_handle = existing.add.bind(inp)
    assert ember.get(on_handle.execute(5), timeout=60) == 5
    assert ember.get(on_handle.execute(5), timeout=60) == 10  # the same actor each time


def test_input_errors_name_the_problem(cluster):
    @ember.remote
    def ident(x):
        return x

    with InputNode() as inp:
        dag = ident.bind(inp)
        second = ident.bind(inp[1])
    with pytest.raises(ValueError, match="pass the input"):
        dag.execute()
    with pytest.raises(IndexError):
        second.execute(1)


PROGRAM = """
import ray
from ray.dag import InputNode, MultiOutputNode

ray.init(num_cpus=2)

@ray.remote
def preprocess(x):
    return x + 1

@ray.remote
class Model:
    def __init__(self, w):
        self.w = w

    def predict(self, x):
        return self.w * x

with InputNode() as inp:
    m = Model.bind(10)
    dag = MultiOutputNode([m.predict.bind(preprocess.bind(inp)), preprocess.bind(inp)])
print(ray.get(dag.execute(1)))
ray.shutdown()
"""


def test_dag_under_ember_run(tmp_path):
    assert output_lines(run_ray_program(tmp_path, PROGRAM)) == ["[20, 2]"]


def test_calls_bound_on_a_class_node_run_in_bind_order(cluster):
    """As Ray's DAG guide shows: calls bound on a class node run before later ones on it,
    even when nothing in the executed graph uses their results."""
    from ember.dag.input_node import InputNode as InputNodeByPath
    from ember.dag.output_node import MultiOutputNode as MultiOutputByPath

    @ember.remote
    class Acc:
        def __init__(self, v):
            self.v = v

        def inc(self, k):
            self.v += k

        def get(self):
            return self.v

    @ember.remote
    def combine(x, y):
        return x + y

    a1, a2 = Acc.bind(10), Acc.bind(10)
    first = a1.get.bind()
    assert ember.get(first.execute(), timeout=60) == 10
    a1.inc.bind(2)
    a1.inc.bind(4)
    a2.inc.bind(6)
    dag = combine.bind(a1.get.bind(), a2.get.bind())
    assert ember.get(dag.execute(), timeout=60) == 32
    assert InputNodeByPath is InputNode and MultiOutputByPath is MultiOutputNode
    with InputNode() as inp:
        multi = MultiOutputNode([combine.bind(inp["x"], 1), combine.bind(inp["y"], 1)])
    assert ember.get(multi.execute({"x": 1, "y": 2}), timeout=60) == [2, 3]
