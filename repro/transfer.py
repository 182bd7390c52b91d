"""Push and pull between the local cache and a remote: only what the other side lacks.

Presence is learned in bulk (one listing of each side), never one request per object. Objects
move in parallel threads; each lands atomically (temporary name then rename, or a single put), so
an interrupted transfer is simply run again and finishes the work. Every object fetched from a
remote is verified against its hash before it enters the local cache: a corrupted or truncated
one is reported with its key and never used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from repro.errors import CorruptObjectError, ReproError, UntrustedInputError
from repro.hashing.filehash import hash_file
from repro.hashing.state import StatKey, now_ns
from repro.lockfile import load_lock
from repro.project import Project
from repro.remote import open_remote, remote_errors, retry
from repro.safety import safe_key
from repro.store.links import read_only_mode
from repro.store.objects import ObjectStore, object_key

META = ("runs", "snapshots", "records")
Progress = Callable[[int, int], None]  # (files, bytes) just moved


@dataclass
class TransferReport:
    remote: str
    objects: int = 0
    bytes: int = 0
    meta: int = 0
    present: int = 0
    corrupt: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # untrusted keys or records, not used
    repaired: list[str] = field(default_factory=list)  # remote keys replaced by verified bytes

    def to_dict(self) -> dict:
        return {
            "remote": self.remote,
            "objects": self.objects,
            "bytes": self.bytes,
            "metadata": self.meta,
            "already_there": self.present,
            "corrupt": self.corrupt,
            "failed": self.failed,
            "refused": self.refused,
            "repaired": self.repaired,
        }


def target_paths(project: Project, targets: list[str]) -> dict[str, dict]:
    """The recorded paths (path -> lock entry) that `targets` need, for `repro pull TARGET`:
    a stage's cached outputs and the recorded paths it reads (tracked data, upstream
    outputs); a path's own entry, the recorded folder holding it, or the recorded paths inside
    it. A target that names nothing recorded is one sentence."""
    from repro.errors import NotFoundError
    from repro.pipeline.status import overlaps, recorded_paths

    lock = load_lock(project.lock_path)
    recorded = recorded_paths(lock)
    out: dict[str, dict] = {}
    for t in targets:
        entry = lock.stages.get(t)
        if entry is not None:
            outs = entry.get("outs") or {}
            out.update({p: d for p, d in outs.items() if d.get("cache", True)})
            for dep in entry.get("deps") or {}:
                out.update({p: d for p, d in recorded.items() if overlaps(p, dep)})
            continue
        rel = project.rel(t, "pull target") if os.path.isabs(t) else t.strip("/")
        hits = {p: d for p, d in recorded.items() if overlaps(p, rel)}
        if not hits:
            raise NotFoundError(
                f"{t}: no stage or recorded path of that name in repro.lock "
                "(give a stage name, a tracked data path or an output)."
            )
        out.update(hits)
    return out


def lock_roots(project: Project, targets: list[str] | None = None) -> list[tuple[str, bool]]:
    """(hash, is_dir) of what `repro.lock` references: outputs and data, or those of `targets`
    (stage names or paths)."""
    lock = load_lock(project.lock_path)
    roots = []
    for rel, d in lock.data.items():
        if not targets or rel in targets:
            roots.append((d["hash"], bool(d.get("isdir"))))
    for name, entry in lock.stages.items():
        for rel, d in (entry.get("outs") or {}).items():
            if d.get("cache", True) and (not targets or name in targets or rel in targets):
                roots.append((d["hash"], bool(d.get("isdir"))))
    return roots


def _keys(store: ObjectStore, folder: str) -> set[str]:
    return set(store.backend.list(folder))


def _valid_keys(keys: set[str], folder: str, report: TransferReport) -> set[str]:
    """The keys of a remote's listing that have the layout's shape. Any other key (`..` in it,
    a name that is no hash or run id) is refused: never joined to a local path, never read;
    each is reported once as a warning, and the rest of the transfer goes on."""
    good = set()
    for key in keys:
        try:
            good.add(safe_key(key, folder, f"remote '{report.remote}'"))
        except UntrustedInputError as exc:
            report.refused.append(exc.message)
    return good


def push(
    project: Project,
    remote: str | None = None,
    targets: list[str] | None = None,
    jobs: int = 8,
    progress: Progress | None = None,
    verify_remote: bool = False,
) -> TransferReport:
    """Upload what the remote lacks, never an object that fails verification (those are
    reported and the push fails after sending the rest). With `verify_remote`, read back the
    remote's copies of everything we hold and replace corrupt or missing ones."""
    name, rstore = open_remote(project, remote)
    local = project.cache
    report = TransferReport(name)
    with remote_errors(name, rstore.backend.url):
        want = local.closure(lock_roots(project, targets)) if targets else local.all_hashes()
        want = {h for h in want if local.has(h)}
        index = RemoteIndex(project, rstore.backend.url)
        known = index.keys()
        if want - known:  # something may be missing there: ask the remote itself
            have = retry(rstore.all_hashes)
            index.add(have)
        else:
            have = want
        todo = sorted(want - have)
        report.present = len(want & have)
        lb = local.local
        assert lb is not None
        # Never upload bytes that do not match their name: a damaged local object stays here.
        good = local.verified_set(todo)
        report.corrupt = [object_key(h) for h in todo if h not in good]
        todo = sorted(good)

        for batch in _batches(todo):
            pairs = [(lb.path(object_key(h)), object_key(h)) for h in batch]
            try:
                retry(lambda pairs=pairs: rstore.backend.put_files(pairs, jobs))
            except (OSError, ConnectionError):
                report.failed += batch
                continue
            index.add(batch)
            size = sum(os.path.getsize(p) for p, _ in pairs)
            report.objects += len(batch)
            report.bytes += size
            if progress:
                progress(len(batch), size)
        if report.failed:
            raise ReproError(
                f"push to remote '{name}': {len(report.failed)} objects failed "
                "to upload; run 'repro push' again to finish."
            )
        for folder in META:  # after the objects: a run entry never points at absent outputs
            mine = _keys(local, folder)
            if mine - known:
                theirs = retry(lambda folder=folder: _keys(rstore, folder))
                index.add(theirs)
            else:
                theirs = mine
            for key in sorted(mine - theirs):
                data = local.backend.read_bytes(key)
                if folder != "records" and not _meta_ok(key, data):
                    report.corrupt.append(key)  # a damaged snapshot or entry stays here
                    continue
                retry(lambda key=key, data=data: rstore.backend.write_bytes(key, data))
                index.add([key])
                report.meta += 1
        if verify_remote:
            from repro.maintenance import verify_remote as check_remote

            held = local.verified_set(want)
            report.repaired, left = check_remote(project, rstore, held, jobs)
            report.corrupt += [f"{k} (on the remote; no good copy here)" for k in left]
    if report.corrupt:
        raise CorruptObjectError(
            f"push to remote '{name}': {len(report.corrupt)} item(s) failed verification and "
            f"were not uploaded ({', '.join(report.corrupt[:3])}"
            + (", …" if len(report.corrupt) > 3 else "")
            + "); the rest was pushed. 'repro fsck --repair' fetches good copies; 'repro add' "
            "or 'repro run --force' of the good bytes also heals them."
        )
    return report


