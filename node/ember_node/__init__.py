"""The ember node agent: scheduler, worker pool, shared-memory object store, cluster directory."""
