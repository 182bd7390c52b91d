"""Storage: one backend interface (local disk or any fsspec URL) and the content-addressed
object store, run cache, snapshots and records built on it."""
