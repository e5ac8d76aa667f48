"""The lazy DAG API (Ray's ``ray.dag``): ``f.bind(...)``, ``Cls.bind(...)``,
``node.method.bind(...)``, ``InputNode`` and ``MultiOutputNode`` build a graph without running
anything; ``dag.execute(*args, **kwargs)`` submits it, feeding the arguments to its
``InputNode``, and returns what the last node gives (an ObjectRef, an actor handle, or a list
for a MultiOutputNode).

    with InputNode() as inp:
        dag = add.bind(double.bind(inp[0]), inp[1])
    ember.get(dag.execute(2, 3))   # 7

Within one ``execute`` every node runs once, however many nodes use it; each ``execute``
runs the graph afresh (a class node creates a new actor). Nodes may appear anywhere in the
arguments, also inside lists, tuples and dicts. Method calls bound on one class node run in
the order they were bound: a call runs after every call bound on that node before it, even
one no other node uses (as Ray does: ``a.inc.bind(2); dag = a.get.bind()`` sees the inc).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClassMethodNode", "ClassNode", "DAGNode", "FunctionNode", "InputAttributeNode",
           "InputNode", "MultiOutputNode"]


class _Execution:
    """One run of a graph: its inputs and the result of every node computed so far."""

    def __init__(self, args: tuple, kwargs: dict) -> None:
        self.args = args
        self.kwargs = kwargs
        self.results: dict[int, Any] = {}

    def value(self, node: DAGNode) -> Any:
        key = id(node)
        if key not in self.results:
            self.results[key] = node._compute(self)
        return self.results[key]

    def resolve(self, x: Any) -> Any:
        """``x`` with every node in it replaced by its result."""
        if isinstance(x, DAGNode):
            return self.value(x)
        if type(x) in (list, tuple):
            return type(x)(self.resolve(v) for v in x)
        if type(x) is dict:
            return {k: self.resolve(v) for k, v in x.items()}
        return x


class DAGNode:
    """A step of a lazy graph; ``execute`` runs the graph that ends here."""

    def __init__(self, args: tuple = (), kwargs: dict | None = None) -> None:
        self._bound_args = args
        self._bound_kwargs = kwargs or {}

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the graph; ``args``/``kwargs`` are what its InputNode stands for."""
        return _Execution(args, kwargs).value(self)

    def _call_args(self, ex: _Execution) -> tuple[tuple, dict]:
        return ex.resolve(self._bound_args), ex.resolve(self._bound_kwargs)

    def _compute(self, ex: _Execution) -> Any:
        raise NotImplementedError


