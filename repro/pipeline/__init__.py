"""Pipelines: the spec, the graph, signatures, planning, and running stages."""
