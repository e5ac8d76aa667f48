"""``ember.dag.function_node`` (Ray's ``ray.dag.function_node``): see ember.dag."""

from ember.dag import FunctionNode

__all__ = ["FunctionNode"]
