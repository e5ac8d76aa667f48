"""``ember.dag.output_node`` (Ray's ``ray.dag.output_node``): see ember.dag."""

from ember.dag import MultiOutputNode

__all__ = ["MultiOutputNode"]
