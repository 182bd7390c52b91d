"""Observers and helpers that connect repro to other tools (alert sinks, Prometheus, MLflow).

Each is loaded by name through the entry-point group `repro.observers` (pyproject.toml), so the
runner never imports them and a project that does not use one pays nothing for it."""
