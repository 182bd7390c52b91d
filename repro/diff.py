"""`repro diff`: exactly what changed between two states, stage by stage, with a severity.

A state is a stored snapshot or the workspace as it is now. For each stage, every change gets a
kind (code, data, params, env, image, seed, cmd, outs, upstream), a target, old and new values
(param values; hash and size for files; files added, removed and changed for folders; "schema
changed" apart from "values changed" for tables; old, new and delta for metrics) and a severity
from the policy in `.repro/config.toml` (`[diff.severity]`, `[diff] metric_threshold`).
"""

from __future__ import annotations

import os
from typing import Any

from repro.errors import PathError, ReproError
from repro.pipeline.envfp import env_changes
from repro.pipeline.probes import CACHED, Probes
from repro.pipeline.signature import dep_kind
from repro.project import Project
from repro.snapshots import Snapshot

DEFAULT_SEVERITY = {
    "code": "major",
    "cmd": "major",
    "image": "major",
    "env": "major",
    "params": "minor",
    "data": "minor",
    "seed": "minor",
    "outs": "minor",
    "upstream": "minor",
}
DEFAULT_METRIC_THRESHOLD = 0.01


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


def _policy(project: Project) -> tuple[dict[str, str], float]:
    cfg = project.config.get("diff") or {}
    sev = {**DEFAULT_SEVERITY, **(cfg.get("severity") or {})}
    return sev, float(cfg.get("metric_threshold", DEFAULT_METRIC_THRESHOLD))


def _tree_changes(project: Project, old: dict | None, new: dict | None) -> dict[str, Any]:
    """For folders: which files were added, removed and changed (when both trees are cached)."""
    if not (old and new and old.get("isdir") and new.get("isdir")):
        return {}
    try:
        a = project.cache.get_tree(old["hash"]).as_dict()
        b = project.cache.get_tree(new["hash"]).as_dict()
    except ReproError:
        return {}
    return {
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "changed": sorted(p for p in set(a) & set(b) if a[p].hash != b[p].hash),
    }


def _details(
    project: Project, path: str, old: dict | None, new: dict | None, a: Snapshot, b: Snapshot
) -> dict[str, Any]:
    """What more there is to say of a changed path: files inside a folder, table schemas."""
    extra: dict[str, Any] = {}
    tc = _tree_changes(project, old, new)
    if tc:
        extra["files"] = tc
    note = _schema_note(path, a, b)
    if note:
        extra["note"] = note
    return extra


def _file_value(d: dict | None) -> dict | None:
    if d is None:
        return None
    v = {"hash": d["hash"], "size": d.get("size")}
    if d.get("isdir"):
        v["nfiles"] = d.get("nfiles")
    return v


def _schema_note(path: str, a: Snapshot, b: Snapshot) -> str | None:
    sa = {k: v for k, v in a.schemas.items() if k == path or k.startswith(path + "/")}
    sb = {k: v for k, v in b.schemas.items() if k == path or k.startswith(path + "/")}
    if not sa and not sb:
        return None
    return "schema changed" if sa != sb else "values changed"


def _metric_values(project: Project, snap: Snapshot, path: str, is_workspace: bool) -> dict:
    from repro.records import flat_metrics

    if is_workspace:
        return flat_metrics(project.abs(path))
    d = snap.outputs().get(path)
    if not d:
        return {}
    import tempfile

    try:
        data = project.cache.get_bytes(d["hash"])
    except ReproError:
        return {}
    suffix = os.path.splitext(path)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=project.tmp_dir, delete=False) as f:
        f.write(data)
    try:
        return flat_metrics(f.name)
    finally:
        os.unlink(f.name)


