"""Tracked data: `repro add` (paths no stage makes) and putting a lock's state back.

Tracked paths are listed under `data:` in `repro.yaml`, their hashes under `data` in
`repro.lock`, and they are git-ignored, as DVC does with `.dvc` files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from repro.errors import PathError
from repro.gitignore import ensure_ignored, git_tracked
from repro.hashing.engine import Progress
from repro.lockfile import Lock, load_lock, save_lock
from repro.pipeline.specio import load_rt, save_rt
from repro.progress import advance, start_phase  # re-exported: they lived here
from repro.project import Project
from repro.safety import output_problem
from repro.workspace import (  # Absent, absent: lived here; the planner needs them
    Absent,
    CheckoutReport,
    PathHash,
    absent,
    check_in,
    check_out,
)


@dataclass
class Added:
    path: str
    hash: PathHash
    new_objects: int


def ensure_local(
    project: Project, targets: dict[str, dict[str, Any]], remote: str | None = None
) -> None:
    """Every object of the recorded `targets` (path -> lock entry) in the local cache: what is
    lacking is fetched from `remote` (when one is given) and verified. Raises one sentence with
    a project-relative path and 'repro pull' as the fix when something is still missing."""
    lacking = Absent()
    for rel, d in sorted(targets.items()):
        lacking.add(absent(project, rel, d))
    if not lacking:
        return
    if remote:
        from repro.fetch import fetch_objects

        fetch_objects(project, remote, {h for _, h in lacking.objects})
        lacking = Absent()
        for rel, d in sorted(targets.items()):
            lacking.add(absent(project, rel, d))
        if not lacking:
            return
    from repro.errors import CorruptObjectError, MissingObjectError

    path, h = lacking.objects[0]
    if project.cache.has(h):  # there, but its bytes do not match its name
        raise CorruptObjectError(
            f"{path}: its content ({h}) is corrupted in the local cache and no good copy was "
            "found; 'repro fsck --repair' heals it from the workspace or a remote."
        )
    where = f"remote '{remote}' lacks it too" if remote else "no remote was asked"
    raise MissingObjectError(
        f"{path}: its content ({h}) is not in the local cache ({where}; "
        f"{len(lacking.objects)} object(s) missing); 'repro pull' from a remote that has it."
    )


@dataclass
class DataChange:
    """Tracked data that `repro run` took as a new version (`updated`, `added`) or put back
    from the cache because it was absent from the workspace (`restored`)."""

    path: str
    action: str
    hash: PathHash
    old: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, **self.hash.to_dict(), "old": self.old}


def refresh_data(
    project: Project,
    lock: Lock,
    paths: list[str],
    dry_run: bool = False,
    remote: str | None = None,
) -> list[DataChange]:
    """Bring tracked `paths` and `lock.data` into agreement before a run: content edited since
    it was recorded is stored and becomes the recorded version (the lock is updated in memory;
    the caller writes it); content absent from the workspace is put back from the cache,
    fetched from `remote` first when the cache lacks it. A dry run only says what it would do."""
    with project.cache.batch():  # what is stored is published before the lock names it
        return _refresh_data(project, lock, paths, dry_run, remote)


def _refresh_data(
    project: Project, lock: Lock, paths: list[str], dry_run: bool, remote: str | None
) -> list[DataChange]:
    changes = []
    for rel in paths:
        locked = lock.data.get(rel)
        p = project.abs(rel)
        if os.path.lexists(p):
            r = project.hasher.hash_path(p, files=not dry_run)
            if locked and locked.get("hash") == r.hash:
                continue
            if not dry_run:
                check_in(project, r)
                lock.data[rel] = PathHash.of(r).to_dict()
            old = locked.get("hash") if locked else None
            changes.append(DataChange(rel, "updated" if locked else "added", PathHash.of(r), old))
        elif locked:
            want = PathHash.from_dict(locked)
            if not dry_run:
                ensure_local(project, {rel: locked}, remote)
                check_out(project, rel, want)
            changes.append(DataChange(rel, "restored", want, want.hash))
        elif not dry_run:
            raise PathError(
                f"repro.yaml: data '{rel}' does not exist and repro.lock has no record of it; "
                "put it back, or remove it from 'data:'."
            )
    return changes


def add_and_record(
    project: Project, paths: list[str], progress: Progress | None = None, wait: float = 0.0
) -> tuple[list[Added], str]:
    """`repro add`: track `paths`, then record a snapshot and a run record (kind `add`), under
    the project lock (waiting up to `wait` seconds for it)."""
    import time

    from repro.pipeline.runlock import run_lock
    from repro.records import make_record, new_run_id, save_record
    from repro.snapshots import record_snapshot

    started = time.time()
    with run_lock(project.dot, wait):  # gc holds it too: it never sees half-added data
        added = add(project, paths, progress)
        sig = record_snapshot(project)
        record = make_record(
            project, new_run_id(started), "add", started, time.time(), sig, "ok", []
        )
        save_record(project.cache.backend, record)
    return added, sig


def add(project: Project, paths: list[str], progress: Progress | None = None) -> list[Added]:
    """Hash `paths`, store them in the cache, and record them as tracked data.

    Every path is checked before anything is written: a bad one changes nothing.
    """
    rels = [project.rel(p, "path to add") for p in paths]
    for p, rel in zip(paths, rels, strict=True):
        problem = output_problem(rel)
        if problem:
            raise PathError(f"{p}: {problem}; repro cannot track it as data.")
        if not os.path.lexists(project.abs(rel)):
            raise PathError(f"{p}: no such file or folder.")
        if project.hasher.ignore.path_ignored(project.abs(rel)):
            raise PathError(
                f"{p}: is ignored by a .reproignore rule or repro's default ignore rules; "
                "repro cannot track it (add a '!' rule to .reproignore to include it)."
            )
    tracked = git_tracked(project.root, rels)
    if tracked:
        raise PathError(
            f"{sorted(tracked)[0]}: is tracked by git; repro would move it out of git's "
            "hands. 'git rm -r --cached' it first, then 'repro add' it."
        )
    from repro.pipeline.spec import load_spec

    spec = load_spec(project)
    for rel in rels:
        owner = spec.output_owner(rel)
        if owner:
            raise PathError(
                f"{rel}: is an output of stage '{owner}' in repro.yaml; repro tracks it already."
            )
    if progress is not None:
        start_phase(progress, "hash", *path_totals(project, rels))
    try:
        for rel in rels:  # a large file is copied into the cache while it is hashed
            project.cache.prefetch(project.abs(rel))
        results = [project.hasher.hash_path(project.abs(rel), progress, files=True) for rel in rels]
        if progress is not None:
            start_phase(progress, "store", sum(len(r.files) for r in results), _size(results))
        added = []
        with project.cache.batch():  # small files of every path go into packs, published here
            for rel, r in zip(rels, results, strict=True):
                added.append(Added(rel, PathHash.of(r), check_in(project, r)))
                advance(progress, len(r.files), r.size)
    finally:
        project.cache.discard_prefetched()
    doc = load_rt(project.spec_path)
    data = doc.get("data")
    if data is None:
        from ruamel.yaml.comments import CommentedSeq

        data = CommentedSeq()
        doc["data"] = data
    changed = False
    for rel in rels:
        if rel not in data:
            data.append(rel)
            changed = True
    if changed:
        save_rt(project.spec_path, doc)
    lock = load_lock(project.lock_path)
    for a in added:
        lock.data[a.path] = a.hash.to_dict()
    save_lock(project.lock_path, lock)
    ensure_ignored(project.root, rels)
    return added


def _size(results: list[Any]) -> int:
    return sum(r.size for r in results)


def path_totals(project: Project, rels: list[str]) -> tuple[int, int]:
    """Files and bytes hashing `rels` will read (the walk the hasher does), for `add` and for
    caching a stage's outputs: asked only when a progress display wants totals."""
    import stat as statmod

    from repro.hashing.walk import walk_files

    files = nbytes = 0
    for rel in rels:
        path = project.abs(rel)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not statmod.S_ISDIR(st.st_mode):
            files, nbytes = files + 1, nbytes + st.st_size
            continue
        rules = project.hasher.ignore.matcher_above(path)
        try:
            entries = walk_files(path, inside=project.hasher.inside, rules=rules)
        except PathError:  # the hasher says why, in its own words
            continue
        files += len(entries)
        nbytes += sum(e.st.st_size for e in entries)
    return files, nbytes


