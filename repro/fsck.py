"""`repro fsck`: prove the cache (local or a remote's) is intact, and heal it.

Every object is re-hashed and every snapshot and run-cache entry checked; what the current
`repro.lock` (or, on request, every kept state) needs and the store lacks is named with the
state and path that need it. A repair takes good bytes from the workspace, then a remote, each
verified; what has no good copy anywhere is moved aside, never dropped.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

from repro.errors import NewerFormatError, ReproError
from repro.gc import _run_outs, _set_aside, good_snapshots, keep_saved_days
from repro.project import Project
from repro.records import list_records
from repro.saved import kept_saved
from repro.snapshots import Snapshot, list_snapshots, snapshot_key
from repro.store.layout import OBJECTS, RUNS, SNAPSHOTS, TAGS, object_hash
from repro.store.objects import ObjectStore, object_key


@dataclass
class FsckReport:
    store: str
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)  # keys: objects/…, snapshots/…, runs/…
    missing: list[str] = field(default_factory=list)  # hashes kept states need but lack
    repaired: list[str] = field(default_factory=list)  # keys now holding verified bytes
    moved_aside: list[str] = field(default_factory=list)  # keys moved to corrupt/ (local)
    notes: list[str] = field(default_factory=list)
    remote: FsckReport | None = None
    needed_by: dict[str, tuple[str, str]] = field(default_factory=dict)  # hash -> (state, path)
    scope: str = "repro.lock"  # or "all snapshots"
    lock_unreadable: bool = False  # what repro.lock needs is unknown: not a healthy answer
    lock_error: str | None = None  # why (the CLI prints it as the command's error)

    @property
    def unresolved(self) -> list[str]:
        """Keys still corrupt or missing after any repair."""
        fixed = set(self.repaired)
        bad = self.corrupt + [object_key(h) for h in self.missing]
        return [k for k in bad if k not in fixed]

    @property
    def ok(self) -> bool:
        return (
            not self.unresolved
            and not self.lock_unreadable
            and (self.remote is None or self.remote.ok)
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "store": self.store,
            "checked": self.checked,
            "corrupt": self.corrupt,
            "missing": self.missing,
            "repaired": self.repaired,
            "moved_aside": self.moved_aside,
            "notes": self.notes + ([self.lock_error] if self.lock_error else []),
            "ok": self.ok,
            "scope": self.scope,
            "missing_detail": [
                {"hash": h, "needed_by": self.needed_by[h][0], "path": self.needed_by[h][1]}
                for h in self.missing
                if h in self.needed_by
            ],
        }
        if self.remote is not None:
            d["remote"] = self.remote.to_dict()
        return d


def fsck(
    project: Project, remote: str | None = None, repair: bool = False, all_states: bool = False
) -> FsckReport:
    """Re-hash every object and check every snapshot and run-cache entry; list corrupt ones
    and the objects that are needed but lacking: by default those the current `repro.lock`
    needs (its outputs and tracked data: a clone that pulled is healthy), with `all_states`
    those of every kept snapshot, saved content and run logs too. Each missing object is
    named with the state ("repro.lock" or "snapshot <sig>") and path that need it.

    Without `repair`, checks the local cache, or the remote `remote`. With `repair`, checks
    the local cache and heals it: good bytes come from the workspace, then from `remote` (or
    the default remote), each verified; what has no good copy anywhere is moved aside to
    `.repro/cache/corrupt/` and reported. With `repair` and a named `remote`, that remote is
    then checked too, and its corrupt or missing objects replaced by our verified bytes.
    """
    from repro.remote import default_remote_name, open_remote, remote_errors

    if not repair:
        if remote:
            name, store = open_remote(project, remote)
            with remote_errors(name, store.backend.url):
                return _fsck(project, store, f"remote '{name}'", False, all_states)
        return _fsck(project, project.cache, "local cache", True, all_states)
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot):  # we write into the local cache
        report = _fsck(project, project.cache, "local cache", True, all_states)
        _repair_local(project, report, remote or default_remote_name(project))
        if remote:
            name, store = open_remote(project, remote)
            with remote_errors(name, store.backend.url):
                report.remote = _fsck(project, store, f"remote '{name}'", False, all_states)
                _repair_remote(project, store, report.remote)
    return report


def _fsck(
    project: Project, store: ObjectStore, label: str, local: bool, all_states: bool = False
) -> FsckReport:
    from repro.store.repack import check_packs

    report = FsckReport(label, scope="all snapshots" if all_states else "repro.lock")
    loose = store.loose_hashes()
    for h in sorted(loose):
        report.checked += 1
        if not _loose_ok(store, h):
            report.corrupt.append(object_key(h))
    packs = check_packs(store.backend, store.name)  # every index decoded, every object read
    report.checked += packs.checked
    report.corrupt += packs.bad_indexes + packs.damaged_keys
    report.notes += [
        f"{k} has no partner (left by a killed writer; gc removes it)" for k in packs.orphans
    ]
    present = loose | packs.hashes
    _check_manifests(store, report, present)
    bad: list[str] = []
    snaps = good_snapshots(store, list_snapshots(store.backend), bad)  # every present one
    report.corrupt += [snapshot_key(s) for s in bad]
    for key in sorted(store.backend.list(RUNS)):
        if _run_outs(store, key) is None:
            report.corrupt.append(key)
    _check_tags(store, report)
    needs = _lock_needs(project, store, report)
    if all_states:
        for snap in snaps:
            _state_needs(store, f"snapshot {snap.id[:12]}", snap, needs)
        _other_needs(project, store, local, needs)
    report.missing = sorted(set(needs) - present)
    report.needed_by = {h: needs[h] for h in report.missing}
    return report


def _check_manifests(store: ObjectStore, report: FsckReport, present: set[str]) -> None:
    """Objects a remote holds chunked: each manifest decoded and checked, each chunk it names
    present (the chunks themselves are objects, verified with the others). A good one makes
    its object present; a bad or incomplete one is corrupt (`manifests/<hash>`)."""
    from repro.store.chunks import manifest_key
    from repro.store.repack import manifest_hashes, read_manifest

    chunks_there = set(present)
    for h in sorted(manifest_hashes(store.backend)):
        report.checked += 1
        m = read_manifest(store.backend, h, store.name)
        if m is None or any(c not in chunks_there for c, _ in m.chunks):
            report.corrupt.append(manifest_key(h))
        else:
            present.add(h)


def _loose_ok(store: ObjectStore, h: str) -> bool:
    """Whether the loose copy of `h` (the file `objects/…` itself, not a packed copy) is whole."""
    from repro.canonical import hash_bytes
    from repro.hashing.filehash import hash_file
    from repro.store.objects import is_regular_file

    key = object_key(h)
    try:
        if store.local is not None:
            path = store.local.path(key)
            if not is_regular_file(path):  # a FIFO would hang the read; a symlink leads out
                return False
            return hash_file(path) == h
        return hash_bytes(store.backend.read_bytes(key)) == h
    except Exception:
        return False


def _check_tags(store: ObjectStore, report: FsckReport) -> None:
    """A damaged or crafted tag record is corrupt; a tag naming a snapshot the store lacks is
    a note (the tag is kept: a pull may bring the snapshot)."""
    from repro.tags import list_tags

    bad: list[str] = []
    present = set(list_snapshots(store.backend))
    for tag in list_tags(store.backend, bad):
        if tag.sig not in present:
            report.notes.append(
                f"tag '{tag.name}' names snapshot {tag.sig[:12]}, which this store does not hold"
            )
    report.corrupt += bad


def _lock_needs(
    project: Project, store: ObjectStore, report: FsckReport
) -> dict[str, tuple[str, str]]:
    """Objects the current repro.lock needs to be put back: its cached outputs and data. A
    lock that cannot be read is a note and a failed check (a broken lock is no healthy clone)."""
    from repro.errors import ReproError
    from repro.lockfile import load_lock

    try:
        lock = load_lock(project.lock_path)
    except ReproError as exc:
        report.lock_unreadable = True
        report.lock_error = f"{exc.message.rstrip('.')}; what it needs was not checked."
        return {}
    needs: dict[str, tuple[str, str]] = {}
    _add_needs(store, "repro.lock", _recorded(lock.stages, lock.data, {}, deps=False), needs)
    return needs


def _other_needs(
    project: Project, store: ObjectStore, local: bool, needs: dict[str, tuple[str, str]]
) -> None:
    """Content saved before an overwrite (local cache) and the logs run records point to."""
    if local:
        saved = kept_saved(project.dot, keep_saved_days(project))
        _add_needs(
            store,
            "saved content",
            {s.path: {"hash": s.hash, "isdir": s.isdir} for s in saved},
            needs,
        )
    for rec in list_records(store.backend):
        for st in rec.stages:
            for what, h in (("stdout", st.stdout), ("stderr", st.stderr)):
                if h:
                    needs.setdefault(h, (f"run {rec.run_id}", f"stage {st.name} {what}"))


def _state_needs(
    store: ObjectStore, label: str, snap: Snapshot, needs: dict[str, tuple[str, str]]
) -> None:
    _add_needs(store, label, _recorded(snap.stages, snap.data, snap.files, deps=True), needs)


def _recorded(stages: dict, data: dict, files: dict, deps: bool) -> dict[str, dict]:
    """Path -> entry of what a state stores in the cache (outputs with `cache: false` live in
    the workspace or git, never in the cache)."""
    out = {**files, **data}
    for entry in stages.values():
        if deps:
            out.update(entry.get("deps") or {})
        out.update({p: d for p, d in (entry.get("outs") or {}).items() if d.get("cache", True)})
    return out


def _add_needs(
    store: ObjectStore, label: str, paths: dict[str, dict], needs: dict[str, tuple[str, str]]
) -> None:
    from repro.errors import ReproError

    for rel, d in sorted(paths.items()):
        h = d.get("hash")
        if not h:
            continue
        needs.setdefault(h, (label, rel))
        if d.get("isdir"):
            with contextlib.suppress(ReproError):
                for e in store.get_tree(h).entries:
                    needs.setdefault(e.hash, (label, f"{rel}/{e.path}"))


def meta_ok(key: str, data: bytes) -> bool:
    """Whether the bytes of metadata `key` are what its name says: a snapshot hashes to its
    id, a run-cache entry answers the signature it is filed under."""
    folder, _, name = key.partition("/")
    try:
        if folder == SNAPSHOTS:
            from repro.snapshots import snapshot_ok

            return snapshot_ok(name, data)
        if folder == TAGS:
            from repro.tags import Tag

            Tag.decode(data, name, key)  # raises when damaged, crafted or filed under another name
            return True
        if folder == RUNS:
            from repro.pipeline.runcache import RunCacheEntry

            try:
                return RunCacheEntry.decode(data, key).signature == name
            except NewerFormatError:  # a newer repro's entry travels if it names its key
                from repro.canonical import unpackb

                return unpackb(data).get("signature") == name
    except Exception:
        return False
    return True


def _heal_from_workspace(project: Project, hashes: set[str]) -> None:
    """Check in workspace paths of `repro.lock` whose content is among `hashes`: the only
    good copy of a damaged object is often the file it was made from."""
    from repro.errors import ReproError
    from repro.lockfile import load_lock
    from repro.workspace import check_in

    try:
        lock = load_lock(project.lock_path)
    except ReproError:
        return
    paths = set(lock.data)
    for entry in lock.stages.values():
        paths |= {p for p, d in (entry.get("outs") or {}).items() if d.get("cache", True)}
    for rel in sorted(paths):
        p = project.abs(rel)
        if not os.path.lexists(p):
            continue
        try:
            r = project.hasher.hash_path(p, files=True)
            if r.hash in hashes or any(f.hash in hashes for f in r.files):
                check_in(project, r, link=False)
        except (ReproError, OSError):
            continue


def _rewrite_loose(cache: ObjectStore, h: str) -> None:
    """Replace damaged loose object `h` by the verified bytes of another copy (atomically)."""
    from repro.store.links import read_only_mode

    local = cache.local
    assert local is not None
    data = cache.get_bytes(h)  # verified: a packed copy (the loose one fails)
    local.write_bytes(object_key(h), data)
    os.chmod(local.path(object_key(h)), read_only_mode(False))


def _split_corrupt(
    corrupt: list[str],
) -> tuple[set[str], dict[str, set[str]], list[str], list[str]]:
    """Corrupt keys by kind: (loose object hashes, pack id -> hashes of its damaged copies,
    damaged pack indexes, metadata keys)."""
    from repro.store.packs import PACKS
    from repro.store.repack import parse_damaged_key

    loose = {object_hash(k) for k in corrupt if k.startswith(OBJECTS + "/")}
    damaged: dict[str, set[str]] = {}
    indexes: list[str] = []
    meta: list[str] = []
    for k in corrupt:
        if k.startswith(OBJECTS + "/"):
            continue
        parsed = parse_damaged_key(k)
        if parsed is not None:
            damaged.setdefault(parsed[0], set()).add(parsed[1])
        elif k.startswith(PACKS + "/"):
            indexes.append(k)
        else:
            meta.append(k)
    return loose, damaged, indexes, meta


def _repair_local(project: Project, report: FsckReport, source: str | None) -> None:
    """Heal the local cache from the workspace, then from remote `source`; move aside what
    stays corrupt. A damaged pack is rewritten without its bad copies and moved aside."""
    from repro.store.packs import pack_key
    from repro.store.repack import damaged_key

    cache = project.cache
    bad, damaged, bad_indexes, meta = _split_corrupt(report.corrupt)
    packed_bad = set().union(*damaged.values()) if damaged else set()
    todo = bad | packed_bad | set(report.missing)
    # Damaged packs leave every lookup first (their good objects rewritten into a new pack):
    # a heal may then write a pack with the very same id (the same objects again) safely.
    _set_aside_packs(project, report, damaged, bad_indexes)
    if todo:
        _heal_from_workspace(project, todo)
    healed = cache.verified_set(todo)
    rstore = None
    if source and (todo - healed or meta):
        from repro.fetch import TransferReport, _batches, _download
        from repro.remote import open_remote, remote_errors

        name, rstore = open_remote(project, source)
        rep = TransferReport(name)
        got: set[str] = set()
        with remote_errors(name, rstore.backend.url):
            for batch in _batches(sorted(todo - healed)):
                _download(project, rstore, batch, name, 8, rep, got, None)
            for key in meta:
                with contextlib.suppress(Exception):
                    data = rstore.backend.read_bytes(key)
                    if meta_ok(key, data):
                        cache.backend.write_bytes(key, data)
                        report.repaired.append(key)
        report.notes += rep.corrupt
        cache.invalidate_packs()
        healed = cache.verified_set(todo)
    report.repaired += sorted(object_key(h) for h in healed & (bad | set(report.missing)))
    for h in sorted(bad):
        if _loose_ok(cache, h):
            continue  # replaced by good bytes
        if h in healed:  # a good copy is packed: the damaged file is replaced by it
            with contextlib.suppress(ReproError, OSError):
                _rewrite_loose(cache, h)
                continue
        with contextlib.suppress(FileNotFoundError):
            cache.move_aside(h)
            if h not in healed:
                report.moved_aside.append(object_key(h))
    for pid, hs in sorted(damaged.items()):
        report.repaired += sorted(damaged_key(pid, h) for h in hs if h in healed)
        if hs - healed:
            report.moved_aside.append(pack_key(pid))
        else:
            report.notes.append(f"{pack_key(pid)} kept in .repro/cache/corrupt/ for inspection")
    for key in meta:
        if key not in report.repaired:
            with contextlib.suppress(FileNotFoundError):
                _set_aside(cache, key)
                report.moved_aside.append(key)
    if report.moved_aside:
        report.notes.append(
            f"{len(report.moved_aside)} damaged item(s) had no good copy in the workspace"
            + (f" or on remote '{source}'" if source else " (no remote to ask)")
            + "; moved to .repro/cache/corrupt/"
        )


def _set_aside_packs(
    project: Project,
    report: FsckReport,
    damaged: dict[str, set[str]],
    bad_indexes: list[str],
) -> None:
    """Rewrite each damaged local pack without its bad copies (its good objects go into a new
    pack, published first) and move it to `corrupt/packs/`; a pack whose index is damaged is
    moved there whole (its objects cannot be found without the index)."""
    from repro.store.packs import pack_id_of_key
    from repro.store.repack import rewrite_without, set_aside_pack

    cache = project.cache
    local = cache.local
    assert local is not None
    for pid, hs in sorted(damaged.items()):
        with contextlib.suppress(FileNotFoundError):
            rewrite_without(local, pid, hs, cache.name, local.tmp_path)
    for key in bad_indexes:
        parsed = pack_id_of_key(key)
        if parsed is not None:
            set_aside_pack(local, parsed[0])
            report.moved_aside.append(key)
    if damaged or bad_indexes:
        cache.invalidate_packs()


def _repair_remote(project: Project, store: ObjectStore, report: FsckReport) -> None:
    """Replace a remote's corrupt or missing objects and records with our verified copies."""
    from repro.store.chunks import manifest_hash_of_key
    from repro.store.repack import damaged_key, rewrite_without

    bad, damaged, _indexes, meta = _split_corrupt(report.corrupt)
    packed_bad = set().union(*damaged.values()) if damaged else set()
    chunked = {h for k in meta if (h := manifest_hash_of_key(k)) is not None}
    sent = upload_verified(project, store, bad | packed_bad | chunked | set(report.missing))
    report.repaired += [k for k in sent if object_hash(k) not in packed_bad - bad]
    uploaded = {object_hash(k) for k in sent}
    local = project.cache.local
    assert local is not None
    for pid, hs in sorted(damaged.items()):
        if hs - uploaded:
            continue  # the damaged copy stays until a good one is there (reported)
        with contextlib.suppress(FileNotFoundError):
            rewrite_without(store.backend, pid, hs, store.name, local.tmp_path)
            report.repaired += sorted(damaged_key(pid, h) for h in hs)
    for key in meta:
        h = manifest_hash_of_key(key)
        if h is not None:  # a bad manifest: the whole object is there loose now
            if h in uploaded:
                store.backend.delete(key)
                report.repaired.append(key)
        elif _replace_meta(project, store, key):
            report.repaired.append(key)