def _meta_ok(key: str, data: bytes) -> bool:
    from repro.maintenance import meta_ok

    return meta_ok(key, data)


class RemoteIndex:
    """What this machine knows a remote holds (object hashes and metadata keys), kept in the
    state db per remote URL, so a push with nothing new needs no listing of the remote. Only
    what was listed on the remote or uploaded to it enters; `repro gc` on the remote clears it.
    """

    def __init__(self, project: Project, url: str) -> None:
        self.state = project.state
        self.url = url
        self.state.query(
            "CREATE TABLE IF NOT EXISTS remote_index (url TEXT, key TEXT, PRIMARY KEY (url, key))"
            " WITHOUT ROWID"
        )

    def keys(self) -> set[str]:
        return {
            r[0] for r in self.state.query("SELECT key FROM remote_index WHERE url=?", (self.url,))
        }

    def add(self, keys: Iterable[str]) -> None:
        self.state.execute_many(
            "INSERT OR IGNORE INTO remote_index VALUES (?, ?)", [(self.url, k) for k in keys]
        )

    def clear(self) -> None:
        self.state.execute_many("DELETE FROM remote_index WHERE url=?", [(self.url,)])


BATCH = 512


def _batches(items: list[str], n: int = BATCH) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _download(
    project: Project,
    rstore: ObjectStore,
    batch: list[str],
    name: str,
    jobs: int,
    report: TransferReport,
    got: set[str],
    progress: Progress | None,
) -> None:
    """Fetch a batch of objects to temporary files, verify each against its hash, and move the
    good ones into the local cache; a corrupt one is reported by key and never used."""
    lb = project.cache.local
    assert lb is not None
    tmps = {h: lb.tmp_path() for h in batch}
    rows = []
    try:
        found = retry(
            lambda: rstore.backend.get_files([(object_key(h), tmps[h]) for h in batch], jobs)
        )
        for h, there in zip(batch, found, strict=True):
            if not there:
                continue  # the remote lacks it: the caller reports what is still missing
            tmp = tmps[h]
            checked = now_ns()
            if hash_file(tmp) != h:
                report.corrupt.append(
                    f"remote '{name}': object {object_key(h)} is corrupted (its content does "
                    "not match its hash); it was not used."
                )
                continue
            size = os.path.getsize(tmp)
            os.chmod(tmp, read_only_mode(False))
            dst = lb.ensure_parent(object_key(h))
            os.replace(tmp, dst)
            rows.append((dst, StatKey.of(os.stat(dst)), h, checked))
            got.add(h)
            report.objects += 1
            report.bytes += size
            if progress:
                progress(1, size)
    finally:
        project.state.put_many(rows)
        for tmp in tmps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def fetch_objects(
    project: Project,
    remote: str | None,
    hashes: set[str],
    jobs: int = 8,
    progress: Progress | None = None,
    report: TransferReport | None = None,
) -> set[str]:
    """Fetch `hashes` (and, for trees, their files) that the local cache lacks. Returns the
    hashes now present locally."""
    name, rstore = open_remote(project, remote)
    report = report or TransferReport(name)
    local = project.cache
    got: set[str] = local.verified_set(hashes)  # a corrupt local object is fetched over
    with remote_errors(name, rstore.backend.url):
        # No listing first: asking for each object and counting the misses costs one request
        # per object either way, and listing a large remote costs many more.
        first = sorted(hashes - got)

        for batch in _batches(first):
            _download(project, rstore, batch, name, jobs, report, got, progress)
        # Trees fetched (or present) may name files we lack.
        inner: set[str] = set()
        for h in hashes & got:
            with contextlib.suppress(ReproError):
                inner.update(e.hash for e in local.get_tree(h).entries)
        second = sorted(inner - local.verified_set(inner))
        for batch in _batches(second):
            _download(project, rstore, batch, name, jobs, report, got, progress)
        got |= local.verified_set(inner)
    if report.corrupt:
        raise CorruptObjectError(
            report.corrupt[0]
            + (f" ({len(report.corrupt) - 1} more)" if len(report.corrupt) > 1 else "")
        )
    return got


