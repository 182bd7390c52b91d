"""`repro metrics show|diff` and `repro params diff`: the numbers of a state, and how they moved.

A state is named as everywhere (repro/refs.py `resolve_state`): a sig or a unique prefix, a tag,
a git revision (its repro.lock's state), `repro.lock`, or `workspace`. A state's metrics are
the numeric values of the outputs its stages mark as metrics (`metrics:` in repro.yaml), read
from the cache by their recorded hash and flattened to dotted keys (`nested.loss`), exactly as
`repro diff` and the run records show them; the workspace's are read from the files as they
are. Params are the `file:key` values each stage's lock entry records (the workspace: the
values the next run would use). Severity of a metric's move comes from the change policy
(repro/policy.py), so `metrics diff` judges a move as `diff` and `check` do.
"""

from __future__ import annotations

import os
from typing import Any

from repro.errors import ReproError
from repro.project import Project
from repro.snapshots import Snapshot

WORKSPACE = "workspace"

Metrics = dict[str, dict[str, Any]]  # metrics file -> flat key -> value


# -- reading one state --------------------------------------------------------------------------
def _flat_bytes(project: Project, data: bytes, path: str) -> dict[str, Any]:
    """The flat numeric values of a metrics file's bytes (parsed by its extension)."""
    import tempfile

    from repro.records import flat_metrics

    os.makedirs(project.tmp_dir, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=project.tmp_dir, delete=False) as f:
        f.write(data)
    try:
        return flat_metrics(f.name)
    finally:
        os.unlink(f.name)


def snapshot_metrics(project: Project, snap: Snapshot, seen: dict | None = None) -> Metrics:
    """The metrics files a stored state records, with their values from the cache. A file
    whose content is not in the cache is left out (`repro pull` fetches it); `seen` caches
    parsed values by content hash across states."""
    seen = {} if seen is None else seen
    out: Metrics = {}
    for path, entry in sorted(snap.outputs().items()):
        if not entry.get("metric") or entry.get("isdir") or not entry.get("hash"):
            continue
        h = entry["hash"]
        if h not in seen:
            try:
                seen[h] = _flat_bytes(project, project.cache.get_bytes(h), path)
            except ReproError:
                seen[h] = None
        if seen[h] is not None:
            out[path] = dict(seen[h])
    return out


def metrics_files(project: Project) -> list[str]:
    """The metrics files repro.yaml declares, in stage order, then its top-level `metrics:`."""
    from repro.pipeline.spec import load_spec

    spec = load_spec(project)
    own = [o.path for st in spec.stages.values() for o in st.outs if o.metric]
    return list(dict.fromkeys(own + list(getattr(spec, "metrics", []))))


def workspace_metrics(project: Project) -> Metrics:
    """The declared metrics files as they are in the workspace (absent ones left out)."""
    from repro.records import flat_metrics

    out: Metrics = {}
    for path in metrics_files(project):
        if os.path.isfile(project.abs(path)):
            out[path] = flat_metrics(project.abs(path))
    return out


def state_metrics(project: Project, ref: str) -> tuple[str, Metrics]:
    """(the state's name, its metrics): a full sig, `workspace`, or `REV (commit)`."""
    from repro.refs import resolve_state

    if ref == WORKSPACE:
        return WORKSPACE, workspace_metrics(project)
    name, snap = resolve_state(project, ref)
    return name, snapshot_metrics(project, snap)


def history_sigs(project: Project) -> list[str]:
    """Every stored snapshot, newest first: in the order runs made them (the run index), then
    those no run record names (pulled without their records, or made by `exp`), by sig."""
    from repro.records import summaries
    from repro.snapshots import list_snapshots

    backend = project.cache.backend
    stored = set(list_snapshots(backend))
    order: list[str] = []
    seen: set[str] = set()
    for row in summaries(backend):
        sig = row.get("snapshot")
        if sig and sig in stored and sig not in seen:
            seen.add(sig)
            order.append(sig)
    return order + sorted(stored - seen)


def show(project: Project, refs: list[str] | None = None, all_: bool = False) -> dict[str, Metrics]:
    """`metrics show --json`: `{"<sig or workspace>": {"<metrics file>": {metric: value}}}`.
    No refs: the workspace; `all_`: the workspace, then every stored snapshot newest first."""
    from repro.snapshots import load_snapshot

    out: dict[str, Metrics] = {}
    for ref in refs or ([] if all_ else [WORKSPACE]):
        name, values = state_metrics(project, ref)
        out[name] = values
    if all_:
        if not refs:
            out[WORKSPACE] = workspace_metrics(project)
        seen: dict[str, Any] = {}
        for sig in history_sigs(project):
            if sig in out:
                continue
            try:
                out[sig] = snapshot_metrics(
                    project, load_snapshot(project.cache.backend, sig), seen
                )
            except ReproError:
                continue  # a damaged snapshot is skipped here as in every listing
    return out


