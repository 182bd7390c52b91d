"""Pack files: many small objects in one file, found through an index (git/restic style).

Why: one file per object costs an open, a write, a close and a directory entry locally, and one
request per object remotely; 20,000 objects of 4 KiB are 20,000 of each. A pack holds thousands
of them and costs one write (one PUT remotely); its index answers "where is object h" without
touching the pack.

Layout (beside `objects/`; the logical layout and every hash are unchanged):

    packs/<pack id>.pack    b"RPAK" + u32 version, then the objects' bytes back to back
    packs/<pack id>.idx     the index, published only after its pack is complete

The pack id is the content hash of the whole pack file (so a pack can be verified against its
name, like an object). An index is:

    b"RIDX" | u32 version | u32 count | u64 pack size | 16 bytes pack id |
    count × (16-byte object digest, u64 offset, u32 length), sorted by digest |
    16 bytes: the content hash of everything before it

Packs and indexes are immutable. A writer publishes the pack first and its index second, each
atomically (a temporary name and a rename, or one PUT), so a kill at any moment leaves either a
complete pack with its index, or a pack no index names (an orphan that gc removes), never an
index naming bytes that are not there. A reader treats an index as untrusted input
(`PackIndex.decode` checks every field) and still verifies every object it reads from a pack
against the object's hash; an object may be found in several packs (a repack, a heal), and a
reader takes the first copy that verifies.

This module is pure format and lookup: no backend, no project. `ObjectStore` (local cache) and
the transfer code (remotes) put these pieces on a backend.
"""

from __future__ import annotations

import contextlib
import os
import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from repro.canonical import content_hasher, hash_bytes
from repro.errors import NewerFormatError, UntrustedInputError

PACKS = "packs"
PACK_MAGIC = b"RPAK"
INDEX_MAGIC = b"RIDX"
PACK_FORMAT = 1
INDEX_FORMAT = 1
PACK_HEADER = PACK_MAGIC + struct.pack("<I", PACK_FORMAT)
HEADER_SIZE = len(PACK_HEADER)

# Objects smaller than this go into packs; larger ones stay loose (links and ranged reads work
# for them, and one more file per megabyte costs nothing measurable). Measured in benchmarks/.
PACK_MAX_OBJECT = 1 << 20
# A pack is closed once it reaches this size (a few dozen requests for a million small files,
# and a pack small enough to fetch whole when most of it is wanted).
PACK_TARGET = 32 << 20

_INDEX_HEAD = struct.Struct("<4sIIQ16s")  # magic, version, count, pack size, pack id
_ENTRY = struct.Struct("<16sQI")  # digest, offset, length
_ENTRY_SIZE = _ENTRY.size
_DIGEST = 16


def index_size(n: int) -> int:
    """The bytes of an index of `n` objects (head, entries, checksum)."""
    return _INDEX_HEAD.size + n * _ENTRY_SIZE + _DIGEST


def pack_key(pack_id: str) -> str:
    return f"{PACKS}/{pack_id}.pack"


def index_key(pack_id: str) -> str:
    return f"{PACKS}/{pack_id}.idx"


def pack_id_of_key(key: str) -> tuple[str, str] | None:
    """(`pack id`, `"pack"` or `"idx"`) for a key under `packs/`, or None for anything else
    (a temporary name, a stray file): listings of a remote are untrusted."""
    folder, _, name = key.partition("/")
    if folder != PACKS or "/" in name:
        return None
    stem, dot, ext = name.rpartition(".")
    if not dot or ext not in ("pack", "idx") or not _is_hex32(stem):
        return None
    return stem, ext


def _is_hex32(s: str) -> bool:
    return len(s) == 32 and all(c in "0123456789abcdef" for c in s)


@dataclass(frozen=True)
class Location:
    """Where one copy of an object lives: `length` bytes at `offset` of pack `pack_id`."""

    pack_id: str
    offset: int
    length: int