def checkout_lock(
    project: Project, force: bool = False, wait: float = 0.0, progress: Any = None
) -> CheckoutReport:
    """Make tracked data and every stage's outputs match `repro.lock`, under the project lock
    (waiting up to `wait` seconds for it). `progress` (optional) is told a "place" phase
    with the files and bytes to place, then each path placed."""
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot, wait):
        return _checkout_lock(project, force, progress)


def _checkout_lock(project: Project, force: bool, progress: Any = None) -> CheckoutReport:
    from repro.remote import default_remote_name

    lock = load_lock(project.lock_path)
    targets = dict(lock.data)
    for entry in lock.stages.values():
        targets.update({p: d for p, d in (entry.get("outs") or {}).items() if d.get("cache", True)})
    with project.hasher.session():  # each path is hashed once for both steps
        # Before the workspace is touched: what it lacks is fetched from the default remote,
        # or one sentence. A path that already holds its recorded content needs no object.
        held = {rel: _holds(project, rel, d) for rel, d in targets.items()}
        lacking = {rel: d for rel, d in targets.items() if held[rel] is None}
        ensure_local(project, lacking, default_remote_name(project))
        report = CheckoutReport()
        order = sorted(lock.data.items()) + [
            (rel, d)
            for _name, entry in sorted(lock.stages.items())
            for rel, d in sorted((entry.get("outs") or {}).items())
            if d.get("cache", True)
        ]
        if progress is not None:
            todo = [d for rel, d in order if held[rel] is None]
            start_phase(progress, "place", sum(_nfiles(d) for d in todo), _bytes(todo))
        for rel, d in order:
            nfiles = held[rel]
            if nfiles is not None:  # what check_out would find: nothing to do
                report.unchanged += nfiles
                continue
            check_out(project, rel, PathHash.from_dict(d), force=force, report=report)
            if progress is not None:
                advance(progress, _nfiles(d), int(d.get("size") or 0))
    return report


