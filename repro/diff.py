"""`repro diff`: exactly what changed between two states, stage by stage, with a severity.

A state is a stored snapshot or the workspace as it is now. For each stage, every change gets a
kind (code, data, params, env, image, seed, cmd, outs, upstream), a target, old and new values
(param values; hash and size for files; files added, removed and changed for folders; "schema
changed" apart from "values changed" for tables; old, new and delta for metrics) and a severity
from the policy in `.repro/config.toml` (repro/policy.py: `[diff.severity]`, `[diff]
metric_threshold`, `[diff.metrics]`, `[diff.code]`).
"""

from __future__ import annotations

import os
from typing import Any

from repro.errors import PathError, ReproError
from repro.pipeline.probes import CACHED, Probes
from repro.policy import (  # noqa: F401  (re-exported: callers import them from here)
    DEFAULT_METRIC_THRESHOLD,
    DEFAULT_SEVERITY,
    diff_snapshots,
    state_commit,
)
from repro.project import Project
from repro.snapshots import Snapshot


def workspace_snapshot(
    project: Project, absent: list[str] | None = None, probes: Probes = CACHED
) -> Snapshot:
    """The workspace as a snapshot (nothing stored): current inputs and outputs of every stage.

    A path repro.lock records but the workspace lacks (a fresh clone before `repro pull`) is
    taken as recorded and listed in `absent`: its content is elsewhere, not changed. Images are
    asked of `probes` (injected by the caller; the default starts nothing)."""
    from repro.lockfile import Lock, load_lock
    from repro.model import PathHash
    from repro.pipeline.spec import load_spec
    from repro.pipeline.status import image_digest, lock_entry, plan_inputs, recorded_paths

    spec = load_spec(project)
    lock = load_lock(project.lock_path)
    recorded = recorded_paths(lock)
    gone = absent if absent is not None else []
    stages = {}
    for name, st in spec.stages.items():
        try:
            inputs, _ = plan_inputs(project, st, lock, image_digest(lock, st), probes)
        except ReproError:
            continue
        if inputs is None:
            continue
        outs = {}
        for o in st.outs:
            p = project.abs(o.path)
            if os.path.lexists(p):
                try:
                    outs[o.path] = PathHash.of(project.hasher.hash_path(p))
                except PathError:
                    pass
            elif o.path in recorded:
                outs[o.path] = PathHash.from_dict(recorded[o.path])
                gone.append(o.path)
        gone += [d for d in st.deps if not os.path.lexists(project.abs(d)) and d in recorded]
        stages[name] = lock_entry(inputs, st, outs)
    data = {}
    for rel in spec.data:
        p = project.abs(rel)
        if os.path.lexists(p):
            data[rel] = PathHash.of(project.hasher.hash_path(p)).to_dict()
        elif rel in lock.data:
            data[rel] = dict(lock.data[rel])
            gone.append(rel)
    ws = Lock(stages, data, dict(lock.images))
    from repro.schema import schemas_for
    from repro.snapshots import _source_files

    files = {
        rel: PathHash.of(project.hasher.hash_path(project.abs(rel))).to_dict()
        for rel in _source_files(project, ws)
    }
    tables = list(data) + [p for e in stages.values() for p in e["outs"]]
    return Snapshot(stages, data, files, schemas_for(project.root, tables), dict(lock.images))


def diff(
    project: Project, a: str | None = None, b: str | None = None, probes: Probes = CACHED
) -> dict[str, Any]:
    """Compare two states. Each is a snapshot sig (or prefix), a git revision (its
    `repro.lock`), `repro.lock` or `workspace`; by default `repro.lock` against the workspace:
    what changed since the last recorded state of this checkout."""
    from repro.refs import LOCK_REF, resolve_state

    a_full, snap_a = resolve_state(project, a or LOCK_REF)
    absent: list[str] = []
    if b is None or b == "workspace":
        snap_b, b_full, is_ws = workspace_snapshot(project, absent, probes), "workspace", True
    else:
        b_full, snap_b = resolve_state(project, b)
        is_ws = False

    def commits() -> tuple[str | None, str | None]:  # asked only when code changed
        return (
            state_commit(project, a or LOCK_REF, a_full),
            None if is_ws else state_commit(project, b or "", b_full),
        )

    stages, data = diff_snapshots(project, snap_a, snap_b, is_ws, commits)
    doc: dict[str, Any] = {"from": a_full, "to": b_full, "stages": stages, "data": data}
    if absent:
        doc["absent"] = sorted(set(absent))  # compared as recorded: 'repro pull' fetches them
    return doc
