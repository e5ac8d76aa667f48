"""``ember.types`` (Ray's ``ray.types``): names for type hints."""

from ember.object_ref import ObjectRef

__all__ = ["ObjectRef"]
