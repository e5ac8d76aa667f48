"""``ember.dag.class_node`` (Ray's ``ray.dag.class_node``): see ember.dag."""

from ember.dag import ClassMethodNode, ClassNode

__all__ = ["ClassNode", "ClassMethodNode"]
