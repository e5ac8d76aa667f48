"""``ember.cloudpickle`` (Ray's ``ray.cloudpickle``): the cloudpickle ember serializes with."""

from cloudpickle import *  # noqa: F403
from cloudpickle import dump, dumps, load, loads  # noqa: F401