def _replace_meta(project: Project, store: ObjectStore, key: str) -> bool:
    """Overwrite metadata `key` on `store` with our copy, when ours is good."""
    try:
        data = project.cache.backend.read_bytes(key)
    except Exception:
        return False
    if not meta_ok(key, data):
        return False
    store.backend.write_bytes(key, data)
    return True


def upload_verified(
    project: Project, store: ObjectStore, hashes: set[str], jobs: int = 8
) -> list[str]:
    """Upload, over whatever `store` holds, those of `hashes` whose local copy verifies;
    returns their keys. (The remote index may list them as present: a repair ignores it.)"""
    from repro.fetch import RemoteIndex, _batches
    from repro.remote import retry

    cache = project.cache
    lb = cache.local
    assert lb is not None
    good = sorted(cache.verified_set(hashes))
    loose = [h for h in good if os.path.exists(lb.path(object_key(h)))]
    for batch in _batches(loose):
        pairs = [(lb.path(object_key(h)), object_key(h)) for h in batch]
        retry(lambda pairs=pairs: store.backend.put_files(pairs, jobs))
    for h in sorted(set(good) - set(loose)):  # packed here: sent as a loose object
        data = cache.get_bytes(h)
        retry(lambda h=h, data=data: store.backend.write_bytes(object_key(h), data))
    RemoteIndex(project, store.backend.url).add(good)
    return [object_key(h) for h in good]


