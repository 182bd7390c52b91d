"""Packs on a backend: list them, load their indexes, publish a new one, read objects out.

The format lives in `repro.store.packs`; this module puts it on any `Backend` (the local cache,
an S3 bucket, a shared folder), so the local object store, push/pull and gc share one way to do
each step:

- `load_packset(backend, source)`: every `packs/<id>.idx`, checked (`PackIndex.decode`), merged
  into one `PackSet`. An index that fails its checks is reported through `bad` and skipped:
  its objects count as absent (and get uploaded or fetched again), never as present.
- `publish(backend, tmp_path, pack_id, index)`: the pack first, then its index, each atomic;
  a kill between the two leaves an orphan pack, which is harmless.
- `PackReader`: reads objects out of packs (one open file per pack locally, ranged reads
  remotely) and verifies each against its hash before returning it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from repro.canonical import hash_bytes
from repro.errors import NewerFormatError, UntrustedInputError
from repro.store.backend import Backend, LocalBackend
from repro.store.packs import (
    PACK_TARGET,
    PACKS,
    Location,
    PackIndex,
    PackSet,
    index_key,
    pack_id_of_key,
    pack_key,
)


def list_packs(backend: Backend) -> tuple[set[str], set[str]]:
    """(ids with an index, ids with a pack file) under `packs/`: one listing. Keys that are not
    well-formed pack names (temporary files, strays, hostile names) are ignored."""
    indexed: set[str] = set()
    packed: set[str] = set()
    try:
        keys = list(backend.list(PACKS))
    except FileNotFoundError:
        return indexed, packed
    for key in keys:
        parsed = pack_id_of_key(key)
        if parsed is None:
            continue
        (indexed if parsed[1] == "idx" else packed).add(parsed[0])
    return indexed, packed


def read_index(backend: Backend, pack_id: str, source: str) -> PackIndex:
    """One pack's index from `backend`, checked against its name."""
    key = index_key(pack_id)
    return PackIndex.decode(backend.read_bytes(key), f"{source}: {key}", pack_id)


def load_indexes(
    backend: Backend, source: str, bad: list[str] | None = None, ids: Iterable[str] | None = None
) -> list[PackIndex]:
    """The checked indexes of every pack (or of `ids`) that has both its index and its pack
    file. A damaged or newer-format index is skipped and its key appended to `bad`."""
    indexed, packed = list_packs(backend)
    wanted = sorted((indexed & packed) if ids is None else (set(ids) & indexed & packed))
    out: list[PackIndex] = []
    for pid in wanted:
        try:
            out.append(read_index(backend, pid, source))
        except (UntrustedInputError, NewerFormatError, FileNotFoundError):
            if bad is not None:
                bad.append(index_key(pid))
    return out


def load_packset(backend: Backend, source: str, bad: list[str] | None = None) -> PackSet:
    """Every object the packs on `backend` hold (see `load_indexes`)."""
    return PackSet.build(load_indexes(backend, source, bad))


def publish(backend: Backend, tmp_path: str, pack_id: str, index: PackIndex) -> None:
    """Put a finished pack (a local file at `tmp_path`) on `backend`: the pack, then its index.
    On a local backend the file is renamed into place (same filesystem: the cache's tmp/) and
    made read-only; elsewhere it is uploaded and the local file removed."""
    key = pack_key(pack_id)
    if isinstance(backend, LocalBackend):
        dst = backend.ensure_parent(key)
        os.chmod(tmp_path, 0o444)
        os.replace(tmp_path, dst)
    else:
        try:
            backend.put_file(tmp_path, key)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
    backend.write_bytes(index_key(pack_id), index.encode())


def unpublish(backend: Backend, pack_id: str) -> None:
    """Remove a pack: its index first (its objects stop being found), then the pack file, so
    a kill between the two leaves an orphan pack, never an index without its bytes."""
    backend.delete(index_key(pack_id))
    backend.delete(pack_key(pack_id))


class PackReader:
    """Reads verified objects out of the packs of one backend.

    Locally each pack is opened once and read with `pread`; remotely each object (or a run of
    neighbours, `read_many`) is one ranged request. Every object is hashed before it is
    returned; a copy that does not verify is skipped for the next copy (`locate` may give
    several), and None means no copy verified."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._fds: dict[str, int] = {}

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, loc: Location) -> bytes:
        """The bytes at `loc`, unverified (FileNotFoundError when the pack is gone)."""
        if isinstance(self.backend, LocalBackend):
            fd = self._fds.get(loc.pack_id)
            if fd is None:
                fd = os.open(self.backend._read_path(pack_key(loc.pack_id)), os.O_RDONLY)
                self._fds[loc.pack_id] = fd
            return os.pread(fd, loc.length, loc.offset)
        return self.backend.read_range(pack_key(loc.pack_id), loc.offset, loc.offset + loc.length)

    def read(self, h: str, locations: list[Location]) -> bytes | None:
        """Object `h` from the first of `locations` whose bytes hash to `h`."""
        for loc in locations:
            try:
                data = self.raw(loc)
            except (FileNotFoundError, UntrustedInputError):
                continue
            if len(data) == loc.length and hash_bytes(data) == h:
                return data
        return None

    def read_many(
        self, wanted: Iterable[tuple[str, Location]], gap: int = 1 << 20
    ) -> Iterator[tuple[str, bytes | None]]:
        """(hash, verified bytes or None) for each wanted (hash, location), reading neighbours
        in one range (two objects less than `gap` apart in the same pack share a request)."""
        by_pack: dict[str, list[tuple[str, Location]]] = {}
        for h, loc in wanted:
            by_pack.setdefault(loc.pack_id, []).append((h, loc))
        for pid, items in by_pack.items():
            items.sort(key=lambda x: x[1].offset)
            run: list[tuple[str, Location]] = []
            for item in items:
                loc = item[1]
                if run and (
                    loc.offset - (run[-1][1].offset + run[-1][1].length) > gap
                    or loc.offset + loc.length - run[0][1].offset > PACK_TARGET
                ):  # a run is one read: at most a pack's worth, whatever an index claims
                    yield from self._run(pid, run)
                    run = []
                run.append(item)
            if run:
                yield from self._run(pid, run)

    def _run(self, pid: str, run: list[tuple[str, Location]]) -> Iterator[tuple[str, bytes | None]]:
        start = run[0][1].offset
        end = max(loc.offset + loc.length for _, loc in run)
        try:
            blob = self.raw(Location(pid, start, end - start))
        except (FileNotFoundError, UntrustedInputError):
            for h, _ in run:
                yield h, None
            return
        view = memoryview(blob)
        for h, loc in run:
            piece = view[loc.offset - start : loc.offset - start + loc.length]
            ok = len(piece) == loc.length and hash_bytes(piece) == h
            yield h, bytes(piece) if ok else None
