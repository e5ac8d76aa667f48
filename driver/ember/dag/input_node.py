"""``ember.dag.input_node`` (Ray's ``ray.dag.input_node``): see ember.dag."""

from ember.dag import InputAttributeNode, InputNode

__all__ = ["InputNode", "InputAttributeNode"]