@dataclass
class PackIndex:
    """One pack's index, decoded and checked. `entries` are (hex hash, offset, length), sorted."""

    pack_id: str
    pack_size: int
    entries: list[tuple[str, int, int]]

    def encode(self) -> bytes:
        entries = sorted(self.entries)
        parts = [
            _INDEX_HEAD.pack(
                INDEX_MAGIC, INDEX_FORMAT, len(entries), self.pack_size, bytes.fromhex(self.pack_id)
            )
        ]
        parts.extend(_ENTRY.pack(bytes.fromhex(h), off, n) for h, off, n in entries)
        body = b"".join(parts)
        return body + bytes.fromhex(hash_bytes(body))

    @classmethod
    def decode(cls, data: bytes, source: str, pack_id: str | None = None) -> PackIndex:
        """Parse an index from `source` (a path or key, named in errors). Every field is checked:
        magic, format, count against the length, the checksum, the pack id (against `pack_id`,
        the one its name gives), digests strictly increasing, every object inside the pack and
        shorter than PACK_MAX_OBJECT (what every writer keeps to: a reader then never allocates
        more than that for one object, whatever an index claims)."""
        entries = list(_iter_index(data, source, pack_id))
        head = _INDEX_HEAD.unpack_from(data, 0)
        return cls(head[4].hex(), head[3], entries)

    def __len__(self) -> int:
        return len(self.entries)


def _bad(source: str, problem: str) -> UntrustedInputError:
    return UntrustedInputError(source, "pack index", "", problem)


def _iter_index(
    data: bytes, source: str, pack_id: str | None = None
) -> Iterator[tuple[str, int, int]]:
    """The checked entries of index bytes `data` (see `PackIndex.decode`), in digest order."""
    if len(data) < _INDEX_HEAD.size + _DIGEST:
        raise _bad(source, "is truncated")
    magic, version, count, pack_size, pid = _INDEX_HEAD.unpack_from(data, 0)
    if magic != INDEX_MAGIC:
        raise _bad(source, "is not a repro pack index")
    if version > INDEX_FORMAT:
        raise NewerFormatError(source, version, INDEX_FORMAT)
    if version < 1:
        raise _bad(source, f"has an unknown format {version}")
    if len(data) != _INDEX_HEAD.size + count * _ENTRY_SIZE + _DIGEST:
        raise _bad(source, "is truncated or has trailing bytes")
    body = memoryview(data)[: len(data) - _DIGEST]
    if hash_bytes(body) != data[-_DIGEST:].hex():
        raise _bad(source, "fails its checksum")
    if pack_id is not None and pid.hex() != pack_id:
        raise _bad(source, f"names pack {pid.hex()}, not {pack_id}")
    prev = b""
    for i in range(count):
        digest, off, n = _ENTRY.unpack_from(data, _INDEX_HEAD.size + i * _ENTRY_SIZE)
        if digest <= prev:
            raise _bad(source, "is not sorted (or repeats an object)")
        if off < HEADER_SIZE or off + n > pack_size:
            raise _bad(source, f"places object {digest.hex()} outside its pack")
        if n >= PACK_MAX_OBJECT:  # no writer packs one: a hostile index's memory bomb
            raise _bad(source, f"gives object {digest.hex()} a length no pack holds ({n})")
        prev = digest
        yield digest.hex(), off, n


