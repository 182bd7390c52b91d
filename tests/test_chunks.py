"""Large files live on a remote as content-defined chunks plus a manifest: a one-byte change
re-sends one chunk, pull assembles and verifies the whole, and a hostile manifest or chunk is
refused with one sentence, leaving nothing in the cache."""

from __future__ import annotations

import os
import random
from pathlib import Path

import msgpack
import pytest

from repro.canonical import hash_bytes
from repro.errors import NewerFormatError, UntrustedInputError
from repro.project import Project
from repro.store.chunks import CHUNK_MAX, CHUNK_MIN, Manifest, chunk_file
from tests.conftest import one_error, write
from tests.test_remote_packs import cli_at, fresh_copy, make_project, remote_keys

MiB = 1 << 20


def content(size: int, seed: int = 0) -> bytearray:
    return bytearray(random.Random(seed).randbytes(size))


def stored(keys: list[str]) -> set[str]:
    return {k for k in keys if k.split("/", 1)[0] in ("objects", "packs", "manifests")}


def test_a_one_byte_change_re_pushes_one_chunk(tmp_path, remote_url) -> None:
    url, opts = remote_url
    a = make_project(tmp_path, "a", url, opts)
    data = content(20 * MiB)
    write(a, "big.bin", bytes(data))
    cli_at(a, "add", "big.bin", ok=True)
    first = cli_at(a, "push", "--json", ok=True).json()
    h1 = hash_bytes(bytes(data))
    before = stored(remote_keys(url, opts))
    assert f"manifests/{h1}" in before
    assert f"objects/{h1[:2]}/{h1[2:]}" not in before  # chunks, not the whole file
    assert first["wire_bytes"] >= 20 * MiB

    data[10 * MiB] ^= 0xFF
    write(a, "big.bin", bytes(data))
    cli_at(a, "add", "big.bin", ok=True)
    second = cli_at(a, "push", "--json", ok=True).json()
    h2 = hash_bytes(bytes(data))
    new = stored(remote_keys(url, opts)) - before
    chunk_keys = {k for k in new if not k.startswith("manifests/")}
    assert new - chunk_keys == {f"manifests/{h2}"}
    assert len(chunk_keys) == 1, new  # one chunk (loose: a lone small chunk is not packed)
    assert second["wire_bytes"] <= CHUNK_MAX + 64 * 1024, second

    b = fresh_copy(a, tmp_path / "b")
    pulled = cli_at(b, "pull", "--json", ok=True).json()
    assert pulled["corrupt"] == [] and pulled["objects"] == 1
    assert Path(b, "big.bin").read_bytes() == bytes(data)


def test_chunking_is_one_read_and_matches_the_hash() -> None:
    """The whole hash from chunking equals the content hash; the chunks cover the file."""
    import tempfile

    data = bytes(content(CHUNK_MIN + 3 * MiB, seed=7))
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        h, chunks = chunk_file(f.name)
    assert h == hash_bytes(data)
    assert sum(n for _, n in chunks) == len(data) and all(n <= CHUNK_MAX for _, n in chunks)
    pos = 0
    for ch, n in chunks:
        assert hash_bytes(data[pos : pos + n]) == ch
        pos += n


H = "0" * 32
GOOD = [["a" * 32, 300_000], ["b" * 32, 200_000]]


