"""Rewrite packs for gc and fsck: drop dead objects, set damaged packs aside, clear orphans.

Packs are immutable, so a pack whose objects died is never edited: gc writes the pack's live
objects into a new pack, publishes it (pack, then index), and only then unpublishes the old
pack (index, then pack). At every instant each live object is findable in the old pack or the
new one; a kill leaves at worst a duplicate (the next gc drops it: its live objects are
"covered" by a pack that stays) or an orphan (a pack without index, removed by gc).

Everything here works on a `Backend`, so the local cache and every remote share one way to do
it; the caller passes a function giving local temporary paths (packs are built locally, then
renamed into place or uploaded, see `repro.store.packstore.publish`).

Objects copied into a new pack are read through `PackReader` and verified: a copy that does not
hash to its name is never carried forward, and is reported as `packs/<id>.pack:<hash>`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field

from repro.store.backend import Backend, LocalBackend
from repro.store.packs import (
    HEADER_SIZE,
    Location,
    PackIndex,
    PackWriter,
    index_key,
    index_size,
    pack_key,
)
from repro.store.packstore import PackReader, list_packs, load_indexes, publish, unpublish

# A pack is rewritten when less than this fraction of its object bytes is still live: half a
# pack of garbage is worth one rewrite (each object is copied at most ~once per halving, so the
# bytes copied stay within the bytes freed), less is left for a later gc.
LIVE_FRACTION = 0.5
# A pack smaller than this is rewritten as soon as it holds a dead object: copying it costs
# less than keeping garbage a user asked gc to drop (the threshold is for the big packs).
SMALL_PACK = 4 << 20
# Local orphans (a pack without index, left by a killed publish) are removed only when this
# old: gc holds the project lock, but a fetch into the cache may publish without it.
LOCAL_ORPHAN_GRACE = 600.0
CORRUPT = "corrupt"


def damaged_key(pack_id: str, h: str) -> str:
    """How reports name one damaged copy of object `h` inside a pack."""
    return f"{pack_key(pack_id)}:{h}"


def parse_damaged_key(key: str) -> tuple[str, str] | None:
    """(pack id, hash) of a `damaged_key`, or None for any other key."""
    head, sep, h = key.rpartition(":")
    if not sep or not head.endswith(".pack") or not head.startswith("packs/"):
        return None
    return head[len("packs/") : -len(".pack")], h


@dataclass
class RepackReport:
    """What a repack did (or, dry, would do)."""

    packs: int = 0  # well-indexed packs looked at
    packs_removed: int = 0  # every object dead (or held elsewhere): unpublished
    packs_rewritten: int = 0  # live objects copied to a new pack, old one unpublished
    packs_written: int = 0  # new packs published
    objects_copied: int = 0
    bytes_freed: int = 0  # pack and index bytes gone, net of the new packs
    orphans_removed: list[str] = field(default_factory=list)  # keys
    corrupt: list[str] = field(default_factory=list)  # damaged_key of copies that fail
    kept_damaged: list[str] = field(default_factory=list)  # pack keys left (or set aside)
    set_aside: list[str] = field(default_factory=list)  # local paths under corrupt/
    bad_indexes: list[str] = field(default_factory=list)
    removed_ids: set[str] = field(default_factory=set)  # packs gone (or going, dry)
    set_aside_ids: set[str] = field(default_factory=set)  # of those, moved to corrupt/packs/
    remaining: set[str] = field(default_factory=set)  # hashes still packed afterwards
    dropped: set[str] = field(default_factory=set)  # hashes no pack holds any more
    written: list[PackIndex] = field(default_factory=list)  # the new packs' indexes


def key_age(backend: Backend, key: str, now: float | None = None) -> float:
    """Seconds since `key` was last written; infinity when the store cannot say."""
    now = time.time() if now is None else now
    if isinstance(backend, LocalBackend):
        try:
            return now - os.lstat(backend.path(key)).st_mtime
        except OSError:
            return float("inf")
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


def find_orphans(backend: Backend, grace: float) -> list[str]:
    """Keys of packs without an index and indexes without a pack, older than `grace` seconds.
    (A publish writes the pack first: a young pack without index may be one being published.)"""
    indexed, packed = list_packs(backend)
    keys = [pack_key(p) for p in sorted(packed - indexed)]
    keys += [index_key(p) for p in sorted(indexed - packed)]
    if grace <= 0:
        return keys
    now = time.time()
    return [k for k in keys if key_age(backend, k, now) >= grace]


def remove_orphans(backend: Backend, grace: float, dry_run: bool = False) -> list[str]:
    """Remove (unless `dry_run`) the orphans `find_orphans` names; returns their keys."""
    keys = find_orphans(backend, grace)
    if not dry_run:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                backend.delete(key)
    return keys


class _Out:
    """New packs being written: rolls over to another pack when one is full, publishes each
    as it closes, and remembers what it published."""

    def __init__(self, backend: Backend, tmp_path: Callable[[], str]) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.writer: PackWriter | None = None
        self.published: list[PackIndex] = []

    def add(self, h: str, data: bytes) -> None:
        if self.writer is None:
            self.writer = PackWriter(self.tmp_path())
        self.writer.add(h, data)
        if self.writer.full:
            self.close()

    def close(self) -> None:
        w, self.writer = self.writer, None
        if w is None or not len(w):
            if w is not None:
                w.abort()
            return
        try:
            pack_id, index = w.finish()
            publish(self.backend, w.path, pack_id, index)
        except BaseException:
            w.abort()
            raise
        self.published.append(index)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


def set_aside_pack(backend: LocalBackend, pack_id: str) -> str:
    """Move a local pack (index first: its objects stop being found) to `corrupt/packs/`, out
    of every lookup, kept for the user to inspect. Returns the pack's new path."""
    out = ""
    for key in (index_key(pack_id), pack_key(pack_id)):
        dst = backend.ensure_parent(f"{CORRUPT}/{key}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(backend.path(key), dst)
            out = dst
    return out


def repack(
    backend: Backend,
    live: Container[str],
    source: str,
    tmp_path: Callable[[], str],
    threshold: float = LIVE_FRACTION,
    dry_run: bool = False,
    orphan_grace: float = 0.0,
    pack_grace: float = 0.0,
) -> RepackReport:
    """Drop dead objects from the packs on `backend`.

    A pack with no live object (or whose live objects a pack that stays also holds) is
    unpublished; one whose live bytes are under `threshold` of its object bytes has its live
    objects copied, verified, into new packs, published before the old pack goes. A pack
    holding a live object whose copy fails verification (and that no other copy replaced) is
    never removed: locally it is moved to `corrupt/packs/`, elsewhere left in place; both are
    reported. Orphans older than `orphan_grace` seconds are removed first; packs younger than
    `pack_grace` seconds stay as they are (on a shared remote another machine may have pushed
    them before the snapshot that needs them)."""
    report = RepackReport()
    report.orphans_removed = remove_orphans(backend, orphan_grace, dry_run)
    indexes = load_indexes(backend, source, report.bad_indexes)
    report.packs = len(indexes)
    keep, todo = _plan(indexes, live, threshold)
    if pack_grace > 0 and todo:
        now = time.time()
        young = {i.pack_id for i in todo if key_age(backend, pack_key(i.pack_id), now) < pack_grace}
        keep += [i for i in todo if i.pack_id in young]
        todo = [i for i in todo if i.pack_id not in young]
    covered: set[str] = set()
    for idx in keep:
        covered.update(h for h, _, _ in idx.entries if h in live)
    report.remaining = {h for idx in keep for h, _, _ in idx.entries}
    wanted: dict[str, list[tuple[str, Location]]] = {}
    for idx in todo:
        need = [
            (h, Location(idx.pack_id, off, n))
            for h, off, n in idx.entries
            if h in live and h not in covered
        ]
        covered.update(h for h, _ in need)
        wanted[idx.pack_id] = need
    if dry_run:
        _dry(report, todo, wanted)
        _dropped(report, todo, live)
        return report
    failed = _copy(backend, todo, wanted, tmp_path, report)
    copied = report.remaining
    written = {i.pack_id for i in report.written}
    for idx in todo:
        pid = idx.pack_id
        if pid in written:  # the very same bytes again (same id): published, so it stays
            continue
        lost = {h for h in failed.get(pid, ()) if h not in copied}
        if lost:
            report.kept_damaged.append(pack_key(pid))
            if isinstance(backend, LocalBackend):
                report.set_aside.append(set_aside_pack(backend, pid))
                report.removed_ids.add(pid)
                report.set_aside_ids.add(pid)
            else:
                report.remaining.update(h for h, _, _ in idx.entries)
            continue
        unpublish(backend, pid)
        report.removed_ids.add(pid)
        report.bytes_freed += idx.pack_size + index_size(len(idx))
        if wanted[pid]:
            report.packs_rewritten += 1
        else:
            report.packs_removed += 1
    _dropped(report, todo, live)
    return report


def _dropped(report: RepackReport, todo: list[PackIndex], live: Container[str]) -> None:
    """The dead objects no pack holds any more (those of the packs removed)."""
    for idx in todo:
        # A pack set aside (a live copy in it is damaged) keeps all its bytes under corrupt/:
        # its objects are not counted as removed.
        if idx.pack_id in report.removed_ids and idx.pack_id not in report.set_aside_ids:
            report.dropped.update(
                h for h, _, _ in idx.entries if h not in report.remaining and h not in live
            )


def _plan(
    indexes: list[PackIndex], live: Container[str], threshold: float
) -> tuple[list[PackIndex], list[PackIndex]]:
    """(packs that stay as they are, packs to rewrite or drop)."""
    keep: list[PackIndex] = []
    todo: list[PackIndex] = []
    for idx in indexes:
        total = max(idx.pack_size - HEADER_SIZE, 1)
        n_live = sum(1 for h, _, _ in idx.entries if h in live)
        live_bytes = sum(n for h, _, n in idx.entries if h in live)
        sparse = live_bytes / total < threshold
        small_with_dead = idx.pack_size < SMALL_PACK and n_live < len(idx.entries)
        (todo if not n_live or sparse or small_with_dead else keep).append(idx)
    return keep, todo


def _dry(
    report: RepackReport, todo: list[PackIndex], wanted: dict[str, list[tuple[str, Location]]]
) -> None:
    """What a repack would do: the bytes freed are estimated from the live bytes it would copy."""
    for idx in todo:
        need = wanted[idx.pack_id]
        report.removed_ids.add(idx.pack_id)
        report.bytes_freed += idx.pack_size + index_size(len(idx))
        report.bytes_freed -= sum(loc.length for _, loc in need) + (
            index_size(len(need)) if need else 0
        )
        report.objects_copied += len(need)
        report.remaining.update(h for h, _ in need)
        if need:
            report.packs_rewritten += 1
        else:
            report.packs_removed += 1


def _copy(
    backend: Backend,
    todo: list[PackIndex],
    wanted: dict[str, list[tuple[str, Location]]],
    tmp_path: Callable[[], str],
    report: RepackReport,
) -> dict[str, set[str]]:
    """Copy the wanted objects into new packs, all published before this returns; returns the
    hashes whose copy failed verification, by pack."""
    failed: dict[str, set[str]] = {}
    out = _Out(backend, tmp_path)
    try:
        with PackReader(backend) as reader:
            for idx in todo:
                for h, data in reader.read_many(wanted[idx.pack_id]):
                    if data is None:
                        failed.setdefault(idx.pack_id, set()).add(h)
                        report.corrupt.append(damaged_key(idx.pack_id, h))
                        continue
                    out.add(h, data)
                    report.objects_copied += 1
        out.close()
    except BaseException:
        out.abort()
        raise
    report.written = out.published
    for idx in out.published:
        report.packs_written += 1
        report.bytes_freed -= idx.pack_size + index_size(len(idx))
        report.remaining.update(h for h, _, _ in idx.entries)
    return failed


@dataclass
class PackCheck:
    """What reading back every packed object found."""

    checked: int = 0
    hashes: set[str] = field(default_factory=set)  # every packed object (any copy)
    good: set[str] = field(default_factory=set)  # those with at least one copy that verifies
    damaged: dict[str, set[str]] = field(default_factory=dict)  # pack id -> failing hashes
    bad_indexes: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def damaged_keys(self) -> list[str]:
        return sorted(damaged_key(p, h) for p, hs in self.damaged.items() for h in hs)


def check_packs(backend: Backend, source: str) -> PackCheck:
    """Decode every index and read back every packed object (one open file per pack locally,
    ranged reads remotely), each verified against its hash."""
    check = PackCheck()
    check.orphans = find_orphans(backend, 0.0)
    indexes = load_indexes(backend, source, check.bad_indexes)
    with PackReader(backend) as reader:
        for idx in indexes:
            items = [(h, Location(idx.pack_id, off, n)) for h, off, n in idx.entries]
            for h, data in reader.read_many(items):
                check.checked += 1
                check.hashes.add(h)
                if data is None:
                    check.damaged.setdefault(idx.pack_id, set()).add(h)
                else:
                    check.good.add(h)
    return check


def rewrite_without(
    backend: Backend, pack_id: str, drop: set[str], source: str, tmp_path: Callable[[], str]
) -> tuple[list[str], str]:
    """Rewrite pack `pack_id` without the objects `drop` (damaged copies): every other object
    that verifies goes into a new pack, published first; then the old pack leaves every lookup
    (locally moved to `corrupt/packs/`, kept for inspection; elsewhere unpublished, as a
    damaged loose object there is overwritten). Returns (hashes of further copies that failed
    verification, the old pack's new local path or "")."""
    from repro.store.packstore import read_index

    idx = read_index(backend, pack_id, source)
    items = [(h, Location(pack_id, off, n)) for h, off, n in idx.entries if h not in drop]
    failed: list[str] = []
    out = _Out(backend, tmp_path)
    try:
        with PackReader(backend) as reader:
            for h, data in reader.read_many(items):
                if data is None:
                    failed.append(h)
                else:
                    out.add(h, data)
        out.close()
    except BaseException:
        out.abort()
        raise
    if isinstance(backend, LocalBackend):
        return failed, set_aside_pack(backend, pack_id)
    unpublish(backend, pack_id)
    return failed, ""


def loose_sizes(backend: Backend) -> dict[str, int]:
    """Hash -> size of every loose object on `backend`, from one listing (with details)."""
    from repro.safety import is_hash
    from repro.store.layout import OBJECTS

    out: dict[str, int] = {}
    fs = getattr(backend, "fs", None)
    if isinstance(backend, LocalBackend) or fs is None:
        for key in backend.list(OBJECTS):
            with contextlib.suppress(OSError):
                out[key] = backend.size(key)
    else:
        with contextlib.suppress(FileNotFoundError):
            found = fs.find(backend._p(OBJECTS), detail=True)  # type: ignore[attr-defined]
            root = backend.root  # type: ignore[attr-defined]
            for path, info in found.items():
                key = path[len(root) + 1 :] if root and path.startswith(root) else path
                out[key] = int(info.get("size") or 0)
    sizes: dict[str, int] = {}
    for key, size in out.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == OBJECTS and is_hash(parts[1] + parts[2]):
            sizes[parts[1] + parts[2]] = size
    return sizes


def fold_loose(
    backend: Backend,
    hashes: Iterable[str],
    tmp_path: Callable[[], str],
    jobs: int = 8,
    batch: int = 500,
) -> int:
    """Fold the small loose objects `hashes` of a remote into packs: each downloaded and
    verified, packed, the pack published, and only then the loose copies deleted (so each
    object is findable at every instant). Objects of PACK_MAX_OBJECT bytes or more stay loose;
    one that fails verification is left where it is (fsck reports it). Returns the count."""
    from repro.canonical import hash_bytes
    from repro.store.layout import object_key
    from repro.store.packs import PACK_MAX_OBJECT
    from repro.store.packstore import load_packset

    sizes = loose_sizes(backend)
    todo = sorted(h for h in set(hashes) if sizes.get(h, PACK_MAX_OBJECT) < PACK_MAX_OBJECT)
    packset = load_packset(backend, "remote")
    with PackReader(backend) as reader:  # packed already (a fold killed before its deletes)
        dups = {h for h in todo if h in packset and reader.read(h, packset.locate(h)) is not None}
    for h in dups:
        backend.delete(object_key(h))
    todo = [h for h in todo if h not in dups]
    out = _Out(backend, tmp_path)
    done = 0
    folded = 0

    def drop_published() -> int:
        nonlocal done
        n = 0
        for idx in out.published[done:]:
            for h, _, _ in idx.entries:
                with contextlib.suppress(FileNotFoundError):
                    backend.delete(object_key(h))
                n += 1
        done = len(out.published)
        return n

    try:
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            tmps = {h: tmp_path() for h in part}
            try:
                found = backend.get_files([(object_key(h), tmps[h]) for h in part], jobs)
                for h, there in zip(part, found, strict=True):
                    if not there:
                        continue
                    with open(tmps[h], "rb") as f:
                        data = f.read()
                    if hash_bytes(data) == h:
                        out.add(h, data)
            finally:
                for tmp in tmps.values():
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
            folded += drop_published()
        out.close()
    except BaseException:
        out.abort()
        raise
    return folded + drop_published()


def manifest_hashes(backend: Backend) -> set[str]:
    """The objects stored chunked on `backend` (one listing of `manifests/`)."""
    from repro.store.chunks import MANIFESTS, manifest_hash_of_key

    try:
        keys = list(backend.list(MANIFESTS))
    except FileNotFoundError:
        return set()
    return {h for k in keys if (h := manifest_hash_of_key(k)) is not None}


def read_manifest(backend: Backend, h: str, source: str):
    """The checked manifest of chunked object `h`, or None when absent or unreadable (read
    with `chunks.read_manifest`'s bound: a hostile manifest of gigabytes is not read whole)."""
    from repro.errors import NewerFormatError, UntrustedInputError
    from repro.store.chunks import read_manifest as read_bounded

    try:
        return read_bounded(backend, h, source)[0]
    except (FileNotFoundError, UntrustedInputError, NewerFormatError):
        return None


def read_chunked(backend: Backend, h: str, source: str) -> bytes | None:
    """The verified bytes of chunked object `h`, assembled from its chunks (packed or loose);
    None when any part is missing or the whole does not hash to `h`. For small chunked objects
    (a large tree), not for gigabytes."""
    from repro.canonical import hash_bytes

    parts: list[bytes] = []
    for data in _chunks_of(backend, h, source):
        if data is None:
            return None
        parts.append(data)
    blob = b"".join(parts)
    return blob if hash_bytes(blob) == h else None


def verify_chunked(backend: Backend, h: str, source: str, packset=None) -> bool:
    """Whether chunked object `h` reads back whole: its manifest checks out, every chunk
    (packed: a ranged read; loose: one read) hashes to its name, and their concatenation to
    `h`. One chunk in memory at a time."""
    from repro.canonical import content_hasher

    whole = content_hasher()
    for data in _chunks_of(backend, h, source, packset):
        if data is None:
            return False
        whole.update(data)
    return whole.hexdigest() == h


def _chunks_of(backend: Backend, h: str, source: str, packset=None) -> Iterator[bytes | None]:
    """The chunks of chunked object `h` in order, each verified against its name and the
    length its manifest gives (packed: a ranged read; loose: one read of at most that length
    plus one byte); None once a part is missing, damaged, or the manifest is unreadable (and
    nothing after it)."""
    from repro.canonical import hash_bytes
    from repro.store.layout import object_key
    from repro.store.packstore import load_packset

    m = read_manifest(backend, h, source)
    if m is None:
        yield None
        return
    packset = load_packset(backend, source) if packset is None else packset
    with PackReader(backend) as reader:
        for ch, n in m.chunks:
            locs = packset.locate(ch)
            data = reader.read(ch, locs) if locs else None
            if data is None:
                try:
                    data = backend.read_range(object_key(ch), 0, n + 1)
                except FileNotFoundError:
                    data = b""
                if hash_bytes(data) != ch:
                    yield None
                    return
            if len(data) != n:
                yield None
                return
            yield data
