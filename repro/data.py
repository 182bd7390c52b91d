"""Tracked data: `repro add` (paths no stage makes) and putting a lock's state back.

Tracked paths are listed under `data:` in `repro.yaml`, their hashes under `data` in
`repro.lock`, and they are git-ignored, as DVC does with `.dvc` files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from repro.errors import PathError
from repro.gitignore import ensure_ignored, git_tracked
from repro.hashing.engine import Progress
from repro.lockfile import load_lock, save_lock
from repro.pipeline.specio import load_rt, save_rt
from repro.project import Project
from repro.safety import output_problem
from repro.workspace import CheckoutReport, PathHash, check_in, check_out


@dataclass
class Added:
    path: str
    hash: PathHash
    new_objects: int


def add_and_record(
    project: Project, paths: list[str], progress: Progress | None = None, wait: float = 0.0
) -> tuple[list[Added], str]:
    """`repro add`: track `paths`, then record a snapshot and a run record (kind `add`), under
    the project lock (waiting up to `wait` seconds for it)."""
    import time

    from repro.pipeline.runlock import run_lock
    from repro.pipeline.runner import new_run_id
    from repro.records import make_record, save_record
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
    results = [project.hasher.hash_path(project.abs(rel), progress, files=True) for rel in rels]
    added = []
    for rel, r in zip(rels, results, strict=True):
        added.append(Added(rel, PathHash.of(r), check_in(project, r)))
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


def checkout_lock(project: Project, force: bool = False, wait: float = 0.0) -> CheckoutReport:
    """Make tracked data and every stage's outputs match `repro.lock`, under the project lock
    (waiting up to `wait` seconds for it)."""
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot, wait):
        return _checkout_lock(project, force)


def _checkout_lock(project: Project, force: bool) -> CheckoutReport:
    lock = load_lock(project.lock_path)
    report = CheckoutReport()
    for rel, d in sorted(lock.data.items()):
        check_out(project, rel, PathHash.from_dict(d), force=force, report=report)
    for _name, entry in sorted(lock.stages.items()):
        for rel, d in sorted((entry.get("outs") or {}).items()):
            if d.get("cache", True):
                check_out(project, rel, PathHash.from_dict(d), force=force, report=report)
    return report


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
