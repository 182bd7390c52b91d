"""`repro gc`: keep the cache to what matters.

gc keeps every object reachable from the kept snapshots (all of them by default, or the last N
plus the ones named; tagged ones always), from `repro.lock` (the workspace's state), and every
log a run record points to; it drops the rest, and the run-cache entries whose outputs it
dropped. It holds the project's run lock, so it never removes what a run in progress is
writing; on a remote, objects newer than a grace period are left alone, since another machine
may be pushing them.

Packed objects go by repack (`repro.store.repack`): a pack with nothing live is unpublished, one
whose live bytes fell under half is rewritten with its live objects (the new pack published
before the old one goes), orphans left by a killed writer are removed. Then the small loose
objects left are folded into packs (`ObjectStore.pack_loose`: an old cache migrates in place).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from repro.errors import NewerFormatError, NotFoundError
from repro.hashing.tree import Tree
from repro.project import Project
from repro.records import list_records
from repro.saved import DEFAULT_KEEP_DAYS, kept_saved
from repro.snapshots import Snapshot, list_snapshots, load_snapshot, resolve, snapshot_key
from repro.store.backend import Backend
from repro.store.layout import RUNS
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
    corrupt_snapshots: list[str] = field(default_factory=list)
    packs_removed: int = 0  # every object dead: the pack went
    packs_rewritten: int = 0  # live objects copied to a new pack, the old one went
    packs_written: int = 0
    pack_bytes: int = 0  # bytes freed by repack (net of the new packs), within `bytes`
    orphans_removed: int = 0  # packs without index (a killed writer's) and the reverse
    packed_loose: int = 0  # small loose objects folded into packs
    damaged_packed: list[str] = field(default_factory=list)  # packs/<id>.pack:<hash>
    bad_indexes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "kept_snapshots": self.kept_snapshots,
            "removed_objects": self.objects,
            "freed_bytes": self.bytes,
            "removed_snapshots": self.snapshots,
            "removed_runs": self.runs,
            "dry_run": self.dry_run,
            "corrupt_snapshots": self.corrupt_snapshots,
            "packs_removed": self.packs_removed,
            "packs_rewritten": self.packs_rewritten,
            "packs_written": self.packs_written,
            "pack_freed_bytes": self.pack_bytes,
            "orphans_removed": self.orphans_removed,
            "packed_loose": self.packed_loose,
            "damaged_packed": self.damaged_packed,
            "bad_indexes": self.bad_indexes,
        }


def _add_state(store: ObjectStore, stages: dict, data: dict, files: dict, out: set[str]) -> None:
    """Everything a state (a snapshot or the lock) reaches: outputs, deps, data, files."""
    items = list(data.values()) + list(files.values())
    for entry in stages.values():
        items += list((entry.get("outs") or {}).values()) + list((entry.get("deps") or {}).values())
    out |= _closure(store, ((d["hash"], bool(d.get("isdir"))) for d in items if d.get("hash")))


def _closure(store: ObjectStore, roots: Iterable[tuple[str, bool]]) -> set[str]:
    """`ObjectStore.closure`, reading also a tree a remote holds chunked (a manifest and its
    chunks): one it cannot read at all contributes only itself."""
    out: set[str] = set()
    for h, isdir in roots:
        out.add(h)
        if isdir:
            tree = _tree(store, h)
            if tree is not None:
                out.update(e.hash for e in tree.entries)
    return out


def _tree(store: ObjectStore, h: str) -> Tree | None:
    from repro.errors import ReproError

    try:
        return store.get_tree(h)
    except ReproError:
        if store.local is not None:
            return None
    from repro.store.repack import read_chunked

    data = read_chunked(store.backend, h, store.name)
    if data is None:
        return None
    try:
        return Tree.decode(data, name=f"tree {h}")
    except ReproError:
        return None


def _drop_manifests(
    store: ObjectStore, live: set[str], dry_run: bool, grace: float, now: float
) -> set[str]:
    """Chunked objects (a remote's large files): the chunks of every live one join `live`;
    the manifests of dead ones are deleted (unless `dry_run`) before any chunk, so a manifest
    that remains always has all its chunks. Returns the dead objects removed."""
    from repro.store.chunks import manifest_key
    from repro.store.repack import manifest_hashes, read_manifest

    manifests = manifest_hashes(store.backend)
    for h in manifests & live:
        m = read_manifest(store.backend, h, store.name)
        if m is not None:
            live.update(c for c, _ in m.chunks)
    removed: set[str] = set()
    for h in sorted(manifests - live):
        key = manifest_key(h)
        if grace and _age(store, key, now) < grace:
            continue
        removed.add(h)
        if not dry_run:
            store.backend.delete(key)
    return removed


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
    from repro.tags import tagged_sigs

    kept |= tagged_sigs(store.backend) & set(all_sigs)  # a tagged version is always kept
    kept |= experiment_sigs(store.backend) & set(all_sigs)  # so is an experiment's result
    return sorted(kept)


def experiment_sigs(backend: Backend) -> set[str]:
    """The snapshots `repro exp` records name (`exps/<name>`): `exp apply` needs them later,
    so `gc --keep-last` keeps them as it keeps tagged ones. Read as untrusted (a record from
    a shared cache): anything but a well-formed sig is ignored, a bounded size first."""
    from repro.canonical import unpackb
    from repro.safety import is_hash
    from repro.store.layout import EXPS

    sigs: set[str] = set()
    for key in backend.list(EXPS):
        try:
            if backend.size(key) > 1 << 20:
                continue
            doc = unpackb(backend.read_bytes(key))
        except Exception:
            continue
        sig = doc.get("snapshot") if isinstance(doc, dict) else None
        if isinstance(sig, str) and is_hash(sig):
            sigs.add(sig)
    return sigs


def keep_saved_days(project: Project) -> float:
    """How long gc keeps content saved before an overwrite: `[gc] keep_saved_days`, 30 days."""
    from repro.errors import SpecError

    value = (project.config.get("gc") or {}).get("keep_saved_days", DEFAULT_KEEP_DAYS)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SpecError(
            f".repro/config.toml: [gc] keep_saved_days must be a number of days >= 0, "
            f"not {value!r}."
        )
    return float(value)


def good_snapshots(store: ObjectStore, sigs: list[str], bad: list[str]) -> list[Snapshot]:
    """The snapshots of `sigs` whose bytes hash to their id. A bad one (damaged, crafted,
    unreadable) is skipped and its sig appended to `bad`: one bad snapshot on a shared store
    must not break gc or fsck for every clone."""
    out = []
    for sig in sigs:
        try:
            out.append(load_snapshot(store.backend, sig))
        except (NotFoundError, NewerFormatError):  # gone, or for a newer repro: left alone
            continue
        except Exception:  # corrupt, or bytes that do not even decode
            bad.append(sig)
    return out


def reachable(
    project: Project,
    store: ObjectStore,
    kept: list[str],
    local: bool,
    bad: list[str] | None = None,
) -> set[str]:
    """Objects the `kept` snapshots (the good ones; bad sigs go to `bad`), the lock (`local`),
    saved content and run logs reach."""
    out: set[str] = set()
    for snap in good_snapshots(store, kept, bad if bad is not None else []):
        _add_state(store, snap.stages, snap.data, snap.files, out)
    if local:
        from repro.lockfile import load_lock

        lock = load_lock(project.lock_path)
        _add_state(store, lock.stages, lock.data, {}, out)
        out |= _closure(
            store, ((s.hash, s.isdir) for s in kept_saved(project.dot, keep_saved_days(project)))
        )
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
    wait: float = 0.0,
) -> GcReport:
    from repro.pipeline.runlock import run_lock

    if remote:
        from repro.remote import open_remote, remote_errors

        name, store = open_remote(project, remote)
        if not dry_run:  # what this machine believed the remote holds may go now
            from repro.fetch import RemoteIndex

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
    with run_lock(project.dot, wait):
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
    bad: list[str] = []
    live = reachable(project, store, kept, local, bad)
    # A bad snapshot is not kept (its content is unknown), but only good ones decide what
    # lives: objects a good snapshot needs never go because a bad one was skipped.
    report.corrupt_snapshots = [snapshot_key(s) for s in bad]
    kept = [s for s in kept if s not in bad]
    report.kept_snapshots = len(kept)
    # Snapshots first, then run-cache entries, then the objects nothing left reaches: a gc
    # killed at any instant leaves every snapshot and entry that remains with all its objects.
    for sig in list_snapshots(store.backend):
        if sig not in kept:
            report.snapshots += 1
            if not dry_run:
                if sig in bad and store.local is not None:
                    _set_aside(store, snapshot_key(sig))  # never drop local bytes silently
                else:
                    store.backend.delete(snapshot_key(sig))
    runs_left: list[dict] = []
    for key in list(store.backend.list(RUNS)):
        outs = _run_outs(store, key)
        if outs is None or any(d.get("hash") not in live for d in outs.values()):
            report.runs += 1
            if not dry_run:
                store.backend.delete(key)
        else:
            runs_left.append(outs)
    if not dry_run:  # reachability again, from what is left (others may have pushed since)
        live = reachable(project, store, list_snapshots(store.backend), local, [])
        live |= _closure(
            store, ((d["hash"], bool(d.get("isdir"))) for outs in runs_left for d in outs.values())
        )
    store.packs  # noqa: B018 - loads the pack set, which lists damaged indexes
    if store.bad_indexes:  # what they hide (trees included) is unknown: nothing goes
        report.bad_indexes = list(store.bad_indexes)
        return report
    now = time.time()
    removed = _drop_manifests(store, live, dry_run, grace, now)  # before any chunk goes
    for h in sorted(store.loose_hashes() - live):
        key = object_key(h)
        if grace and _age(store, key, now) < grace:
            continue
        removed.add(h)
        with contextlib.suppress(Exception):
            report.bytes += store.backend.size(key)
        if not dry_run:
            store.delete(h)
    dropped = _repack(project, store, live, dry_run, grace, local, report)
    report.objects += len(removed | dropped)
    if not dry_run:  # what is left loose and small goes into packs
        report.packed_loose = _fold(project, store, local)
    return report


def _fold(project: Project, store: ObjectStore, local: bool) -> int:
    """Fold small loose objects into packs: the local cache trusts its verified stat-cache
    rows (no re-hash); a remote's are downloaded, verified and packed in the local tmp/."""
    from repro.store.objects import PACK_MIN_FILES
    from repro.store.packs import PACK_MAX_OBJECT
    from repro.store.repack import fold_loose, loose_sizes
    from repro.store.sync import forget_indexes

    small = [h for h, n in loose_sizes(store.backend).items() if n < PACK_MAX_OBJECT]
    if local:  # a loose copy beside a verified packed one (a fold killed before its unlinks)
        dups = store.packed_verified(small)
        for h in dups:
            store.delete(h)
        small = [h for h in small if h not in dups]
    if len(small) < PACK_MIN_FILES:  # a handful stays loose, as a check-in of a few does
        return 0
    if local:
        return store.pack_loose(small)
    tmp = project.cache.local
    assert tmp is not None
    n = fold_loose(store.backend, small, tmp.tmp_path)
    if n:
        store.invalidate_packs()
        forget_indexes(store.backend.url)  # this process's remembered inventory is stale
    return n


def _repack(
    project: Project,
    store: ObjectStore,
    live: set[str],
    dry_run: bool,
    grace: float,
    local: bool,
    report: GcReport,
) -> set[str]:
    """Repack `store`'s packs against `live` (see `repro.store.repack`); returns the dead
    objects no pack holds any more. Remote packs are built in the local cache's tmp/."""
    from repro.store.repack import LOCAL_ORPHAN_GRACE, repack
    from repro.store.sync import forget_indexes

    tmp = store.local or project.cache.local
    assert tmp is not None
    rep = repack(
        store.backend,
        live,
        store.name,
        tmp.tmp_path,
        dry_run=dry_run,
        orphan_grace=LOCAL_ORPHAN_GRACE if local else grace,
        pack_grace=0.0 if local else grace,
    )
    if not dry_run and (rep.removed_ids or rep.packs_written or rep.orphans_removed):
        store.invalidate_packs()
        if not local:  # this process's remembered inventory of that remote is stale
            forget_indexes(store.backend.url)
    report.packs_removed = rep.packs_removed
    report.packs_rewritten = rep.packs_rewritten
    report.packs_written = rep.packs_written
    report.pack_bytes = max(rep.bytes_freed, 0)
    report.bytes += report.pack_bytes
    report.orphans_removed = len(rep.orphans_removed)
    report.damaged_packed = rep.corrupt
    report.bad_indexes = rep.bad_indexes
    return rep.dropped


def _run_outs(store: ObjectStore, key: str) -> dict | None:
    """The outputs of run-cache entry `key`, or None when it is unreadable or answers another
    signature than its name (a swapped entry is garbage: gc drops it)."""
    from repro.pipeline.runcache import RunCacheEntry

    try:
        entry = RunCacheEntry.decode(store.backend.read_bytes(key), key)
    except NewerFormatError:
        return {}  # a newer repro's entry: kept, though this one cannot say what it reaches
    except Exception:
        return None
    if entry.signature != key.rsplit("/", 1)[-1]:
        return None
    return {p: h.to_dict() for p, h in entry.outs.items()}


def _set_aside(store: ObjectStore, key: str) -> str:
    """Move a bad local record (snapshot, run entry) to `corrupt/<key>`: out of every lookup,
    kept for the user to look at."""
    local = store.local
    assert local is not None
    dst = local.ensure_parent(f"corrupt/{key}")
    os.replace(local.path(key), dst)
    return dst


def _age(store: ObjectStore, key: str, now: float) -> float:
    """Seconds since `key` was written on `store` (a folder remote by its mtime, an object
    store by its LastModified); infinity when the store cannot say."""
    from repro.store.repack import key_age

    return key_age(store.backend, key, now)
