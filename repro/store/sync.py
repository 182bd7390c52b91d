"""Moving objects between a local store and a remote, in packs, loose, or as chunks.

Why: one request per object makes 20,000 small files 20,000 requests each way. Here:

- **What a remote holds** (`inventory`) comes from a handful of requests: one listing of
  `packs/` and one read per pack index (indexes are immutable: read once per process), one
  listing of `objects/` (loose objects: large ones, and everything an older repro pushed) and
  one of `manifests/` (chunked objects). Nothing is probed per object. An index that fails its
  checks counts as absent: its objects are sent again, never assumed present.
- **Push** (`push_objects`): small objects the remote lacks go into packs of ~PACK_TARGET,
  built in a local temporary file and published (pack, then index), several uploads at once;
  objects of CHUNK_MIN and more go as content-defined chunks (`repro.store.chunks`) plus a
  manifest written after its chunks; the rest go loose. A handful of small objects (fewer than
  PACK_MIN_OBJECTS) go loose too: a pack and its index would be more requests, and many tiny
  packs would make every later inventory slower.
- **Fetch** (`fetch_objects`): a packed object comes from a whole-pack download when most of
  that pack is wanted (`ObjectStore.import_pack`), else from ranged reads grouped per pack
  (neighbours merged); a chunked object is assembled streaming into a temporary file (memory
  stays flat) and verified whole before it enters the cache; a loose one is downloaded and
  verified. Everything read from a remote is untrusted: a damaged copy is refused with one
  sentence naming the remote and key, and nothing corrupt lands in the cache. A packed copy
  that fails is retried from another pack's copy, then from a loose copy (what a repair or
  `push --verify-remote` uploads over a damaged pack) before it is reported.
- **A worker** pushing once per stage takes its inventory once per process
  (`shared_inventory`); **a remote gc** keeps the chunks of live chunked objects and drops
  dead manifests (`manifest_liveness`).

Requests and bytes are counted on a `Meter`, which push/pull report (`--json`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from repro.canonical import content_hasher, hash_bytes
from repro.errors import NewerFormatError, UntrustedInputError
from repro.hashing.filehash import hash_file
from repro.hashing.state import StatKey, now_ns
from repro.safety import is_hash
from repro.store.backend import Backend, LocalBackend
from repro.store.chunks import (
    CHUNK_MIN,
    MANIFESTS,
    Manifest,
    cut_file,
    manifest_hash_of_key,
    manifest_key,
    read_manifest,
)
from repro.store.layout import object_key
from repro.store.links import read_only_mode
from repro.store.objects import ObjectStore
from repro.store.packs import (
    PACK_MAX_OBJECT,
    PACK_TARGET,
    PACKS,
    Location,
    PackIndex,
    PackSet,
    PackWriter,
    index_key,
    index_size,
    pack_id_of_key,
    pack_key,
)
from repro.store.packstore import PackReader, publish, read_index

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (objects, bytes) just moved
Retry = Callable[[Callable[[], T]], T]

# Fewer small objects than this go loose (see the module's docstring).
PACK_MIN_OBJECTS = 8
# A pack is downloaded whole when at least this fraction of its bytes is wanted.
WHOLE_PACK_FRACTION = 0.5
# A chunked object is assembled this many bytes of chunks at a time (memory stays flat).
ASSEMBLY_WINDOW = 32 << 20
# A push verifies, sizes and reads this many objects at a time (memory flat in their count).
PUSH_BATCH = 4096


def _once(fn: Callable[[], T]) -> T:
    return fn()


@dataclass
class Meter:
    """Requests made to a remote and the bytes moved each way (thread-safe)."""

    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    packs: int = 0
    chunks: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests: int = 1, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_up += up
            self.bytes_down += down


# -- what a remote holds ------------------------------------------------------------------------
_INDEXES: dict[tuple[str, str], PackIndex] = {}  # (remote url, pack id) -> its checked index
_INDEXES_LOCK = threading.Lock()


@dataclass
class Inventory:
    """The objects one remote holds: packed (`packs`, from the indexes), loose, chunked
    (manifests), plus what this process sent since (`added`). `refused`: one sentence per
    damaged index (its objects count as absent). `loose` is None when `objects/` was not
    listed (a fetch asks for loose objects directly: a miss costs what a listing would)."""

    packs: PackSet
    indexes: dict[str, PackIndex]
    loose: set[str] | None
    manifests: set[str]
    refused: list[str] = field(default_factory=list)
    added: set[str] = field(default_factory=set)

    def has(self, h: str) -> bool:
        return (
            (self.loose is not None and h in self.loose)
            or h in self.added
            or h in self.manifests
            or h in self.packs
        )

    def maybe_loose(self, h: str) -> bool:
        return h in self.loose if self.loose is not None else h not in self.manifests

    def locate(self, h: str) -> list[Location]:
        return self.packs.locate(h)


def _list(backend: Backend, folder: str, meter: Meter) -> list[str]:
    try:
        keys = list(backend.list(folder))
    except FileNotFoundError:
        keys = []
    # A listing is paged (1,000 keys a page on S3): count the pages.
    meter.add(max(1, (len(keys) + 999) // 1000))
    return keys


def inventory(
    remote: ObjectStore, meter: Meter, retry: Retry = _once, list_loose: bool = True
) -> Inventory:
    """What `remote` holds, in a handful of requests (see the module's docstring). Without
    `list_loose` (fetches), `objects/` is not listed: on a remote an older repro filled, that
    listing is a request per 1,000 objects, while asking for the few wanted costs less."""
    backend = remote.backend
    refused: list[str] = []
    indexed: set[str] = set()
    packed: set[str] = set()
    for key in retry(lambda: _list(backend, PACKS, meter)):
        parsed = pack_id_of_key(key)
        if parsed is not None:
            (indexed if parsed[1] == "idx" else packed).add(parsed[0])
    indexes: dict[str, PackIndex] = {}
    for pid in sorted(indexed & packed):
        cached = _INDEXES.get((backend.url, pid))
        if cached is not None:
            indexes[pid] = cached
            continue
        try:
            idx = retry(lambda pid=pid: read_index(backend, pid, remote.name))
        except (UntrustedInputError, NewerFormatError) as exc:
            meter.add(1)
            refused.append(f"{exc.message.rstrip('.')}, so its objects count as absent.")
            continue
        except FileNotFoundError:
            continue
        meter.add(1, down=index_size(len(idx.entries)))
        with _INDEXES_LOCK:
            _INDEXES[(backend.url, pid)] = idx
        indexes[pid] = idx
    loose: set[str] | None = None
    if list_loose:
        loose = set()
        for key in retry(lambda: _list(backend, "objects", meter)):
            parts = key.split("/")
            if len(parts) == 3 and len(parts[1]) == 2 and is_hash(parts[1] + parts[2]):
                loose.add(parts[1] + parts[2])
    manifests = {
        h
        for key in retry(lambda: _list(backend, MANIFESTS, meter))
        if (h := manifest_hash_of_key(key)) is not None
    }
    packs = PackSet.build(indexes[pid] for pid in sorted(indexes))
    return Inventory(packs, indexes, loose, manifests, refused)


def forget_indexes(url: str) -> None:
    """Drop the indexes (and the pusher's inventory) remembered for remote `url` (after a
    repack or gc there)."""
    with _INDEXES_LOCK:
        for key in [k for k in _INDEXES if k[0] == url]:
            del _INDEXES[key]
        _SHARED.pop(url, None)


# A pusher's inventory per remote url for this process, and when it was taken (monotonic).
_SHARED: dict[str, tuple[float, Inventory]] = {}
SHARED_MAX_AGE = 300.0


def shared_inventory(remote: ObjectStore, meter: Meter, retry: Retry = _once) -> Inventory:
    """An inventory of `remote` kept for this process (one per remote URL), for a pusher that
    runs many times against one remote: a worker's `send`, once per stage, then lists
    `objects/` once, not per stage. For pushing only, where staleness is safe: what this
    process sends is added to it (`push_objects` records its own writes in `added`), and an
    object another process sent after it was taken looks absent and is sent again (the same
    bytes, a wasted upload, never a lost one). A fetch must not use it (an object pushed since
    would look missing). Taken again after SHARED_MAX_AGE seconds, when it holds refused
    (damaged) indexes, and after `forget_indexes(url)` (a gc or repack there, which may have
    removed what it lists)."""
    url = remote.backend.url
    with _INDEXES_LOCK:
        got = _SHARED.get(url)
    if got is not None and time.monotonic() - got[0] < SHARED_MAX_AGE:
        return got[1]
    taken = time.monotonic()
    inv = inventory(remote, meter, retry)
    if not inv.refused:
        with _INDEXES_LOCK:
            _SHARED[url] = (taken, inv)
    return inv


def manifest_liveness(
    backend: Backend, live: set[str], source: str, jobs: int = 8
) -> tuple[set[str], list[str]]:
    """For a gc of the remote `backend`: (the chunks that must stay alive, the manifest keys
    that are dead). `live` is the set of object hashes the gc keeps; `source` names the remote
    in messages. An object stored chunked is only its manifest plus its chunks, and a chunk is
    an ordinary object (loose or packed) that no tree or lock names: without this, a gc would
    delete every chunk of every live large object.

    - Every `manifests/<hash>` of a live object is read (in parallel, `jobs` at once; one
      request each, and chunked objects are 4 MiB and more, so they are few) and the chunks it
      names are returned: the gc adds them to what it keeps.
    - A manifest whose object is not live is dead: its key is returned (sorted) for the gc to
      delete, manifest first, then the chunks no live manifest names (they are simply not in
      the first set). A chunk shared with a live object stays: it is in the first set.
    - A live object's manifest that cannot be read or fails its checks names no chunks and is
      not dead either (fsck reports it; `fsck --repair` or `push --verify-remote` sends the
      object again). Keys in `manifests/` that name no hash (a temporary file of a writer)
      are neither.
    """
    try:
        keys = list(backend.list(MANIFESTS))
    except FileNotFoundError:
        return set(), []
    dead: list[str] = []
    wanted: list[str] = []
    for key in keys:
        h = manifest_hash_of_key(key)
        if h is None:
            continue
        if h in live:
            wanted.append(h)
        else:
            dead.append(key)
    chunks: set[str] = set()

    def read(h: str) -> Manifest | None:
        try:
            return read_manifest(backend, h, source)[0]
        except (FileNotFoundError, UntrustedInputError, NewerFormatError):
            return None

    if wanted:
        with ThreadPoolExecutor(max(1, min(jobs, len(wanted)))) as pool:
            for m in pool.map(read, wanted):
                if m is not None:
                    chunks.update(c for c, _ in m.chunks)
    return chunks, sorted(dead)


# -- the local store's side -------------------------------------------------------------------
def _loose_path(store: ObjectStore, h: str) -> str | None:
    local = store.local
    if local is None:
        return None
    p = local.path(object_key(h))
    return p if os.path.isfile(p) else None


def _tmp_for(store: ObjectStore) -> Callable[[], str]:
    local = store.local
    if local is not None:
        return local.tmp_path
    import tempfile

    return lambda: tempfile.mkstemp(prefix="repro-")[1]


# -- push -----------------------------------------------------------------------------------------
@dataclass
class PushResult:
    sent: set[str] = field(default_factory=set)  # objects now on the remote (whole or chunked)
    corrupt: list[str] = field(default_factory=list)  # local keys that failed verification
    failed: list[str] = field(default_factory=list)  # objects whose upload failed
    bytes: int = 0  # content bytes of the objects sent


class _Uploads:
    """Uploads in flight on a thread pool, at most `limit` at once (the caller waits for the
    oldest first), each a callable returning the hashes it put on the remote."""

    def __init__(self, jobs: int) -> None:
        self.pool = ThreadPoolExecutor(max(1, jobs))
        self.limit = max(2, jobs * 2)
        self.pending: list[tuple[Future, list[str], Callable[[], None], int]] = []
        self.done: set[str] = set()
        self.failed: list[str] = []
        self.bytes = 0  # content bytes of the objects (not chunks) of the uploads that succeeded

    def submit(
        self,
        fn: Callable[[], None],
        hashes: list[str],
        cleanup: Callable[[], None],
        content: int = 0,
    ) -> None:
        while len(self.pending) >= self.limit:
            self._wait_one()
        self.pending.append((self.pool.submit(fn), hashes, cleanup, content))

    def _wait_one(self) -> None:
        fut, hashes, cleanup, content = self.pending.pop(0)
        try:
            fut.result()
            self.done.update(hashes)
            self.bytes += content
        except (OSError, ConnectionError, TimeoutError):
            self.failed += hashes
        finally:
            cleanup()

    def finish(self) -> None:
        try:
            while self.pending:
                self._wait_one()
        finally:
            self.pool.shutdown()


def _unlink(path: str) -> Callable[[], None]:
    def rm() -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    return rm


class _Packer:
    """Small objects into packs of ~PACK_TARGET, each published (pack, then index) on the
    remote as it fills, while the next one is built. The first few objects of a pack wait in
    memory: when fewer than PACK_MIN_OBJECTS come in all, `close` sends them loose instead."""

    def __init__(
        self,
        remote: ObjectStore,
        tmp: Callable[[], str],
        local_tmp: Callable[[], str],
        uploads: _Uploads,
        meter: Meter,
        retry: Retry,
        progress: Progress | None,
    ) -> None:
        self.remote, self.tmp, self.local_tmp = remote, tmp, local_tmp
        self.uploads, self.meter, self.retry, self.progress = uploads, meter, retry, progress
        self.writer: PackWriter | None = None
        self.waiting: list[tuple[str, bytes, bool]] = []
        self.shown = [0, 0]  # objects and bytes of the open pack counted for progress

    def add(self, h: str, data: bytes | memoryview, show: bool = True) -> None:
        """Queue object `h`; `show`: count it on the progress display (chunks are not)."""
        if self.writer is None and len(self.waiting) < PACK_MIN_OBJECTS - 1:
            self.waiting.append((h, bytes(data), show))
            return
        if self.writer is None:
            self.writer = PackWriter(self.tmp(), PACK_TARGET)
            self.shown = [0, 0]
            waiting, self.waiting = self.waiting, []
            for wh, wdata, wshow in waiting:
                self._write(wh, wdata, wshow)
        self._write(h, data, show)
        if self.writer.full:
            self.flush()

    def _write(self, h: str, data: bytes | memoryview, show: bool) -> None:
        assert self.writer is not None
        self.writer.add(h, data)
        if show:
            self.shown[0] += 1
            self.shown[1] += len(data)

    def close(self) -> None:
        """Publish the open pack; send loose what waits (too few for a pack)."""
        self.flush()
        waiting, self.waiting = self.waiting, []
        for h, data, show in waiting:
            shown = self.progress if show else None
            _send_loose(
                self.remote,
                h,
                data,
                self.local_tmp,
                self.uploads,
                self.meter,
                self.retry,
                shown,
                obj=show,
            )

    def flush(self) -> None:
        w, self.writer = self.writer, None
        if w is None or not len(w):
            if w is not None:
                w.abort()
            return
        pid, index = w.finish(fsync=False)
        hashes = [h for h, _, _ in index.entries]
        size, (count, content) = w.size, self.shown
        backend = self.remote.backend

        def up() -> None:
            _publish(backend, w.path, pid, index, self.retry)
            self.meter.add(2, up=size + index_size(len(hashes)))
            with self.meter._lock:
                self.meter.packs += 1
            if self.progress is not None and count:
                self.progress(count, content)

        self.uploads.submit(up, hashes, _unlink(w.path), content)


def _publish(backend: Backend, tmp: str, pid: str, index: PackIndex, retry: Retry) -> None:
    """`packstore.publish`, with each request retried on a transient error (the local pack
    file is kept until both the pack and its index are up)."""
    if isinstance(backend, LocalBackend):
        publish(backend, tmp, pid, index)
        return
    retry(lambda: backend.put_file(tmp, pack_key(pid)))
    data = index.encode()
    retry(lambda: backend.write_bytes(index_key(pid), data))


def _pack_tmp(remote: ObjectStore, local_tmp: Callable[[], str]) -> Callable[[], str]:
    """Where to build packs: beside a local-folder remote (a rename publishes them), else in
    the local cache's tmp (uploaded, then removed)."""
    rl = remote.local
    return rl.tmp_path if rl is not None else local_tmp


def push_objects(
    remote: ObjectStore,
    hashes: Iterable[str],
    inv: Inventory,
    meter: Meter,
    *,
    local: ObjectStore | None = None,
    paths: dict[str, str] | None = None,
    blobs: dict[str, bytes] | None = None,
    jobs: int = 8,
    retry: Retry = _once,
    progress: Progress | None = None,
) -> PushResult:
    """Put on `remote` those of `hashes` that `inv` says it lacks. Each object's bytes come
    from `blobs` (in memory), `paths` (a local file the caller just hashed) or the `local`
    store (verified first: a corrupt object is reported by key and never sent). Small objects
    are re-hashed as they are read (never a wrong byte into a pack); large ones chunked are
    hashed while chunked, and a file that no longer matches gets no manifest.

    Memory stays flat in the object count beyond the sorted list of hashes to send and the
    set of those sent: objects are verified, sized and read PUSH_BATCH at a time (no size or
    verification record per object is kept), and the content bytes sent are counted per
    upload as it completes."""
    paths, blobs = paths or {}, blobs or {}
    progress = _serialised(progress)
    out = PushResult()
    todo = sorted({h for h in hashes if not inv.has(h)})
    local_tmp = _tmp_for(local) if local is not None else _tmp_for(remote)
    uploads = _Uploads(jobs)
    packer = _Packer(
        remote, _pack_tmp(remote, local_tmp), local_tmp, uploads, meter, retry, progress
    )
    manifests: list[Manifest] = []
    large: list[tuple[str, int]] = []  # objects of PACK_MAX_OBJECT and more: few, sent last
    bad: set[str] = set()  # todo objects not sent (corrupt here): a chunk never counts on them
    chunks: set[str] = set()  # chunks queued (a repeat, here or in another file, is sent once)
    try:
        for i in range(0, len(todo), PUSH_BATCH):
            small: list[str] = []
            for h, n in _sized(todo[i : i + PUSH_BATCH], local, paths, blobs, bad):
                if n < PACK_MAX_OBJECT:
                    small.append(h)
                else:
                    large.append((h, n))
            for h, data in _small_bytes(small, local, paths, blobs):
                if data is None or hash_bytes(data) != h:
                    bad.add(h)
                else:
                    packer.add(h, data)

        def queued(ch: str) -> bool:  # a chunk that is also a small object already packed
            return ch not in bad and _in_sorted(todo, ch)

        for h, size in large:
            if h in blobs:
                _send_loose(remote, h, blobs[h], local_tmp, uploads, meter, retry, progress)
                continue
            src = paths.get(h) or (_loose_path(local, h) if local is not None else None)
            if src is None:  # not loose locally: read it whole (a rare mid-size object)
                data = local.get_bytes(h)  # type: ignore[union-attr]
                _send_loose(remote, h, data, local_tmp, uploads, meter, retry, progress)
            elif size >= CHUNK_MIN:
                m = _send_chunked(
                    remote, h, src, inv, packer, chunks, queued, local_tmp, uploads, meter, retry
                )
                if m is None:
                    bad.add(h)
                else:
                    manifests.append(m)
            else:
                _send_file(remote, h, src, size, uploads, meter, retry, progress)
        packer.close()
    finally:
        if packer.writer is not None:
            packer.writer.abort()
        uploads.finish()
    failed = set(uploads.failed)
    done = uploads.done
    out.bytes = uploads.bytes + _send_manifests(
        remote, manifests, failed, done, inv, meter, jobs, retry, progress
    )
    inv.added.update(done)
    out.corrupt = [object_key(h) for h in sorted(bad)]
    out.failed = sorted(h for h in failed if _in_sorted(todo, h))
    out.sent = {h for h in done if _in_sorted(todo, h)}
    return out


def _in_sorted(items: list[str], x: str) -> bool:
    i = bisect_left(items, x)
    return i < len(items) and items[i] == x


def _sized(
    batch: list[str],
    local: ObjectStore | None,
    paths: dict[str, str],
    blobs: dict[str, bytes],
    bad: set[str],
) -> Iterator[tuple[str, int]]:
    """(hash, size) of each object of `batch` that can be sent; one from the local store is
    verified first (one stat-cache query for the batch), and one that fails goes to `bad`."""
    from_store = [h for h in batch if h not in blobs and h not in paths]
    good = set()
    if from_store:
        assert local is not None
        good = local.verified_set(from_store)
    for h in batch:
        if h in blobs:
            yield h, len(blobs[h])
        elif h in paths:
            yield h, os.path.getsize(paths[h])
        elif h in good and (n := local.object_size(h)) is not None:  # type: ignore[union-attr]
            yield h, n
        else:
            bad.add(h)


def _serialised(progress: Progress | None) -> Progress | None:
    """A progress callback called from upload threads one at a time."""
    if progress is None:
        return None
    lock = threading.Lock()

    def call(n: int, size: int) -> None:
        with lock:
            progress(n, size)

    return call


def _small_bytes(
    small: list[str], local: ObjectStore | None, paths: dict[str, str], blobs: dict[str, bytes]
) -> Iterator[tuple[str, bytes | None]]:
    from_store = []
    for h in small:
        if h in blobs:
            yield h, blobs[h]
        elif h in paths:
            try:
                with open(paths[h], "rb") as f:
                    yield h, f.read()
            except OSError:
                yield h, None
        else:
            from_store.append(h)
    if from_store:
        assert local is not None
        yield from local.read_many(from_store)


def _send_loose(
    remote: ObjectStore,
    h: str,
    data: bytes | memoryview,
    tmp: Callable[[], str],
    uploads: _Uploads,
    meter: Meter,
    retry: Retry,
    progress: Progress | None,
    obj: bool = True,
) -> None:
    """Send `data` as loose object `h`; `obj`: it is an object (its bytes count as content
    sent), not a chunk."""
    path = tmp()
    with open(path, "wb") as f:
        f.write(data)
    _send_file(remote, h, path, len(data), uploads, meter, retry, progress, _unlink(path), obj)


def _send_file(
    remote: ObjectStore,
    h: str,
    path: str,
    size: int,
    uploads: _Uploads,
    meter: Meter,
    retry: Retry,
    progress: Progress | None,
    cleanup: Callable[[], None] = lambda: None,
    obj: bool = True,
) -> None:
    def up() -> None:
        retry(lambda: remote.backend.put_file(path, object_key(h)))
        meter.add(1, up=size)
        if progress is not None:
            progress(1, size)

    uploads.submit(up, [h], cleanup, size if obj else 0)


def _send_chunked(
    remote: ObjectStore,
    h: str,
    path: str,
    inv: Inventory,
    packer: _Packer,
    queued: set[str],
    packed: Callable[[str], bool],
    tmp: Callable[[], str],
    uploads: _Uploads,
    meter: Meter,
    retry: Retry,
) -> Manifest | None:
    """Cut the file at `path` into chunks and queue those the remote lacks (not in `queued`,
    the chunks already queued, nor `packed`: an object of this push with the same bytes),
    hashing the whole content in the same read; its manifest (None when the content is not
    `h` any more) is written by the caller once every chunk is up."""
    whole = content_hasher()
    chunks: list[tuple[str, int]] = []
    for ch, data in cut_file(path):
        whole.update(data)
        chunks.append((ch, len(data)))
        if inv.has(ch) or ch in queued or packed(ch):
            continue
        queued.add(ch)  # a repeat of this chunk (here or in another file) is sent once
        with meter._lock:
            meter.chunks += 1
        if len(data) < PACK_MAX_OBJECT:
            packer.add(ch, data, show=False)
        else:
            _send_loose(remote, ch, data, tmp, uploads, meter, retry, None, obj=False)
    if whole.hexdigest() != h:
        return None
    return Manifest(h, sum(n for _, n in chunks), chunks)


def _send_manifests(
    remote: ObjectStore,
    manifests: list[Manifest],
    failed: set[str],
    done: set[str],
    inv: Inventory,
    meter: Meter,
    jobs: int,
    retry: Retry,
    progress: Progress | None,
) -> int:
    """Each manifest after all its chunks are up (a manifest present means complete); one
    whose chunks failed is not written, and its object counts as failed. Returns the content
    bytes of the objects whose manifest was written."""
    uploads = _Uploads(jobs)
    try:
        for m in manifests:
            if any(c in failed for c, _ in m.chunks):
                failed.add(m.hash)
                continue
            data = m.encode()

            def up(m: Manifest = m, data: bytes = data) -> None:
                retry(lambda: remote.backend.write_bytes(manifest_key(m.hash), data))
                meter.add(1, up=len(data))
                if progress is not None:
                    progress(1, m.size)

            uploads.submit(up, [m.hash], lambda: None, m.size)
    finally:
        uploads.finish()
    failed.update(uploads.failed)
    done.update(uploads.done)
    inv.manifests.update(uploads.done)
    return uploads.bytes


# -- fetch ----------------------------------------------------------------------------------------
@dataclass
class FetchResult:
    got: set[str] = field(default_factory=set)  # objects now in the local store, verified
    corrupt: list[str] = field(default_factory=list)  # one sentence per refused copy
    bytes: int = 0  # content bytes of the objects fetched
    objects: int = 0


class _CountingReader(PackReader):
    """A PackReader that counts its ranged requests on a Meter."""

    def __init__(self, backend: Backend, meter: Meter) -> None:
        super().__init__(backend)
        self.meter = meter

    def _run(self, pid: str, run: list[tuple[str, Location]]) -> Iterator[tuple[str, bytes | None]]:
        start = run[0][1].offset
        end = max(loc.offset + loc.length for _, loc in run)
        self.meter.add(1, down=end - start)
        yield from super()._run(pid, run)


def fetch_objects(
    local: ObjectStore,
    remote: ObjectStore,
    hashes: Iterable[str],
    inv: Inventory,
    meter: Meter,
    *,
    jobs: int = 8,
    retry: Retry = _once,
    progress: Progress | None = None,
) -> FetchResult:
    """Bring those of `hashes` the local store lacks (or holds corrupt) from `remote`, each
    verified; what the remote holds in no form is left out of `got` (the caller names it)."""
    hashes = set(hashes)
    out = FetchResult()
    have = local.verified_set(hashes)
    out.got |= have
    by_pack: dict[str, list[tuple[str, Location]]] = {}
    loose: list[str] = []
    chunked: list[str] = []
    for h in sorted(hashes - have):
        locs = inv.locate(h)
        if locs:
            by_pack.setdefault(locs[-1].pack_id, []).append((h, locs[-1]))
        elif inv.maybe_loose(h):
            loose.append(h)
        elif h in inv.manifests:
            chunked.append(h)
    if by_pack:
        failed = _fetch_packed(local, remote, by_pack, inv, meter, jobs, retry, progress, out)
        if failed:
            _second_chance(local, remote, failed, inv, meter, jobs, retry, progress, out)
        # A loose copy that failed verification above is now shadowed by a good packed one:
        # moved aside, so fsck and readers see only the good copy.
        fetched = {h for items in by_pack.values() for h, _ in items} & out.got
        if fetched:
            local.set_aside_loose(fetched)
    if loose:
        _fetch_loose(local, remote, loose, meter, jobs, retry, progress, out)
    for h in chunked:
        _fetch_chunked(local, remote, h, inv, meter, jobs, retry, out)
        if progress is not None and h in out.got:
            progress(1, local.object_size(h) or 0)
    return out


def _pack_source(remote: ObjectStore, pid: str) -> str:
    return f"{remote.name}: {pack_key(pid)}"


def _fetch_packed(
    local: ObjectStore,
    remote: ObjectStore,
    by_pack: dict[str, list[tuple[str, Location]]],
    inv: Inventory,
    meter: Meter,
    jobs: int,
    retry: Retry,
    progress: Progress | None,
    out: FetchResult,
) -> dict[str, str]:
    """Packed objects, pack by pack; returns those whose copy did not verify (hash -> the
    sentence naming remote, pack and object), for `_second_chance`."""
    failed: dict[str, str] = {}

    def took(h: str, size: int, ok: bool, pid: str) -> None:
        if ok:
            _took(out, h, size, True, "", progress)
        else:
            failed[h] = _corrupt_sentence(_pack_source(remote, pid), h)

    whole: list[str] = []
    ranged: list[str] = []
    for pid, items in by_pack.items():
        wanted = sum(loc.length for _, loc in items)
        size = inv.indexes[pid].pack_size if pid in inv.indexes else 0
        (whole if wanted >= WHOLE_PACK_FRACTION * size else ranged).append(pid)
    tmp = _tmp_for(local)

    def download(pid: str) -> str:
        path = tmp()
        try:
            retry(lambda: remote.backend.get_file(pack_key(pid), path))
            meter.add(1, down=os.path.getsize(path))
        except BaseException:
            _unlink(path)()  # a partial download
            raise
        return path

    def read(pid: str) -> list[tuple[str, bytes | None]]:
        with _CountingReader(remote.backend, meter) as reader:
            got = list(retry(lambda: list(reader.read_many(by_pack[pid]))))
            return [
                (h, data if data is not None else _other_copy(reader, h, inv)) for h, data in got
            ]

    with ThreadPoolExecutor(max(1, jobs)) as pool, local.batch():
        for i in range(0, len(whole), max(1, jobs)):  # a wave of packs at a time: disk flat
            wave = whole[i : i + max(1, jobs)]
            futures = [(pid, pool.submit(download, pid)) for pid in wave]
            try:
                for pid, fut in futures:
                    try:
                        path = fut.result()
                    except FileNotFoundError:
                        continue  # gone since the inventory: its objects stay missing
                    try:
                        good = local.import_pack(path, inv.indexes[pid])
                    finally:
                        _unlink(path)()
                    for h, loc in by_pack[pid]:
                        took(h, loc.length, h in good, pid)
            finally:
                _drop_wave([fut for _, fut in futures])
        for i in range(0, len(ranged), max(1, jobs)):
            wave = ranged[i : i + max(1, jobs)]
            for pid, fut in [(pid, pool.submit(read, pid)) for pid in wave]:
                lengths = {h: loc.length for h, loc in by_pack[pid]}
                for h, data in fut.result():
                    if data is not None:
                        local.put_bytes(data)
                    took(h, lengths[h], data is not None, pid)
    return failed


def _drop_wave(futures: list[Future]) -> None:
    """After a wave of whole-pack downloads (one of them may have failed): the packs the
    wave still holds downloaded, or is downloading, are removed, none left in tmp."""
    for fut in futures:
        if fut.cancel():
            continue
        try:
            path = fut.result()
        except Exception:  # it removed its own partial file
            continue
        _unlink(path)()


def _second_chance(
    local: ObjectStore,
    remote: ObjectStore,
    failed: dict[str, str],
    inv: Inventory,
    meter: Meter,
    jobs: int,
    retry: Retry,
    progress: Progress | None,
    out: FetchResult,
) -> None:
    """Objects whose packed copy did not verify: another pack's copy (a repack's, a heal's),
    else a loose copy (what `push --verify-remote` and a repair upload over a damaged pack).
    Only an object no copy of which verifies is reported (each refused copy named)."""
    rest: list[str] = []
    with _CountingReader(remote.backend, meter) as reader, local.batch():
        for h in sorted(failed):
            data = _other_copy(reader, h, inv)
            if data is None:
                rest.append(h)
                continue
            local.put_bytes(data)
            _took(out, h, len(data), True, "", progress)
    if not rest:
        return
    loose = FetchResult()
    _fetch_loose(local, remote, rest, meter, jobs, retry, progress, loose)
    out.got |= loose.got
    out.objects += loose.objects
    out.bytes += loose.bytes
    out.corrupt += [failed[h] for h in rest if h not in loose.got] + loose.corrupt


def _other_copy(reader: PackReader, h: str, inv: Inventory) -> bytes | None:
    """Another pack's copy of `h`, when the one read did not verify (a repack, a heal)."""
    locs = inv.locate(h)
    return reader.read(h, locs[:-1]) if len(locs) > 1 else None


def _took(
    out: FetchResult, h: str, size: int, ok: bool, source: str, progress: Progress | None
) -> None:
    if ok:
        out.got.add(h)
        out.objects += 1
        out.bytes += size
        if progress is not None:
            progress(1, size)
    else:
        out.corrupt.append(_corrupt_sentence(source, h))


def _corrupt_sentence(source: str, h: str) -> str:
    return (
        f"{source}: object {h} in it is corrupted (its content does not match its hash); "
        "it was not used."
    )


def _fetch_loose(
    local: ObjectStore,
    remote: ObjectStore,
    hashes: list[str],
    meter: Meter,
    jobs: int,
    retry: Retry,
    progress: Progress | None,
    out: FetchResult,
) -> None:
    """Loose objects to temporary files, each verified, then renamed into the cache (large
    ones) or packed there (small ones, in one batch)."""
    with local.batch():
        _fetch_loose_batches(local, remote, hashes, meter, jobs, retry, progress, out)


def _fetch_loose_batches(
    local: ObjectStore,
    remote: ObjectStore,
    hashes: list[str],
    meter: Meter,
    jobs: int,
    retry: Retry,
    progress: Progress | None,
    out: FetchResult,
) -> None:
    lb = local.local
    assert lb is not None
    for i in range(0, len(hashes), 512):
        batch = hashes[i : i + 512]
        tmps = {h: lb.tmp_path() for h in batch}
        rows = []
        try:
            found = retry(
                lambda batch=batch, tmps=tmps: remote.backend.get_files(
                    [(object_key(h), tmps[h]) for h in batch], jobs
                )
            )
            for h, there in zip(batch, found, strict=True):
                meter.add(1)
                if not there:
                    continue
                tmp = tmps[h]
                size = os.path.getsize(tmp)
                meter.add(0, down=size)
                checked = now_ns()
                if hash_file(tmp) != h:
                    out.corrupt.append(
                        f"{remote.name}: object {object_key(h)} is corrupted (its content does "
                        "not match its hash); it was not used."
                    )
                    continue
                if size < PACK_MAX_OBJECT:  # small (an older remote's): into a local pack
                    with open(tmp, "rb") as f:
                        local.put_bytes(f.read())
                else:
                    rows.append(_install(local, tmp, h, checked))
                _took(out, h, size, True, "", progress)
        finally:
            if local.state is not None:
                local.state.put_many([r for r in rows if r is not None])
            for tmp in tmps.values():
                _unlink(tmp)()


def _install(local: ObjectStore, tmp: str, h: str, checked: int) -> tuple | None:
    """Rename verified file `tmp` into the local cache as loose object `h`; its stat row."""
    lb = local.local
    assert lb is not None
    os.chmod(tmp, read_only_mode(False))
    dst = lb.ensure_parent(object_key(h))
    os.replace(tmp, dst)
    return (dst, StatKey.of(os.stat(dst)), h, checked)


def _fetch_chunked(
    local: ObjectStore,
    remote: ObjectStore,
    h: str,
    inv: Inventory,
    meter: Meter,
    jobs: int,
    retry: Retry,
    out: FetchResult,
) -> None:
    """Object `h` from its manifest and chunks, assembled into a temporary file a window of
    chunks at a time and verified whole before it is renamed into the cache."""
    key = manifest_key(h)
    source = f"{remote.name}: {key}"
    try:
        m, size = retry(lambda: read_manifest(remote.backend, h, remote.name))
        meter.add(1, down=size)
    except FileNotFoundError:
        return
    except (UntrustedInputError, NewerFormatError) as exc:
        out.corrupt.append(exc.message)
        return
    lb = local.local
    assert lb is not None
    tmp = lb.tmp_path()
    try:
        checked = now_ns()
        problem = _assemble(remote, m, inv, tmp, meter, jobs, retry)
        if problem is None and hash_file(tmp) != h:
            problem = "its chunks assemble to content that does not match its hash"
        if problem is not None:
            out.corrupt.append(f"{source}: {problem}; the object was not used.")
            return
        row = _install(local, tmp, h, checked)
        if local.state is not None and row is not None:
            local.state.put_many([row])
        out.got.add(h)
        out.objects += 1
        out.bytes += m.size
    finally:
        _unlink(tmp)()


def _windows(chunks: list[tuple[str, int]]) -> Iterator[list[tuple[str, int]]]:
    window: list[tuple[str, int]] = []
    size = 0
    for c in chunks:
        window.append(c)
        size += c[1]
        if size >= ASSEMBLY_WINDOW:
            yield window
            window, size = [], 0
    if window:
        yield window


def _assemble(
    remote: ObjectStore,
    m: Manifest,
    inv: Inventory,
    path: str,
    meter: Meter,
    jobs: int,
    retry: Retry,
) -> str | None:
    """Write `m`'s chunks in order to `path`, each verified; a problem as a clause, or None."""
    with open(path, "wb") as f, _CountingReader(remote.backend, meter) as reader:
        for window in _windows(m.chunks):
            got = _window_bytes(remote, window, inv, reader, meter, jobs, retry)
            for ch, n in window:
                if ch not in got:
                    return f"it names chunk {ch}, which the remote lacks"
                data = got[ch]
                if data is None:
                    return f"chunk {ch} is corrupted (its content does not match its hash)"
                if len(data) != n:
                    return f"chunk {ch} is {len(data)} bytes, not the {n} it names"
                f.write(data)
    return None


def _window_bytes(
    remote: ObjectStore,
    window: list[tuple[str, int]],
    inv: Inventory,
    reader: PackReader,
    meter: Meter,
    jobs: int,
    retry: Retry,
) -> dict[str, bytes | None]:
    """The bytes of a window's distinct chunks: packed ones in merged ranged reads, loose ones
    in parallel, each verified (None: read, but it does not match its hash; absent: the remote
    has no copy). A loose chunk is read only up to one byte past the length the manifest
    gives, so a hostile manifest naming a huge object as a chunk costs no memory."""
    lengths = dict(window)
    wanted = sorted(lengths)
    packed = [(ch, locs[-1]) for ch in wanted if (locs := inv.locate(ch))]
    in_packs = {p for p, _ in packed}
    loose = [ch for ch in wanted if ch not in in_packs and inv.maybe_loose(ch)]
    got: dict[str, bytes | None] = {}
    if packed:
        for ch, data in retry(lambda: list(reader.read_many(packed))):
            got[ch] = data

    def one(ch: str) -> tuple[bool, bytes | None]:
        key = object_key(ch)
        try:
            data = retry(lambda: remote.backend.read_range(key, 0, lengths[ch] + 1))
        except FileNotFoundError:
            return False, None
        meter.add(1, down=len(data))
        return True, data if hash_bytes(data) == ch else None

    if loose:
        with ThreadPoolExecutor(max(1, min(jobs, len(loose)))) as pool:
            for ch, (there, data) in zip(loose, pool.map(one, loose), strict=True):
                if there:
                    got[ch] = data
    return got