def verify_remote(
    project: Project, store: ObjectStore, hashes: set[str], jobs: int = 8
) -> tuple[list[str], list[str]]:
    """Read back the remote's copies of `hashes` and of our snapshots and run entries; replace
    each that is corrupt or missing with our verified bytes. Returns (repaired keys, keys
    still bad there because we have no good copy either)."""
    from repro.fetch import _batches
    from repro.hashing.filehash import hash_file
    from repro.remote import retry
    from repro.store.packs import Location
    from repro.store.packstore import PackReader, load_packset
    from repro.store.repack import manifest_hashes, verify_chunked

    lb = project.cache.local
    assert lb is not None
    bad: set[str] = set()
    packset = load_packset(store.backend, store.name)
    packed = [(h, packset.locate(h)) for h in sorted(hashes) if h in packset]
    chunked = (manifest_hashes(store.backend) & set(hashes)) - {h for h, _ in packed}
    bad.update(h for h in chunked if not verify_chunked(store.backend, h, store.name, packset))
    with PackReader(store.backend) as reader:  # packed copies: ranged reads, each verified
        firsts: list[tuple[str, Location]] = [(h, locs[-1]) for h, locs in packed]
        for h, data in reader.read_many(firsts):
            if data is None and reader.read(h, packset.locate(h)[:-1]) is None:
                bad.add(h)
    for batch in _batches(sorted(set(hashes) - {h for h, _ in packed} - chunked)):
        tmps = {h: lb.tmp_path() for h in batch}
        try:
            found = retry(
                lambda batch=batch, tmps=tmps: store.backend.get_files(
                    [(object_key(h), tmps[h]) for h in batch], jobs
                )
            )
            for h, there in zip(batch, found, strict=True):
                if not there or hash_file(tmps[h]) != h:
                    bad.add(h)
        finally:
            for tmp in tmps.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
    repaired = upload_verified(project, store, bad, jobs)
    left = sorted(set(object_key(h) for h in bad) - set(repaired))
    for folder in (SNAPSHOTS, RUNS):
        for key in sorted(project.cache.backend.list(folder)):
            try:
                theirs = store.backend.read_bytes(key)
            except FileNotFoundError:
                continue  # absent there: a plain push sends it
            except Exception:
                theirs = b""
            if not meta_ok(key, theirs):
                (repaired if _replace_meta(project, store, key) else left).append(key)
    return repaired, left
