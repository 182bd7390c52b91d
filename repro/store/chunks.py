"""Large objects on a remote as content-defined chunks plus a manifest.

Why: a 1 GiB file with 1 MiB changed in the middle is a new object; pushed whole, it moves
1 GiB again. Cut by content (FastCDC: a cut point depends only on the bytes near it), the two
versions share every chunk but the one or two around the change, and only those move.

Chunking is how a large object lives on a *remote*; the local cache keeps it whole (links and
instant checkout), and its hash stays the hash of its whole content. On a remote:

    objects/<chunk hash>       each chunk: an ordinary object (small ones go into packs)
    manifests/<object hash>    msgpack {"format": 1, "size": N, "chunks": [[hash, length], ...]}

A manifest is written after every chunk it names is on the remote, so a manifest present means
the object is complete. A manifest read back is untrusted: `Manifest.decode` checks every field
(hashes are 32 hex, lengths positive and bounded, lengths sum to the size, the count bounded),
and the assembled content is verified against the object's hash before it is used.

Parameters (measured here, benchmarks/): FastCDC 2020 with an average of 768 KiB (+ the
256 KiB minimum: ~1.1 MiB chunks), maximum 4 MiB; the chunker runs at ~3.5 GB/s with both
hashes (each chunk's and the whole object's) over the page cache, above what a disk delivers,
so chunking while hashing in one read keeps the push near the read floor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from repro.canonical import content_hasher, hash_bytes
from repro.errors import NewerFormatError, UntrustedInputError
from repro.safety import is_hash
from repro.store.backend import Backend

MANIFESTS = "manifests"
MANIFEST_FORMAT = 1
# Objects of at least this size are chunked on remotes. Below it an object is a few chunks at
# most, and the request per chunk plus the manifest cost more than the dedup saves.
CHUNK_MIN = 4 << 20
CHUNK_AVG = 768 << 10  # FastCDC's `avg_size`; actual chunks average this + CHUNK_LOW
CHUNK_LOW = 256 << 10
CHUNK_MAX = 4 << 20
# A manifest naming more chunks than this is refused (1 TiB at the smallest chunk size).
MAX_CHUNKS = 1 << 22
# The most bytes a manifest takes (MAX_CHUNKS entries of [32-char hash, length]: 40 bytes each
# in msgpack, plus its fields). Readers ask a remote for no more than this (`read_manifest`), so
# a hostile manifest of gigabytes is refused without being read whole.
MAX_MANIFEST_BYTES = MAX_CHUNKS * 40 + 256


def manifest_key(h: str) -> str:
    return f"{MANIFESTS}/{h}"


def manifest_hash_of_key(key: str) -> str | None:
    """The object hash a `manifests/<hash>` key names, or None for any other key (a listing of a
    remote is untrusted: a temporary name or a hostile one is ignored)."""
    folder, _, name = key.partition("/")
    return name if folder == MANIFESTS and is_hash(name) else None


@dataclass
class Manifest:
    """Object `hash` (of `size` bytes) as its chunks, in order: (chunk hash, length)."""

    hash: str
    size: int
    chunks: list[tuple[str, int]]

    def encode(self) -> bytes:
        import msgpack

        return msgpack.packb(
            {
                "chunks": [[h, n] for h, n in self.chunks],
                "format": MANIFEST_FORMAT,
                "size": self.size,
            }
        )

    @classmethod
    def decode(cls, data: bytes, h: str, source: str) -> Manifest:
        """The manifest of object `h` read from `source` (a remote and key, named in errors),
        every field checked; UntrustedInputError or NewerFormatError otherwise."""
        import msgpack

        def bad(problem: str) -> UntrustedInputError:
            return UntrustedInputError(source, "manifest", h, problem)

        if len(data) > MAX_MANIFEST_BYTES:
            raise bad("is larger than any manifest can be")
        try:
            d = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception:
            raise bad("is not a readable manifest") from None
        if not isinstance(d, dict):
            raise bad("is not a manifest record")
        fmt = d.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise bad("has no valid format number")
        if fmt > MANIFEST_FORMAT:
            raise NewerFormatError(source, fmt, MANIFEST_FORMAT)
        size, chunks = d.get("size"), d.get("chunks")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad("has no valid size")
        if not isinstance(chunks, list) or not chunks or len(chunks) > MAX_CHUNKS:
            raise bad("has no chunk list, or too many chunks")
        if len(chunks) > size // CHUNK_LOW + 1:
            raise bad(f"names {len(chunks)} chunks for {size} bytes")
        out: list[tuple[str, int]] = []
        total = 0
        for c in chunks:
            if not (isinstance(c, list) and len(c) == 2 and is_hash(c[0])):
                raise bad("names a chunk that is not [hash, length]")
            n = c[1]
            if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= CHUNK_MAX:
                raise bad(f"gives chunk {c[0]} an impossible length")
            total += n
            out.append((c[0], n))
        if total != size:
            raise bad(f"has chunks summing to {total} bytes, not its size {size}")
        return cls(h, size, out)


def read_manifest(backend: Backend, h: str, source: str) -> tuple[Manifest, int]:
    """(the checked manifest of object `h` on `backend`, the bytes read), reading at most one
    byte more than any manifest can take (FileNotFoundError when there is none). `source`
    names the remote in errors; the key is added."""
    key = manifest_key(h)
    data = backend.read_range(key, 0, MAX_MANIFEST_BYTES + 1)
    return Manifest.decode(data, h, f"{source}: {key}"), len(data)


def chunker():
    """A FastCDC chunker with repro's parameters (pyfastcdc is imported only here)."""
    from pyfastcdc import FastCDC

    return FastCDC(CHUNK_AVG, min_size=CHUNK_LOW, max_size=CHUNK_MAX)


def cut_file(path: str) -> Iterator[tuple[str, memoryview]]:
    """(chunk hash, chunk bytes) of the file at `path`, in order, in one read of the file. Each
    chunk's bytes are valid only until the next one is produced (copy them to keep them)."""
    with open(path, "rb") as f:
        for c in chunker().cut_stream(f):
            yield hash_bytes(c.data), c.data


def chunk_file(path: str) -> tuple[str, list[tuple[str, int]]]:
    """(the whole file's hash, its chunks) in one read: the chunks' and the whole content's hash
    are computed from the same bytes."""
    whole = content_hasher()
    chunks: list[tuple[str, int]] = []
    for h, data in cut_file(path):
        whole.update(data)
        chunks.append((h, len(data)))
    return whole.hexdigest(), chunks
