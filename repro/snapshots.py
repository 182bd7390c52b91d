"""Snapshots: one state of the whole pipeline, content-addressed.

A snapshot holds each stage's lock entry (signature, dependency, param and output hashes), the
tracked data, every other file the pipeline reads (code, params files, `repro.yaml` itself) and
the schemas of table files. Its id — the sig users type — is the hash of that record, so the same
state always has the same sig. Everything it names is in the cache, so a snapshot can be put back
even where git history is gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from repro.canonical import hash_record, packb, unpackb
from repro.errors import NotFoundError, PathError
from repro.lockfile import Lock, load_lock, save_lock
from repro.progress import advance, start_phase
from repro.project import LOCK_FILE, SPEC_FILE, Project
from repro.store.backend import Backend
from repro.store.layout import RECORDS, SNAPSHOT_FORMAT, SNAPSHOTS, check_format, snapshot_key
from repro.workspace import (
    CheckoutReport,
    PathHash,
    check_in,
    check_out,
    remove_path,
    save_before_overwrite,
)


@dataclass
class Snapshot:
    stages: dict[str, dict[str, Any]]
    data: dict[str, dict[str, Any]]
    files: dict[str, dict[str, Any]]
    schemas: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "stages": self.stages,
            "data": self.data,
            "files": self.files,
            "schemas": self.schemas,
            "images": self.images,
        }

    @property
    def id(self) -> str:
        return hash_record(self.record())

    def outputs(self) -> dict[str, dict[str, Any]]:
        out = {}
        for entry in self.stages.values():
            out.update(entry.get("outs") or {})
        return out

    @classmethod
    def decode(cls, data: bytes, source: str = "snapshot") -> Snapshot:
        """Parse a stored snapshot, refusing one whose paths or hashes could steer a checkout
        outside the project (snapshots come from shared caches: DESIGN.md, trust boundaries)."""
        from repro.errors import CorruptObjectError
        from repro.lockfile import validate_state

        try:
            d = unpackb(data)
        except Exception as exc:
            raise CorruptObjectError(f"{source}: not a valid snapshot ({exc}).") from None
        if not isinstance(d, dict):
            raise CorruptObjectError(f"{source}: not a valid snapshot.")
        check_format(d, SNAPSHOT_FORMAT, source)
        snap = cls(
            d.get("stages") or {},
            d.get("data") or {},
            d.get("files") or {},
            d.get("schemas") or {},
            d.get("images") or {},
        )
        validate_state(snap.stages, snap.data, source, files=snap.files, images=snap.images)
        return snap


def _source_files(project: Project, lock: Lock) -> list[str]:
    """Paths the pipeline reads that no stage makes and that are not tracked data.

    Only stages `repro.yaml` declares count: a lock from `git pull` naming a stage the
    pipeline lacks must not make the snapshot store (and a push upload) any file it likes,
    such as a git-ignored `.env`."""
    from repro.pipeline.spec import load_spec

    try:
        declared = set(load_spec(project).stages)
    except Exception:
        declared = set()  # a broken repro.yaml: store only the files every snapshot has
    lock = Lock({n: e for n, e in lock.stages.items() if n in declared}, lock.data, lock.images)
    produced: set[str] = set()
    for entry in lock.stages.values():
        produced |= set((entry.get("outs") or {}).keys())
    data = set(lock.data)

    def inside(p: str, paths: set[str]) -> bool:
        return any(p == q or p.startswith(q + "/") for q in paths)

    files = {SPEC_FILE}
    for entry in lock.stages.values():
        for p in entry.get("deps") or {}:
            if not inside(p, produced) and not inside(p, data):
                files.add(p)
        for key in entry.get("params") or {}:
            files.add(key.rsplit(":", 1)[0])
        for p in (entry.get("environment") or {}).get("lockfiles") or {}:
            files.add(p)
    return sorted(f for f in files if os.path.lexists(project.abs(f)))


def build_snapshot(project: Project, lock: Lock | None = None) -> Snapshot:
    """The snapshot of the current lock plus the source files as they are now (stored)."""
    from repro.schema import schemas_for

    lock = lock or load_lock(project.lock_path)
    files: dict[str, dict[str, Any]] = {}
    for rel in _source_files(project, lock):
        r = project.hasher.hash_path(project.abs(rel), files=True)
        check_in(project, r, link=False)  # code stays writable: copy, never link
        files[rel] = PathHash.of(r).to_dict()
    table_paths = list(lock.data) + [p for e in lock.stages.values() for p in (e.get("outs") or {})]
    return Snapshot(
        lock.stages, lock.data, files, schemas_for(project.root, table_paths), dict(lock.images)
    )


def save_snapshot(backend: Backend, snap: Snapshot) -> str:
    sig = snap.id
    key = snapshot_key(sig)
    try:
        there = backend.read_bytes(key)
    except FileNotFoundError:
        there = None
    if there is None or not snapshot_ok(sig, there):  # a damaged copy heals here
        backend.write_bytes(key, packb(snap.record()))
    return sig


def record_snapshot(project: Project) -> str:
    return save_snapshot(project.cache.backend, build_snapshot(project))


def list_snapshots(backend: Backend) -> list[str]:
    """Sigs of the snapshots in `backend` (names that are no hash are not snapshots)."""
    from repro.safety import is_hash

    names = (k[len(SNAPSHOTS) + 1 :] for k in backend.list(SNAPSHOTS))
    return sorted(n for n in names if is_hash(n))


def resolve(backend: Backend, prefix: str, kind: str = "snapshot") -> str:
    """A full sig from a unique prefix of 7+ characters."""
    prefix = prefix.lower()
    if len(prefix) < 7:
        raise NotFoundError(f"'{prefix}': give at least 7 characters of the {kind} sig.")
    folder = SNAPSHOTS if kind == "snapshot" else RECORDS
    matches = [k.rsplit("/", 1)[-1] for k in backend.list(folder)]
    matches = [m for m in matches if m.startswith(prefix)]
    if not matches:
        raise NotFoundError(f"'{prefix}': no {kind} has this sig in the cache.")
    if len(matches) > 1:
        raise NotFoundError(
            f"'{prefix}': ambiguous; {len(matches)} {kind}s start with it "
            f"({', '.join(m[:12] for m in matches[:4])}…); give more characters."
        )
    return matches[0]


def load_snapshot(backend: Backend, sig: str) -> Snapshot:
    try:
        data = backend.read_bytes(snapshot_key(sig))
    except FileNotFoundError:
        raise NotFoundError(f"snapshot {sig} is not in the cache.") from None
    from repro.canonical import hash_bytes

    if hash_bytes(data) != sig:  # its bytes, exactly: stored as the encoding its id hashes
        from repro.errors import CorruptObjectError

        raise CorruptObjectError(
            f"snapshot {sig} is corrupted (its content does not match its sig)."
        )
    return Snapshot.decode(data, f"snapshot {sig[:12]}")


def snapshot_ok(sig: str, data: bytes) -> bool:
    """Whether `data` is the snapshot `sig` (decodes, and its record hashes to `sig`): checked
    before a snapshot from anywhere is used or copied. One in a newer format is intact when its
    bytes hash to its id: this repro cannot read it, but copies and keeps it for one that can."""
    from repro.canonical import hash_bytes
    from repro.errors import NewerFormatError

    if hash_bytes(data) != sig:
        return False
    try:
        Snapshot.decode(data, f"snapshot {sig[:12]}")
    except NewerFormatError:
        return True
    except Exception:
        return False
    return True


def checkout_snapshot(
    project: Project,
    sig: str,
    force: bool = False,
    outs_only: bool = False,
    wait: float = 0.0,
    progress: Any = None,
) -> CheckoutReport:
    """Make the workspace match snapshot `sig` (a unique prefix of 7+ characters will do),
    under the project lock (waiting up to `wait` seconds for it). `progress` (optional) is
    told a "place" phase with the files and bytes of the snapshot's paths, then each path."""
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot, wait):
        return _checkout_snapshot(project, sig, force, outs_only, progress)


