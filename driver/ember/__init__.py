"""ember: fast, simple distributed computing for Python, with Ray's core API.

    import ember as ray
    ray.init()

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))   # [0, 1, 4, 9]
"""

from ember import exceptions
from ember.api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    init,
    is_initialized,
    method,
    nodes,
    put,
    remote,
    shutdown,
    timeline,
    wait,
)
from ember.object_ref import ObjectRef

__version__ = "0.1.0"

__all__ = [
    "ObjectRef",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "init",
    "is_initialized",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "wait",
]
