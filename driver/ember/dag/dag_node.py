"""``ember.dag.dag_node`` (Ray's ``ray.dag.dag_node``): see ember.dag."""

from ember.dag import DAGNode

__all__ = ["DAGNode"]