def _checkout_snapshot(
    project: Project, sig: str, force: bool, outs_only: bool, progress: Any = None
) -> CheckoutReport:
    backend = project.cache.backend
    full = resolve(backend, sig)
    snap = load_snapshot(backend, full)
    targets: dict[str, dict[str, Any]] = {}
    targets.update(snap.data)
    for path, d in snap.outputs().items():
        if d.get("cache", True):
            targets[path] = d
    if not outs_only:
        targets.update(snap.files)
    _ensure_available(project, targets)
    report = CheckoutReport()
    # Outputs the current pipeline makes that the snapshot does not have: save, then remove.
    current = load_lock(project.lock_path)
    made_now = set()
    for entry in current.stages.values():
        made_now |= set((entry.get("outs") or {}).keys())
    try:
        from repro.pipeline.spec import load_spec

        for st in load_spec(project).stages.values():
            made_now |= set(st.out_paths)
    except Exception:
        pass  # a broken repro.yaml in the workspace must not block going back
    for path in sorted(made_now - set(targets) - set(snap.outputs())):
        p = project.boundary.check_write(project.abs(path), "workspace")
        if os.path.lexists(p):
            if not force:
                save_before_overwrite(project, path, report)
            remove_path(p)
            project.hasher.invalidate(p)
            report.removed += 1
    if progress is not None:
        start_phase(progress, "place", sum(map(_nfiles, targets.values())), _nbytes(targets))
    for path, d in sorted(targets.items()):
        try:
            check_out(project, path, PathHash.from_dict(d), force=force, report=report)
        except PathError:
            raise
        if progress is not None:
            advance(progress, _nfiles(d), int(d.get("size") or 0))
    # Where imported data came from (`repro import-url`) is not part of a snapshot: it stays
    # recorded for the paths the snapshot still tracks, so `repro update` keeps working.
    external = {p: e for p, e in current.external.items() if p in snap.data}
    lock = Lock(dict(snap.stages), dict(snap.data), dict(snap.images), external)
    save_lock(os.path.join(project.root, LOCK_FILE), lock)
    from repro.gitignore import ensure_ignored

    ensure_ignored(
        project.root,
        [p for p, d in snap.outputs().items() if d.get("cache", True)] + list(snap.data),
    )
    report.snapshot = full
    _note_git_commit(project, full, report)
    return report


