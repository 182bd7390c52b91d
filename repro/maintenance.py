"""`repro gc` and `repro fsck`: keep the cache to what matters, and prove it is intact.

gc keeps every object reachable from the kept snapshots (all of them by default, or the last N
plus the ones named), from `repro.lock` (the workspace's state), and every log a run record
points to; it drops the rest, and the run-cache entries whose outputs it dropped. It holds the
project's run lock, so it never removes what a run in progress is writing; on a remote, objects
newer than a grace period are left alone, since another machine may be pushing them.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from repro.canonical import unpackb
from repro.project import Project
from repro.records import list_records
from repro.snapshots import list_snapshots, load_snapshot, resolve, snapshot_key
from repro.store.objects import ObjectStore, object_key


@dataclass
class GcReport:
    store: str
    kept_snapshots: int = 0
    objects: int = 0
    bytes: int = 0
    snapshots: int = 0
    runs: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "kept_snapshots": self.kept_snapshots,
            "removed_objects": self.objects,
            "freed_bytes": self.bytes,
            "removed_snapshots": self.snapshots,
            "removed_runs": self.runs,
            "dry_run": self.dry_run,
        }


def _add_state(store: ObjectStore, stages: dict, data: dict, files: dict, out: set[str]) -> None:
    """Everything a state (a snapshot or the lock) reaches: outputs, deps, data, files."""
    items = list(data.values()) + list(files.values())
    for entry in stages.values():
        items += list((entry.get("outs") or {}).values()) + list((entry.get("deps") or {}).values())
    out |= store.closure((d["hash"], bool(d.get("isdir"))) for d in items if d.get("hash"))


def kept_snapshots(store: ObjectStore, keep_last: int | None, keep: list[str]) -> list[str]:
    all_sigs = list_snapshots(store.backend)
    if keep_last is None:
        kept = set(all_sigs)
    else:
        order: list[str] = []
        for rec in list_records(store.backend):  # newest first
            if rec.snapshot and rec.snapshot not in order and rec.snapshot in all_sigs:
                order.append(rec.snapshot)
        kept = set(order[:keep_last])
    kept |= {resolve(store.backend, k) for k in keep}
    return sorted(kept)


def reachable(project: Project, store: ObjectStore, kept: list[str], local: bool) -> set[str]:
    out: set[str] = set()
    for sig in kept:
        snap = load_snapshot(store.backend, sig)
        _add_state(store, snap.stages, snap.data, snap.files, out)
    if local:
        from repro.lockfile import load_lock

        lock = load_lock(project.lock_path)
        _add_state(store, lock.stages, lock.data, {}, out)
    for rec in list_records(store.backend):
        for s in rec.stages:
            out.update(h for h in (s.stdout, s.stderr) if h)
    return out


def gc(
    project: Project,
    remote: str | None = None,
    keep_last: int | None = None,
    keep: list[str] | None = None,
    dry_run: bool = False,
    grace: float = 3600.0,
) -> GcReport:
    from repro.pipeline.runlock import run_lock

    if remote:
        from repro.remote import open_remote, remote_errors

        name, store = open_remote(project, remote)
        if not dry_run:  # what this machine believed the remote holds may go now
            from repro.transfer import RemoteIndex

            RemoteIndex(project, store.backend.url).clear()
        with remote_errors(name, store.backend.url):
            return _gc(
                project,
                store,
                f"remote '{name}'",
                keep_last,
                keep or [],
                dry_run,
                grace,
                local=False,
            )
    with run_lock(project.dot):
        return _gc(
            project, project.cache, "local cache", keep_last, keep or [], dry_run, 0.0, local=True
        )


def _gc(
    project: Project,
    store: ObjectStore,
    label: str,
    keep_last: int | None,
    keep: list[str],
    dry_run: bool,
    grace: float,
    local: bool,
) -> GcReport:
    report = GcReport(label, dry_run=dry_run)
    kept = kept_snapshots(store, keep_last, keep)
    report.kept_snapshots = len(kept)
    live = reachable(project, store, kept, local)
    now = time.time()
    for h in sorted(store.all_hashes() - live):
        key = object_key(h)
        if grace and _age(store, key, now) < grace:
            continue
        report.objects += 1
        with contextlib.suppress(Exception):
            report.bytes += store.backend.size(key)
        if not dry_run:
            store.delete(h)
    for sig in list_snapshots(store.backend):
        if sig not in kept:
            report.snapshots += 1
            if not dry_run:
                store.backend.delete(snapshot_key(sig))
    for key in list(store.backend.list("runs")):
        try:
            outs = unpackb(store.backend.read_bytes(key)).get("outs", {})
        except Exception:
            outs = None
        if outs is None or any(d.get("hash") not in live for d in outs.values()):
            report.runs += 1
            if not dry_run:
                store.backend.delete(key)
    return report


def _age(store: ObjectStore, key: str, now: float) -> float:
    backend = store.backend
    fs = getattr(backend, "fs", None)
    if fs is None:
        return float("inf")
    try:
        info = fs.info(backend._p(key))  # type: ignore[attr-defined]
    except Exception:
        return float("inf")
    for k in ("LastModified", "mtime", "created", "last_modified"):
        v = info.get(k)
        if v is None:
            continue
        ts = v.timestamp() if hasattr(v, "timestamp") else float(v)
        return now - ts
    return float("inf")


@dataclass
class FsckReport:
    store: str
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "checked": self.checked,
            "corrupt": self.corrupt,
            "missing": self.missing,
            "ok": self.ok,
        }


def fsck(project: Project, remote: str | None = None) -> FsckReport:
    """Re-hash every object; list corrupt ones and objects that kept states need but lack."""
    if remote:
        from repro.remote import open_remote, remote_errors

        name, store = open_remote(project, remote)
        with remote_errors(name, store.backend.url):
            return _fsck(project, store, f"remote '{name}'", local=False)
    return _fsck(project, project.cache, "local cache", local=True)


def _fsck(project: Project, store: ObjectStore, label: str, local: bool) -> FsckReport:
    report = FsckReport(label)
    present = store.all_hashes()
    for h in sorted(present):
        report.checked += 1
        if not store.verify(h):
            report.corrupt.append(object_key(h))
    needed = reachable(project, store, list_snapshots(store.backend), local)
    report.missing = sorted(needed - present)
    return report
