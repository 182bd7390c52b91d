"""Move content between the workspace and the cache: check paths in, put them back out.

`check_in` stores a hashed file or folder (its files and its tree) in a cache; `check_out`
makes a workspace path hold a stored file or tree, touching only what differs, and first checks
in anything it would overwrite or remove that the cache does not hold yet ("nothing is lost").
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

from repro.errors import PathError
from repro.hashing.engine import HashResult
from repro.hashing.state import StatKey, now_ns, restat
from repro.hashing.tree import Tree, TreeEntry
from repro.model import PathHash  # lived here; signatures and the planner use it too
from repro.project import Project
from repro.safety import safe_rel
from repro.store.links import write_file
from repro.store.objects import PACK_MIN_FILES, ObjectStore
from repro.store.packs import PACK_MAX_OBJECT


@dataclass
class CheckoutReport:
    placed: int = 0
    removed: int = 0
    unchanged: int = 0
    saved: list[tuple[str, str]] = field(default_factory=list)  # (path, hash) checked in first
    snapshot: str | None = None
    notes: list[str] = field(default_factory=list)


def check_in(
    project: Project, result: HashResult, cache: ObjectStore | None = None, link: bool = True
) -> int:
    """Store every file of `result` (and its tree) in the cache; return how many were new.

    With `link`, files enter the local cache by hardlink (no second copy of the bytes) and the
    stat cache entries of the workspace files are moved to their new ctime. Inside the cache's
    `batch()` (repro add, a stage's outputs), the small files of a path with PACK_MIN_FILES or
    more of them are copied into a pack instead (one write for thousands) and stay ordinary
    writable files; a handful stays loose, as before packs.
    """
    cache = cache or project.cache
    new = 0
    moved: list[tuple[str, StatKey, StatKey]] = []
    verified: list = []  # stat-cache rows of new objects, written in one transaction
    rows = cache.batch_rows(len(result.files))  # objects already there are verified cheaply
    small = sum(1 for f in result.files if f.key.size < PACK_MAX_OBJECT)
    with cache.loose() if small < PACK_MIN_FILES else contextlib.nullcontext():
        for f in result.files:
            before = len(verified)
            if cache.put_file(f.abs, f.hash, f.executable, link, verified, rows, f.key.size):
                new += 1
                if link and len(verified) > before and verified[-1][1].ino == f.key.ino:
                    # Linked: the workspace file is the object's inode, and has its new stat.
                    moved.append((f.abs, f.key, verified[-1][1]))
        if result.tree is not None:
            cache.put_tree(result.tree)
    project.state.put_many(verified)
    restat(project.state, moved)
    if result.is_dir and moved:
        # Linking changed the files' ctime and mode: record the folder's new fingerprint now
        # (from the stats we have), so the next status does not redo per-file lookups.
        import stat as statmod

        from repro.hashing.engine import folder_fingerprint
        from repro.store.links import read_only_mode

        now = {p: k for p, _old, k in moved}
        items = []
        for f in result.files:
            k = now.get(f.abs, f.key)
            mode = statmod.S_IFREG | read_only_mode(f.executable) if f.abs in now else f.mode
            items.append((f.rel, k.ino, k.size, k.mtime_ns, k.ctime_ns, mode))
        project.hasher.invalidate(result.path)
        project.state.put_folder(
            os.path.abspath(result.path),
            folder_fingerprint(items, result.rules),
            result.hash,
            result.size,
            result.checked,
        )
    return new


def remove_path(path: str) -> None:
    """Remove a file, a symlink or a whole folder (a missing path is fine)."""
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _saved(project: Project, report: CheckoutReport, rel: str, result: HashResult) -> None:
    """Note content stored before an overwrite: in the report (printed with the command to get
    it back) and in `.repro/saved.jsonl` (listed by `repro restore`, kept by gc)."""
    from repro.saved import record_saved

    report.saved.append((rel, result.hash))
    record_saved(project.dot, rel, result.hash, result.is_dir)


def save_before_overwrite(
    project: Project, rel: str, report: CheckoutReport, cache: ObjectStore | None = None
) -> None:
    """Check in whatever is at `rel` now unless the cache already has it."""
    cache = cache or project.cache
    path = project.abs(rel)
    if not os.path.lexists(path):
        return
    result = project.hasher.hash_path(path, files=True)
    # Verified, not merely present: a corrupt object must not stand in for the only good copy.
    if result.is_dir:
        wanted = {f.hash for f in result.files} | {result.hash}
        if cache.verified_set(wanted) != wanted:
            check_in(project, result, cache, link=False)
            _saved(project, report, rel, result)
    elif not cache.has_verified(result.hash):
        check_in(project, result, cache, link=False)
        _saved(project, report, rel, result)


def check_out(
    project: Project,
    rel: str,
    want: PathHash,
    force: bool = False,
    cache: ObjectStore | None = None,
    report: CheckoutReport | None = None,
) -> CheckoutReport:
    """Make workspace path `rel` hold `want`. Unless `force`, content about to be overwritten
    or removed that the cache lacks is checked in first (listed in `report.saved`)."""
    with project.hasher.session():  # the path is hashed once, not again to check it in
        return _check_out(
            project, rel, want, force, cache or project.cache, report or CheckoutReport()
        )


def _check_out(
    project: Project,
    rel: str,
    want: PathHash,
    force: bool,
    cache: ObjectStore,
    report: CheckoutReport,
) -> CheckoutReport:
    path = project.abs(safe_rel(rel, "checkout"))
    project.boundary.check_write(path, "workspace", folder=want.isdir)
    project.hasher.invalidate(path)
    current: HashResult | None = None
    if os.path.lexists(path):
        try:
            current = project.hasher.hash_path(path)
        except PathError:
            current = None
        if current is not None and current.hash == want.hash and current.is_dir == want.isdir:
            report.unchanged += current.nfiles
            return report
        if current is not None and current.is_dir and not current.files:
            current = project.hasher.hash_path(path, files=True)  # we compare file by file
        if not force:
            save_before_overwrite(project, rel, report, cache)
    if not want.isdir:
        if current is not None and current.is_dir:
            remove_path(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _place(project, cache, [(path, TreeEntry(rel, want.hash, want.size, False))], report)
        project.hasher.invalidate(path)
        return report
    tree = cache.get_tree(want.hash)
    wanted = tree.as_dict()
    _refuse_clashes(tree, wanted, want.hash)  # before anything is written
    if current is not None and not current.is_dir:
        remove_path(path)
        current = None
    have = {f.rel: f for f in current.files} if current is not None else {}
    for relf, f in have.items():
        if relf not in wanted:
            os.unlink(project.boundary.check_write(f.abs, "workspace"))
            report.removed += 1
    todo = []
    for e in tree.entries:
        cur = have.get(e.path)
        if cur is not None and cur.hash == e.hash and cur.executable == e.executable:
            report.unchanged += 1
            continue
        todo.append((os.path.join(path, *e.path.split("/")), e))
    _place(project, cache, todo, report)
    if current is not None:
        _prune_empty_dirs(path)
    os.makedirs(path, exist_ok=True)
    project.hasher.invalidate(path)
    return report


def _refuse_clashes(tree: Tree, wanted: dict[str, TreeEntry], h: str) -> None:
    """A tree (from a shared cache or a remote, named by a lock from git) that names a path
    twice, or names `x` as a file and `x/y` too, cannot be checked out: the second would
    replace the first mid-checkout (a file by a folder or back), and every later checkout
    would flip it again. Refused in one sentence. One `rpartition` per file."""
    from repro.errors import UntrustedInputError

    def bad(path: str, problem: str) -> UntrustedInputError:
        return UntrustedInputError(f"tree {h}", "entry", path, problem)

    if len(wanted) != len(tree.entries):
        seen: set[str] = set()
        for e in tree.entries:
            if e.path in seen:
                raise bad(e.path, "is named twice")
            seen.add(e.path)
    folders: set[str] = set()
    for e in tree.entries:
        d = e.path.rpartition("/")[0]
        while d and d not in folders:
            if d in wanted:
                raise bad(d, f"is a file and also the folder of {e.path!r}")
            folders.add(d)
            d = d.rpartition("/")[0]


def _prune_empty_dirs(root: str) -> None:
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        if dirpath != root:
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _place(
    project: Project, cache: ObjectStore, todo: list[tuple[str, TreeEntry]], report: CheckoutReport
) -> None:
    """Put each object at its path and record the result in the stat cache. Packed objects are
    read pack by pack (one open per pack) and written as new files; loose ones are linked or
    copied by the configured methods. Every object is checked to be there before any file is
    written (a missing one changes nothing)."""
    if not todo:
        return
    placer = _Placer(project, report)
    wanted = {e.hash for _, e in todo}
    packed = cache.packed_verified(wanted)
    sources = cache.verified_paths(wanted - packed)  # raises for a missing or corrupt object
    by_hash: dict[str, list[tuple[str, TreeEntry]]] = {}
    for dst, e in todo:
        if e.hash in packed:
            by_hash.setdefault(e.hash, []).append((dst, e))
        else:
            placer.link(cache, dst, e, sources[e.hash])
    try:
        for h, data in cache.read_many(by_hash):
            if data is None:  # damaged since it was checked: a loose copy, or one sentence
                src = cache.verified_path(h)
                for dst, e in by_hash[h]:
                    placer.link(cache, dst, e, src)
                continue
            for dst, e in by_hash[h]:
                placer.write(dst, e, data)
    finally:
        project.state.put_many(placer.records)


class _Placer:
    """Writes checked-out files into the workspace: each parent folder checked and made once,
    a folder in a file's way removed, the new file's stat recorded for the stat cache."""

    def __init__(self, project: Project, report: CheckoutReport) -> None:
        self.project = project
        self.report = report
        self.made: dict[str, int] = {}  # parent folder -> its device
        self.records: list = []
        self.checked = now_ns()

    def _prepare(self, dst: str) -> int:
        parent = os.path.dirname(dst)
        dev = self.made.get(parent)
        if dev is None:
            self.project.boundary.check_write(dst, "workspace")
            if os.path.lexists(parent) and not os.path.isdir(parent):
                os.unlink(parent)
            os.makedirs(parent, exist_ok=True)
            dev = self.made[parent] = os.stat(parent).st_dev
        if os.path.isdir(dst) and not os.path.islink(dst):
            remove_path(dst)
        return dev

    def link(self, cache: ObjectStore, dst: str, e: TreeEntry, src: str) -> None:
        dev = self._prepare(dst)
        method = cache.checkout_file(e.hash, dst, e.executable, src, dev)
        key = StatKey.of(os.stat(dst))
        self.records.append((dst, key, e.hash, self.checked))
        if method == "hardlink":  # the object is that inode: its ctime moved with the new link
            self.records.append((src, key, e.hash, self.checked))
        self.report.placed += 1

    def write(self, dst: str, e: TreeEntry, data: bytes) -> None:
        self._prepare(dst)
        write_file(dst, data, e.executable)
        self.records.append((dst, StatKey.of(os.stat(dst)), e.hash, self.checked))
        self.report.placed += 1


@dataclass
class Absent:
    """What of a recorded path the local cache lacks: the objects (with the workspace path
    that needs each), and how many files and bytes they stand for."""

    objects: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0
    bytes: int = 0

    def __bool__(self) -> bool:
        return bool(self.objects)

    def add(self, other: Absent) -> None:
        self.objects += other.objects
        self.count += other.count
        self.bytes += other.bytes


def absent(project: Project, rel: str, d: dict[str, Any]) -> Absent:
    """The objects of recorded path `rel` (its lock entry `d`) missing from the local cache.
    A folder whose tree is missing counts as all its files (the tree says which they are)."""
    cache = project.cache
    h = d["hash"]
    size = int(d.get("size", 0))
    if not cache.has_verified(h):
        return Absent([(rel, h)], int(d.get("nfiles", 1)), size)
    if not d.get("isdir"):
        return Absent()
    entries = cache.get_tree(h).entries  # a verified tree that names unsafe paths: refused
    good = cache.verified_set({e.hash for e in entries})
    lacking = [e for e in entries if e.hash not in good]
    return Absent(
        [(f"{rel}/{e.path}", e.hash) for e in lacking], len(lacking), sum(e.size for e in lacking)
    )