def pull(
    project: Project,
    remote: str | None = None,
    targets: list[str] | None = None,
    jobs: int = 8,
    progress: Progress | None = None,
    checkout: bool = True,
    wait: float = 0.0,
) -> TransferReport:
    """Fetch the metadata the local cache lacks and the objects `repro.lock` needs, then put
    the lock's outputs and data into the workspace; under the project lock (waiting up to
    `wait` seconds for it): a gc never removes what a pull is fetching."""
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot, wait):
        return _pull(project, remote, targets, jobs, progress, checkout)


def _pull(
    project: Project,
    remote: str | None,
    targets: list[str] | None,
    jobs: int,
    progress: Progress | None,
    checkout: bool,
) -> TransferReport:
    chosen = target_paths(project, targets) if targets else None  # a bad target changes nothing
    name, rstore = open_remote(project, remote)
    report = TransferReport(name)
    local = project.cache
    with remote_errors(name, rstore.backend.url):
        for folder in META:
            theirs = _valid_keys(retry(lambda folder=folder: _keys(rstore, folder)), folder, report)
            mine = _keys(local, folder)
            for key in sorted(theirs - mine):
                try:
                    data = retry(lambda key=key: rstore.backend.read_bytes(key))
                except UntrustedInputError as exc:  # e.g. a symlinked key on a shared folder
                    report.refused.append(exc.message)
                    continue
                if folder != "records" and not _meta_ok(key, data):
                    report.refused.append(
                        f"remote '{name}': {key} does not match its name or names unsafe "
                        "paths; skipped"
                    )
                    continue
                local.backend.write_bytes(key, data)
                report.meta += 1
        if chosen is not None:
            roots = [(d["hash"], bool(d.get("isdir"))) for d in chosen.values()]
        else:
            roots = lock_roots(project)
        # Trees first (they name the files), then everything they reach.
        fetch_objects(project, name, {h for h, _ in roots}, jobs, progress, report)
    if not checkout:
        return report
    if chosen is None:
        from repro.data import checkout_lock

        checkout_lock(project)
        return report
    _checkout_paths(project, chosen, name)
    return report


def _checkout_paths(project: Project, chosen: dict[str, dict], remote: str) -> None:
    """Put the pulled targets (and only them) in the workspace; one sentence naming the
    path when the remote lacked some of their content."""
    from repro.data import ensure_local
    from repro.gitignore import ensure_ignored
    from repro.workspace import CheckoutReport, PathHash, check_out

    ensure_local(project, chosen, remote)
    report = CheckoutReport()
    for rel, d in sorted(chosen.items()):
        check_out(project, rel, PathHash.from_dict(d), report=report)
    ensure_ignored(project.root, sorted(chosen))


def fetch_run(project: Project, signature: str, remote: str | None = None):
    """The remote run cache: the entry for `signature` with all its outputs fetched, or None.
    A remote that cannot be reached raises RemoteError after one quick attempt (the caller
    runs the stage locally instead)."""
    from repro.pipeline import runcache

    name, rstore = open_remote(project, remote, quick=True)
    with remote_errors(name, rstore.backend.url):
        entry = runcache.get_entry(rstore.backend, signature, f"remote '{name}'")
        if entry is None:
            return None
        roots = {h.hash for h in entry.outs.values()}
        got = fetch_objects(project, name, roots)
        for h in entry.outs.values():
            if h.hash not in got:
                return None
            if h.isdir:
                inner = {e.hash for e in project.cache.get_tree(h.hash).entries}
                if project.cache.verified_set(inner) != inner:
                    return None
        project.cache.backend.write_bytes(runcache.runcache_key(signature), entry.encode())
    return entry
