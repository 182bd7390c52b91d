"""Executors: how a stage's command is run (a local process, a container, a Dask worker),
kept apart from the planner that decides what runs."""
