"""Remotes: named fsspec stores with the cache's layout, configured in `.repro/config.toml`."""

from __future__ import annotations

from typing import Any

from repro.project import Project


def default_remote_name(project: Project) -> str | None:
    return (project.config.get("core") or {}).get("remote")


def fetch_missing(project: Project, missing: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Fetch `(path, hash)` objects from the default remote; return those still missing."""
    name = default_remote_name(project)
    if not name or not missing:
        return missing
    from repro.transfer import fetch_objects

    got = fetch_objects(project, name, {h for _, h in missing})
    return [(p, h) for p, h in missing if h not in got]


def remote_config(project: Project, name: str) -> dict[str, Any]:
    from repro.errors import NotFoundError

    remotes = project.config.get("remote") or {}
    if name not in remotes:
        raise NotFoundError(
            f".repro/config.toml: no remote named '{name}' (see 'repro remote list')."
        )
    return remotes[name]