def _nfiles(d: dict[str, Any]) -> int:
    return int(d.get("nfiles") or 0) if d.get("isdir") else 1


def _nbytes(targets: dict[str, dict[str, Any]]) -> int:
    return sum(int(d.get("size") or 0) for d in targets.values())


def _note_git_commit(project: Project, sig: str, report: CheckoutReport) -> None:
    """Say so when the snapshot was made at another commit than HEAD."""
    from repro.records import git_state, list_records

    made_at = next(
        (
            r.git_commit
            for r in list_records(project.cache.backend)
            if r.snapshot == sig and r.git_commit
        ),
        None,
    )
    head, _ = git_state(project.root)
    if made_at and head and made_at != head:
        report.notes.append(
            f"note: snapshot {sig[:12]} was made at git commit {made_at[:10]}; HEAD is "
            f"{head[:10]}. Code and params are restored from the snapshot; "
            f"'git checkout {made_at[:10]}' brings back the rest of the repository."
        )


def _ensure_available(project: Project, targets: dict[str, dict[str, Any]]) -> None:
    """Every object the checkout needs must be in the local cache (fetched from the default
    remote when one is configured), before anything in the workspace is touched."""
    cache = project.cache
    missing = []
    for path, d in targets.items():
        h = d["hash"]
        if not cache.has_verified(h):  # a corrupt object is fetched over, like a missing one
            missing.append((path, h))
            continue
        if d.get("isdir"):
            entries = cache.get_tree(h).entries
            good = cache.verified_set({e.hash for e in entries})
            missing += [(f"{path}/{e.path}", e.hash) for e in entries if e.hash not in good]
    if missing:
        from repro.fetch import fetch_missing

        still = fetch_missing(project, missing)
        if still:
            path, h = still[0]
            from repro.errors import MissingObjectError

            raise MissingObjectError(
                f"{path}: its content ({h}) is in no cache that was asked "
                f"({len(still)} objects missing); 'repro pull' from a remote that has it."
            )