# -- comparing two states -----------------------------------------------------------------------
def _pair(
    project: Project, a: str | None, b: str | None
) -> tuple[str, Snapshot | None, str, Snapshot | None]:
    """The two states compared (defaults as `repro diff`: repro.lock, then the workspace);
    None stands for the workspace."""
    from repro.refs import LOCK_REF, resolve_state

    a = a or LOCK_REF
    b = b or WORKSPACE
    a_name, snap_a = (WORKSPACE, None) if a == WORKSPACE else resolve_state(project, a)
    b_name, snap_b = (WORKSPACE, None) if b == WORKSPACE else resolve_state(project, b)
    return a_name, snap_a, b_name, snap_b


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def metric_change(policy: Any, path: str, key: str, old: Any, new: Any) -> dict[str, Any]:
    """Old, new, delta, % change and (when it moved) the policy's severity of one metric."""
    from repro.policy import metric_severity

    numeric = _number(old) and _number(new)
    delta = new - old if numeric else None
    pct = (delta / abs(old) * 100) if numeric and old else None
    out: dict[str, Any] = {"old": old, "new": new, "delta": delta, "pct": pct}
    if delta != 0:
        severity, rule = metric_severity(policy, path, key, old, new)
        out["severity"] = severity
        if rule:
            out["rule"] = rule
    return out


def diff(
    project: Project, a: str | None = None, b: str | None = None, all_: bool = False
) -> dict[str, Any]:
    """`metrics diff --json`: `{"from", "to", "metrics": {file: {metric: {"old", "new",
    "delta", "pct", "severity"?, "rule"?}}}}`: the metrics that changed (all with `all_`)."""
    from repro.policy import load_policy

    a_name, snap_a, b_name, snap_b = _pair(project, a, b)
    ma = workspace_metrics(project) if snap_a is None else snapshot_metrics(project, snap_a)
    mb = workspace_metrics(project) if snap_b is None else snapshot_metrics(project, snap_b)
    policy = load_policy(project)
    files: dict[str, Any] = {}
    for path in sorted(set(ma) | set(mb)):
        old_m, new_m = ma.get(path, {}), mb.get(path, {})
        rows = {}
        for key in sorted(set(old_m) | set(new_m)):
            old, new = old_m.get(key), new_m.get(key)
            if old == new and not all_:
                continue
            rows[key] = metric_change(policy, path, key, old, new)
        if rows:
            files[path] = rows
    return {"from": a_name, "to": b_name, "metrics": files}


def snapshot_params(snap: Snapshot) -> dict[str, Any]:
    """`file:key` -> value of every param the state's stages record."""
    out: dict[str, Any] = {}
    for entry in snap.stages.values():
        out.update(entry.get("params") or {})
    return out


def workspace_params(project: Project) -> dict[str, Any]:
    """`file:key` -> the value the next run would use, for every param repro.yaml names."""
    from repro.pipeline.params import param_id, stage_params
    from repro.pipeline.spec import load_spec

    out: dict[str, Any] = {}
    for st in load_spec(project).stages.values():
        values = stage_params(project, st)
        for ref in st.params:
            out[param_id(ref)] = values[param_id(ref)]
    return out


def params_diff(
    project: Project, a: str | None = None, b: str | None = None, all_: bool = False
) -> dict[str, Any]:
    """`params diff --json`: `{"from", "to", "params": {params file: {key: {"old", "new"}}}}`:
    the params that changed (all with `all_`); a param one state lacks is null there."""
    a_name, snap_a, b_name, snap_b = _pair(project, a, b)
    pa = workspace_params(project) if snap_a is None else snapshot_params(snap_a)
    pb = workspace_params(project) if snap_b is None else snapshot_params(snap_b)
    files: dict[str, dict[str, Any]] = {}
    for pid in sorted(set(pa) | set(pb)):
        old, new = pa.get(pid), pb.get(pid)
        if old == new and not all_:
            continue
        path, _, key = pid.rpartition(":")
        files.setdefault(path, {})[key] = {"old": old, "new": new}
    return {"from": a_name, "to": b_name, "params": files}
