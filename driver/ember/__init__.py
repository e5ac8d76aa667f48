"""ember: fast, simple distributed computing for Python, with Ray's core API.

    import ember as ray
    ray.init()

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))   # [0, 1, 4, 9]
"""

from ember import exceptions
from ember.actor import ActorClass, ActorHandle
from ember.api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_gpu_ids,
    init,
    is_initialized,
    kill,
    method,
    nodes,
    put,
    remote,
    shutdown,
    timeline,
    wait,
)
from ember.generators import DynamicObjectRefGenerator, ObjectRefGenerator
from ember.object_ref import ObjectRef
from ember.runtime_context import get_runtime_context

__version__ = "0.1.0"

# Ray's top-level names that ember does not implement: they resolve (so ``import ember as ray``
# programs import), and raise NotImplementedError naming the feature when used.
_RAY_ONLY_NAMES = frozenset({
    "ActorClassID", "ActorID", "ClientBuilder", "FunctionID", "JobID",
    "Language", "LoggingConfig", "NodeID", "ObjectID", "PlacementGroupID",
    "TaskID", "UniqueID", "WorkerID", "client", "cpp_function", "java_actor_class",
    "java_function", "show_in_dashboard",
})
# Ray's subpackages reachable as attributes of ``ray`` after ``import ray``.
_SUBMODULES = frozenset({
    "actor", "autoscaler", "cloudpickle", "cross_language", "dag", "data", "exceptions",
    "experimental", "job_config", "runtime_context", "runtime_env", "types", "util", "widgets",
    "workflow",
})


def __getattr__(name: str):
    if name in _SUBMODULES:
        from ember._ray_alias import resolve

        return resolve("ray." + name)
    if name in _RAY_ONLY_NAMES:
        from ember._unsupported import Unsupported

        return Unsupported(f"ray.{name}")
    raise AttributeError(f"module 'ember' has no attribute {name!r}")


__all__ = [
    "ActorClass",
    "ActorHandle",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "kill",
    "is_initialized",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "wait",
]