def diff_snapshots(
    project: Project, a: Snapshot, b: Snapshot, b_is_workspace: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sev, threshold = _policy(project)

    def change(kind: str, target: str, old: Any, new: Any, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "target": target,
            "old": old,
            "new": new,
            "severity": extra.pop("severity", sev.get(kind, "minor")),
            **extra,
        }

    outputs_a, outputs_b = a.outputs(), b.outputs()
    produced = set(outputs_a) | set(outputs_b)
    stages_out = []
    for name in sorted(
        set(a.stages) | set(b.stages),
        key=lambda n: (list(b.stages).index(n) if n in b.stages else 10**6, n),
    ):
        ea, eb = a.stages.get(name), b.stages.get(name)
        changes: list[dict[str, Any]] = []
        if ea is None or eb is None:
            changes.append(
                change(
                    "cmd",
                    name,
                    ea and ea.get("cmd"),
                    eb and eb.get("cmd"),
                    note="stage added" if ea is None else "stage removed",
                )
            )
            stages_out.append({"name": name, "changes": changes})
            continue
        if ea.get("cmd") != eb.get("cmd") or ea.get("wdir") != eb.get("wdir"):
            changes.append(change("cmd", name, ea.get("cmd"), eb.get("cmd")))
        da, db = ea.get("deps") or {}, eb.get("deps") or {}
        for path in sorted(set(da) | set(db)):
            if (da.get(path) or {}).get("hash") == (db.get(path) or {}).get("hash"):
                continue
            kind = (
                "upstream"
                if path in produced or any(path.startswith(o + "/") for o in produced)
                else dep_kind(path)
            )
            extra = _details(project, path, da.get(path), db.get(path), a, b)
            changes.append(
                change(kind, path, _file_value(da.get(path)), _file_value(db.get(path)), **extra)
            )
        pa, pb = ea.get("params") or {}, eb.get("params") or {}
        for key in sorted(set(pa) | set(pb)):
            if pa.get(key) != pb.get(key):
                changes.append(change("params", key, pa.get(key), pb.get(key)))
        va, vb = ea.get("env") or {}, eb.get("env") or {}
        for key in sorted(set(va) | set(vb)):
            if va.get(key) != vb.get(key):
                changes.append(change("env", key, va.get(key), vb.get(key)))
        for target, old, new in env_changes(ea.get("environment"), eb.get("environment")):
            changes.append(change("env", target, old, new))
        if ea.get("image") != eb.get("image"):
            changes.append(change("image", name, ea.get("image"), eb.get("image")))
        if ea.get("seed") != eb.get("seed"):
            changes.append(change("seed", name, ea.get("seed"), eb.get("seed")))
        oa, ob = ea.get("outs") or {}, eb.get("outs") or {}
        for path in sorted(set(oa) | set(ob)):
            if (oa.get(path) or {}).get("hash") == (ob.get(path) or {}).get("hash"):
                continue
            extra = {}
            is_metric = (ob.get(path) or oa.get(path) or {}).get("metric")
            severity = sev.get("outs", "minor")
            if is_metric:
                ma = _metric_values(project, a, path, False)
                mb = _metric_values(project, b, path, b_is_workspace)
                metrics = {}
                for k in sorted(set(ma) | set(mb)):
                    old, new = ma.get(k), mb.get(k)
                    delta = (
                        new - old
                        if isinstance(old, int | float) and isinstance(new, int | float)
                        else None
                    )
                    metrics[k] = {"old": old, "new": new, "delta": delta}
                    if delta is None or abs(delta) > threshold:
                        severity = "major"
                extra["metrics"] = metrics
            extra.update(_details(project, path, oa.get(path), ob.get(path), a, b))
            changes.append(
                change(
                    "outs",
                    path,
                    _file_value(oa.get(path)),
                    _file_value(ob.get(path)),
                    severity=severity,
                    **extra,
                )
            )
        if changes:
            stages_out.append({"name": name, "changes": changes})
    data_out = []
    for path in sorted(set(a.data) | set(b.data)):
        old, new = a.data.get(path), b.data.get(path)
        if (old or {}).get("hash") != (new or {}).get("hash"):
            extra = _details(project, path, old, new, a, b)
            data_out.append(change("data", path, _file_value(old), _file_value(new), **extra))
    return stages_out, data_out


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
    stages, data = diff_snapshots(project, snap_a, snap_b, is_ws)
    doc: dict[str, Any] = {"from": a_full, "to": b_full, "stages": stages, "data": data}
    if absent:
        doc["absent"] = sorted(set(absent))  # compared as recorded: 'repro pull' fetches them
    return doc