class PackWriter:
    """Builds one pack in a local temporary file, hashing it as it grows.

    `add` appends an object; `full` says when the pack reached its target; `finish` closes the
    file and returns the pack's id and index. Publishing (rename or upload, pack before index)
    is the caller's job, so one writer serves the local cache and every remote."""

    def __init__(self, tmp_path: str, target: int = PACK_TARGET) -> None:
        self.path = tmp_path
        self.target = target
        self._f = open(tmp_path, "wb")  # noqa: SIM115 - closed by finish/abort
        self._hasher = content_hasher()
        self._entries: list[tuple[str, int, int]] = []
        self._seen: set[str] = set()
        self.size = 0
        self._write(PACK_HEADER)

    def _write(self, data: bytes | memoryview) -> None:
        self._f.write(data)
        self._hasher.update(data)
        self.size += len(data)

    def __contains__(self, h: str) -> bool:
        return h in self._seen

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, h: str, data: bytes | memoryview) -> None:
        """Append object `h` (the caller hashed `data`; a repeat of `h` is skipped)."""
        if h in self._seen:
            return
        self._seen.add(h)
        self._entries.append((h, self.size, len(data)))
        self._write(data)

    @property
    def full(self) -> bool:
        return self.size >= self.target

    def flush(self) -> None:
        """Push what was added so far to the file (a reader may then read it back)."""
        self._f.flush()

    def finish(self, fsync: bool = True) -> tuple[str, PackIndex]:
        """Close the pack file; returns (pack id, its index). The file stays at `self.path`."""
        self._f.flush()
        if fsync:
            os.fsync(self._f.fileno())
        self._f.close()
        pack_id = self._hasher.hexdigest()
        return pack_id, PackIndex(pack_id, self.size, sorted(self._entries))

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def check_pack_header(data: bytes, source: str) -> None:
    """A pack's first bytes: the magic and a format this repro reads."""
    if len(data) < HEADER_SIZE or data[:4] != PACK_MAGIC:
        raise UntrustedInputError(source, "pack", "", "is not a repro pack")
    (version,) = struct.unpack_from("<I", data, 4)
    if version > PACK_FORMAT:
        raise NewerFormatError(source, version, PACK_FORMAT)


def _numbered(entries: list[tuple[str, int, int]], n: int) -> Iterator[tuple[str, int, int, int]]:
    for h, off, ln in entries:
        yield h, n, off, ln


class PackSet:
    """Every object in a set of packs, for lookups by hash.

    Memory is a few flat arrays (about 40 bytes an object, no Python object per entry), so a
    million packed objects cost ~40 MB, not the ~200 MB a dict of tuples would. Lookups bisect
    an array of the digests' first 8 bytes (a C-level search) and confirm the whole digest."""

    def __init__(self) -> None:
        self.pack_ids: list[str] = []
        self.pack_sizes: list[int] = []
        self._prefix = array("Q")
        self._digests = bytearray()
        self._pack = array("I")
        self._offset = array("Q")
        self._length = array("I")

    @classmethod
    def build(cls, indexes: Iterable[PackIndex]) -> PackSet:
        """A set of `indexes` (entries of each sorted, as `PackIndex` guarantees)."""
        import heapq

        self = cls()
        streams = []
        for n, idx in enumerate(indexes):
            self.pack_ids.append(idx.pack_id)
            self.pack_sizes.append(idx.pack_size)
            streams.append(_numbered(idx.entries, n))
        for h, n, off, ln in heapq.merge(*streams):
            d = bytes.fromhex(h)
            self._prefix.append(int.from_bytes(d[:8], "big"))
            self._digests += d
            self._pack.append(n)
            self._offset.append(off)
            self._length.append(ln)
        return self

    def __len__(self) -> int:
        return len(self._prefix)

    def _positions(self, h: str) -> Iterator[int]:
        try:
            d = bytes.fromhex(h)
        except ValueError:
            return
        if len(d) != _DIGEST:
            return
        key = int.from_bytes(d[:8], "big")
        i = bisect_left(self._prefix, key)
        n = len(self._prefix)
        while i < n and self._prefix[i] == key:
            if self._digests[i * _DIGEST : (i + 1) * _DIGEST] == d:
                yield i
            i += 1

    def __contains__(self, h: str) -> bool:
        return next(self._positions(h), None) is not None

    def locate(self, h: str) -> list[Location]:
        """Every copy of object `h` (none when no pack holds it), newest pack last."""
        return [
            Location(self.pack_ids[self._pack[i]], self._offset[i], self._length[i])
            for i in self._positions(h)
        ]

    def hashes(self) -> Iterator[str]:
        """Every packed object's hash, in order, each once."""
        prev = None
        for i in range(len(self._prefix)):
            d = bytes(self._digests[i * _DIGEST : (i + 1) * _DIGEST])
            if d != prev:
                prev = d
                yield d.hex()

    def entries(self) -> Iterator[tuple[str, Location]]:
        """(hash, location) for every copy of every packed object."""
        for i in range(len(self._prefix)):
            h = self._digests[i * _DIGEST : (i + 1) * _DIGEST].hex()
            yield h, Location(self.pack_ids[self._pack[i]], self._offset[i], self._length[i])
