"""Fetching objects from a remote into the local cache, each verified against its hash.

The lowest part of talking to a remote that moves content: `repro.data` (restoring recorded
paths), `repro.snapshots` (a snapshot's objects) and `repro.transfer` (pull, push) build on it,
so none of them imports another sideways. What a remote holds is remembered in the state db
(`RemoteIndex`), so a push with nothing new needs no listing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from repro.errors import CorruptObjectError, ReproError
from repro.hashing.filehash import hash_file
from repro.hashing.state import StatKey, now_ns
from repro.progress import start_phase
from repro.project import Project
from repro.remote import default_remote_name, open_remote, remote_errors, retry
from repro.store.links import read_only_mode
from repro.store.objects import ObjectStore, object_key

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
    sizes: dict[str, int] | None = None,
) -> set[str]:
    """Fetch `hashes` (and, for trees, their files) that the local cache lacks. Returns the
    hashes now present locally.

    `sizes` (the byte sizes of those of `hashes` that are files, from the lock) lets a progress
    display know the download's totals before its first byte: trees (small, metadata) are
    fetched first, unshown; then a "download" phase counts every file object, with the
    sizes the lock and the trees give. Without it, each object is counted as it comes."""
    name, rstore = open_remote(project, remote)
    report = report or TransferReport(name)
    local = project.cache
    got: set[str] = local.verified_set(hashes)  # a corrupt local object is fetched over
    known = dict(sizes or {}) if progress is not None and sizes is not None else None
    with remote_errors(name, rstore.backend.url):
        # No listing first: asking for each object and counting the misses costs one request
        # per object either way, and listing a large remote costs many more.
        first = sorted(hashes - got)
        shown = progress if known is None else None  # with totals: trees go unshown
        later = {h for h in first if h in known} if known is not None else set()
        for batch in _batches([h for h in first if h not in later]):
            _download(project, rstore, batch, name, jobs, report, got, shown)
        # Trees fetched (or present) may name files we lack.
        inner: set[str] = set()
        for h in hashes & got:
            with contextlib.suppress(ReproError):
                entries = local.get_tree(h).entries
                inner.update(e.hash for e in entries)
                if known is not None:
                    known.update((e.hash, e.size) for e in entries)
        second = sorted((inner - local.verified_set(inner)) | later)
        if known is not None:
            start_phase(progress, "download", len(second), sum(known.get(h, 0) for h in second))
        for batch in _batches(second):
            _download(project, rstore, batch, name, jobs, report, got, progress)
        got |= local.verified_set(inner)
    if report.corrupt:
        raise CorruptObjectError(
            report.corrupt[0]
            + (f" ({len(report.corrupt) - 1} more)" if len(report.corrupt) > 1 else "")
        )
    return got


def fetch_missing(project: Project, missing: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Fetch `(path, hash)` objects from the default remote; return those still missing."""
    name = default_remote_name(project)
    if not name or not missing:
        return missing
    got = fetch_objects(project, name, {h for _, h in missing})
    return [(p, h) for p, h in missing if h not in got]


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