def _nfiles(d: dict[str, Any]) -> int:
    return int(d.get("nfiles") or 0) if d.get("isdir") else 1


def _bytes(entries: list[dict[str, Any]]) -> int:
    return sum(int(d.get("size") or 0) for d in entries)


def _holds(project: Project, rel: str, d: dict[str, Any]) -> int | None:
    """The number of files at workspace path `rel` when it holds the content its lock entry `d`
    records (through the stat cache: an unchanged folder costs a walk and one fingerprint),
    else None."""
    from repro.errors import ReproError

    path = project.abs(rel)
    if not os.path.lexists(path):
        return None
    try:
        project.boundary.check_write(path, "workspace", folder=bool(d.get("isdir")))
        r = project.hasher.hash_path(path)
    except ReproError:
        return None
    if r.hash == d.get("hash") and r.is_dir == bool(d.get("isdir")):
        return r.nfiles
    return None


def restore(
    project: Project, h: str, dest: str, force: bool = False, wait: float = 0.0
) -> CheckoutReport:
    """Put the cached file or folder `h` at `dest` (used to get back content a checkout saved),
    under the project lock (waiting up to `wait` seconds for it)."""
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot, wait):
        return _restore(project, h, dest, force)


def _restore(project: Project, h: str, dest: str, force: bool) -> CheckoutReport:
    from repro.errors import CorruptObjectError
    from repro.store.objects import is_hash

    if not is_hash(h):
        raise PathError(f"{h}: not a content hash (32 hex characters).")
    rel = project.rel(dest, "restore destination")
    try:
        tree = project.cache.get_tree(h)
        want = PathHash(h, tree.size, True, len(tree))
    except CorruptObjectError:
        want = PathHash(h, 0, False)
    return check_out(project, rel, want, force=force)
