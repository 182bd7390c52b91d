"""Fetching objects from a remote into the local cache, each verified against its hash.

The lowest part of talking to a remote that moves content: `repro.data` (restoring recorded
paths), `repro.snapshots` (a snapshot's objects) and `repro.transfer` (pull, push) build on it,
so none of them imports another sideways. What a remote holds is remembered in the state db
(`RemoteIndex`), so a push with nothing new needs no listing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from repro.errors import CorruptObjectError, ReproError
from repro.progress import start_phase
from repro.project import Project
from repro.remote import default_remote_name, open_remote, remote_errors, retry
from repro.store.objects import ObjectStore
from repro.store.sync import Inventory, Meter, inventory
from repro.store.sync import fetch_objects as sync_fetch

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
    requests: int = 0  # requests made to the remote (listings, index reads, puts, gets)
    wire_bytes: int = 0  # bytes that crossed the wire either way (packs, ranges, manifests)
    packs: int = 0  # packs uploaded

    def absorb(self, meter: Meter) -> None:
        """Add what `meter` counted (requests, packs, bytes both ways) to this report."""
        self.requests += meter.requests
        self.packs += meter.packs
        self.wire_bytes += meter.bytes_down + meter.bytes_up

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
            "requests": self.requests,
            "wire_bytes": self.wire_bytes,
            "packs": self.packs,
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
        """Remember `keys`, 20,000 rows a transaction (memory flat for a million keys)."""
        rows: list[tuple[str, str]] = []
        for k in keys:
            rows.append((self.url, k))
            if len(rows) >= 20_000:
                self._insert(rows)
                rows = []
        if rows:
            self._insert(rows)

    def _insert(self, rows: list[tuple[str, str]]) -> None:
        self.state.execute_many("INSERT OR IGNORE INTO remote_index VALUES (?, ?)", rows)

    def clear(self) -> None:
        self.state.execute_many("DELETE FROM remote_index WHERE url=?", [(self.url,)])


BATCH = 512


def _batches(items: list[str], n: int = BATCH) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def remote_inventory(
    rstore: ObjectStore, report: TransferReport, meter: Meter, list_loose: bool = True
) -> Inventory:
    """What the remote holds, in a handful of requests (`repro.store.sync.inventory`); a
    damaged pack index there is one warning in `report.refused` (its objects count as
    absent)."""
    inv = inventory(rstore, meter, retry, list_loose)
    report.refused += inv.refused
    return inv


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

    What the remote holds comes from its pack indexes and two listings (no probe per object);
    packed objects come in whole packs or merged ranged reads, chunked ones are assembled and
    verified whole (`repro.store.sync`). `sizes` (the byte sizes of those of `hashes` that are
    files, from the lock) lets a progress display know the download's totals before its
    first byte: trees (small, metadata) are fetched first, unshown; then a "download" phase
    counts every file object, with the sizes the lock and the trees give."""
    name, rstore = open_remote(project, remote)
    report = report or TransferReport(name)
    local = project.cache
    known = dict(sizes or {}) if progress is not None and sizes is not None else None
    meter = Meter()
    got: set[str] = set()
    try:
        with remote_errors(name, rstore.backend.url):
            inv = remote_inventory(rstore, report, meter, list_loose=False)
            shown = progress if known is None else None  # with totals: trees go unshown
            later = set(hashes) & set(known) if known is not None else set()
            got |= _fetch(local, rstore, set(hashes) - later, inv, meter, jobs, shown, report)
            # Trees fetched (or present) may name files we lack.
            inner: set[str] = set()
            for h in hashes & got:
                with contextlib.suppress(ReproError):
                    entries = local.get_tree(h).entries
                    inner.update(e.hash for e in entries)
                    if known is not None:
                        known.update((e.hash, e.size) for e in entries)
            second = inner | later
            if known is not None:
                todo = second - local.verified_set(second)
                start_phase(progress, "download", len(todo), sum(known.get(h, 0) for h in todo))
            got |= _fetch(local, rstore, second, inv, meter, jobs, progress, report)
            lacking = len((set(hashes) | second) - got)
            if lacking and inv.refused and not report.corrupt:
                report.corrupt.append(
                    f"{inv.refused[0].rstrip('.')}; {lacking} object(s) needed here could "
                    "not be fetched."
                )
    finally:
        report.absorb(meter)
    if report.corrupt:
        raise CorruptObjectError(
            report.corrupt[0]
            + (f" ({len(report.corrupt) - 1} more)" if len(report.corrupt) > 1 else "")
        )
    return got


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
    """Fetch a batch of objects into the local cache, each verified (packed, loose or chunked
    on the remote); a corrupt copy is reported in `report.corrupt` and never used. (fsck's
    repair calls this.)"""
    meter = Meter()
    try:
        inv = remote_inventory(rstore, report, meter, list_loose=False)
        got |= _fetch(project.cache, rstore, set(batch), inv, meter, jobs, progress, report)
    finally:
        report.absorb(meter)


def _fetch(
    local: ObjectStore,
    rstore: ObjectStore,
    hashes: set[str],
    inv: Inventory,
    meter: Meter,
    jobs: int,
    progress: Progress | None,
    report: TransferReport,
) -> set[str]:
    res = sync_fetch(local, rstore, hashes, inv, meter, jobs=jobs, retry=retry, progress=progress)
    report.objects += res.objects
    report.bytes += res.bytes
    report.corrupt += res.corrupt
    return res.got


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