@pytest.mark.parametrize(
    "record",
    [
        b"\xc1not msgpack",
        msgpack.packb([1, 2]),
        msgpack.packb({"format": 1, "size": 500_000, "chunks": [["A" * 32, 300_000]]}),
        msgpack.packb({"format": 1, "size": 500_000, "chunks": [["../x", 500_000]]}),
        msgpack.packb({"format": 1, "size": 600_000, "chunks": GOOD}),
        msgpack.packb({"format": 1, "size": 500_000, "chunks": [["a" * 32, -1], GOOD[1]]}),
        msgpack.packb({"format": 1, "size": 8 << 20, "chunks": [["a" * 32, 8 << 20]]}),
        msgpack.packb({"format": 1, "size": 10, "chunks": [["a" * 32, 5]] * 2}),
        msgpack.packb({"format": "1", "size": 500_000, "chunks": GOOD}),
        msgpack.packb({"format": 1, "size": 500_000}),
    ],
)
def test_manifest_decode_refuses_malformed_records(record) -> None:
    with pytest.raises(UntrustedInputError) as exc:
        Manifest.decode(record, H, "remote 'r': manifests/" + H)
    assert "manifests/" in exc.value.message


def test_manifest_newer_format_is_refused_and_a_good_one_reads() -> None:
    with pytest.raises(NewerFormatError):
        Manifest.decode(msgpack.packb({"format": 9, "size": 1, "chunks": []}), H, "r")
    m = Manifest.decode(msgpack.packb({"format": 1, "size": 500_000, "chunks": GOOD}), H, "r")
    assert m.size == 500_000 and m.chunks == [(c, n) for c, n in GOOD]
    assert Manifest.decode(m.encode(), H, "r") == m


@pytest.fixture
def chunked_remote(tmp_path):
    """A plain-folder remote holding one chunked file (big.bin, 6 MiB), and its project."""
    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote), [])
    data = bytes(content(CHUNK_MIN + 2 * MiB, seed=3))
    write(a, "big.bin", data)
    cli_at(a, "add", "big.bin", ok=True)
    cli_at(a, "push", ok=True)
    return a, remote, hash_bytes(data)


def _rewrite(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def _swap_chunks(remote: Path, h: str) -> str:
    """A well-formed manifest whose chunks all verify, in the wrong order."""
    p = remote / "manifests" / h
    d = msgpack.unpackb(p.read_bytes())
    d["chunks"][0], d["chunks"][1] = d["chunks"][1], d["chunks"][0]
    _rewrite(p, msgpack.packb(d))
    return f"manifests/{h}"


def _bad_lengths(remote: Path, h: str) -> str:
    p = remote / "manifests" / h
    d = msgpack.unpackb(p.read_bytes())
    d["size"] += 1
    _rewrite(p, msgpack.packb(d))
    return f"manifests/{h}"


def _newer(remote: Path, h: str) -> str:
    p = remote / "manifests" / h
    d = msgpack.unpackb(p.read_bytes())
    d["format"] = 2
    _rewrite(p, msgpack.packb(d))
    return f"manifests/{h}"


def _truncated(remote: Path, h: str) -> str:
    p = remote / "manifests" / h
    _rewrite(p, p.read_bytes()[:20])
    return f"manifests/{h}"


def _corrupt_chunk(remote: Path, h: str) -> str:
    d = msgpack.unpackb((remote / "manifests" / h).read_bytes())
    for c, _n in d["chunks"]:
        p = remote / "objects" / c[:2] / c[2:]
        if p.exists():  # a loose chunk: flip a byte in it
            data = bytearray(p.read_bytes())
            data[5] ^= 1
            _rewrite(p, bytes(data))
            return f"manifests/{h}"
    raise AssertionError("no loose chunk")


@pytest.mark.parametrize("damage", [_swap_chunks, _bad_lengths, _newer, _truncated, _corrupt_chunk])
def test_a_hostile_manifest_or_chunk_is_refused(tmp_path, chunked_remote, damage) -> None:
    a, remote, h = chunked_remote
    key = damage(remote, h)
    b = fresh_copy(a, tmp_path / "b")
    r = cli_at(b, "pull")
    assert key in one_error(r) and "remote 'origin'" in r.err
    assert not Path(b, "big.bin").exists()
    assert not Project(b).cache.has(h)
    tmp = Path(b, ".repro/cache/tmp")
    assert not tmp.exists() or not os.listdir(tmp)  # no assembled leftovers