class FunctionNode(DAGNode):
    """``f.bind(...)``: the task ``f.remote(...)``."""

    def __init__(self, submit: Any, name: str, args: tuple, kwargs: dict) -> None:
        super().__init__(args, kwargs)
        self._submit = submit  # a RemoteFunction, or one with options
        self._name = name

    def _compute(self, ex: _Execution) -> Any:
        args, kwargs = self._call_args(ex)
        return self._submit.remote(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionNode({self._name})"


class ClassNode(DAGNode):
    """``Cls.bind(...)``: the actor ``Cls.remote(...)``; ``node.method.bind(...)`` calls it."""

    def __init__(self, create: Any, name: str, args: tuple, kwargs: dict) -> None:
        super().__init__(args, kwargs)
        self._create = create  # an ActorClass, or one with options
        self._name = name
        self._last_call: ClassMethodNode | None = None  # the method call bound last on it

    def _compute(self, ex: _Execution) -> Any:
        args, kwargs = self._call_args(ex)
        return self._create.remote(*args, **kwargs)

    def __getattr__(self, name: str) -> _UnboundMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return _UnboundMethod(self, name)

    def __repr__(self) -> str:
        return f"ClassNode({self._name})"


class _UnboundMethod:
    __slots__ = ("_actor", "_method", "_options")

    def __init__(self, actor: Any, method: str, options: dict | None = None) -> None:
        self._actor = actor  # a ClassNode, or an actor handle
        self._method = method
        self._options = options or {}

    def options(self, **options: Any) -> _UnboundMethod:
        return _UnboundMethod(self._actor, self._method, {**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> ClassMethodNode:
        return ClassMethodNode(self._actor, self._method, self._options, args, kwargs)


class ClassMethodNode(DAGNode):
    """``actor_node.method.bind(...)``: the call ``actor.method.remote(...)``."""

    def __init__(self, actor: Any, method: str, options: dict, args: tuple, kwargs: dict) -> None:
        super().__init__(args, kwargs)
        self._actor = actor
        self._method = method
        self._options = options
        self._previous: ClassMethodNode | None = None
        if isinstance(actor, ClassNode):
            self._previous = actor._last_call
            actor._last_call = self

    def _compute(self, ex: _Execution) -> Any:
        if self._previous is not None:
            ex.value(self._previous)  # submitted first: one caller's calls run in order
        handle = ex.value(self._actor) if isinstance(self._actor, DAGNode) else self._actor
        args, kwargs = self._call_args(ex)
        method = getattr(handle, self._method)
        if self._options:
            method = method.options(**self._options)
        return method.remote(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ClassMethodNode({self._method})"


class InputNode(DAGNode):
    """What ``execute`` is called with: the single argument itself, ``inp[i]`` the i-th
    positional one, ``inp["k"]`` or ``inp.k`` a keyword one. Use it as ``with InputNode() as
    inp:`` (as Ray does) or plainly."""

    def __enter__(self) -> InputNode:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __getitem__(self, key: int | str) -> InputAttributeNode:
        return InputAttributeNode(self, key)

    def __getattr__(self, name: str) -> InputAttributeNode:
        if name.startswith("_"):
            raise AttributeError(name)
        return InputAttributeNode(self, name)

    def _compute(self, ex: _Execution) -> Any:
        if len(ex.args) == 1 and not ex.kwargs:
            return ex.args[0]
        if not ex.args and not ex.kwargs:
            raise ValueError("this DAG uses its InputNode: pass the input to execute(...)")
        raise ValueError(f"execute() got {len(ex.args)} positional and {len(ex.kwargs)} keyword "
                         "inputs: pick one in the graph with inp[index] or inp['name']")

    def __repr__(self) -> str:
        return "InputNode()"


class InputAttributeNode(DAGNode):
    """One of the inputs of ``execute``: ``inp[0]``, ``inp["k"]``, ``inp.k``."""

    def __init__(self, inp: InputNode, key: int | str) -> None:
        super().__init__()
        self._key = key

    def _compute(self, ex: _Execution) -> Any:
        key = self._key
        if isinstance(key, int):
            if key >= len(ex.args) and len(ex.args) == 1 and isinstance(ex.args[0], list | tuple):
                return ex.args[0][key]
            if -len(ex.args) <= key < len(ex.args):
                return ex.args[key]
            raise IndexError(f"the DAG reads input [{key}] but execute() got {len(ex.args)} positional inputs")
        if key in ex.kwargs:
            return ex.kwargs[key]
        if len(ex.args) == 1 and not ex.kwargs:  # a single dict or object given positionally
            only = ex.args[0]
            if isinstance(only, dict) and key in only:
                return only[key]
            if hasattr(only, key):
                return getattr(only, key)
        raise KeyError(f"the DAG reads input {key!r} but execute() got no such keyword input")

    def __repr__(self) -> str:
        return f"InputAttributeNode({self._key!r})"


class MultiOutputNode(DAGNode):
    """Several nodes as one output: ``execute`` returns the list of their results."""

    def __init__(self, nodes: list[DAGNode]) -> None:
        super().__init__((list(nodes),))

    def _compute(self, ex: _Execution) -> Any:
        return ex.resolve(self._bound_args[0])

    def __repr__(self) -> str:
        return f"MultiOutputNode({len(self._bound_args[0])})"
