"""The pack format: what a writer makes, an index decodes to, and a pack set finds."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.canonical import hash_bytes
from repro.errors import NewerFormatError, UntrustedInputError
from repro.store.packs import PackIndex, PackSet, PackWriter, check_pack_header, pack_id_of_key


def write_pack(tmp: str, blobs: list[bytes]) -> tuple[str, PackIndex, bytes]:
    w = PackWriter(tmp)
    for b in blobs:
        w.add(hash_bytes(b), b)
    pid, idx = w.finish(fsync=False)
    with open(tmp, "rb") as f:
        data = f.read()
    return pid, idx, data


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=40))
def test_every_object_reads_back_from_its_pack(tmp_path_factory, blobs) -> None:
    tmp = str(tmp_path_factory.mktemp("p") / "x.pack")
    pid, idx, data = write_pack(tmp, blobs)
    assert pid == hash_bytes(data)
    check_pack_header(data, "x")
    decoded = PackIndex.decode(idx.encode(), "x", pid)
    assert decoded == idx
    ps = PackSet.build([decoded])
    for b in blobs:
        (loc,) = ps.locate(hash_bytes(b))
        assert data[loc.offset : loc.offset + loc.length] == b
    assert sorted(ps.hashes()) == sorted({hash_bytes(b) for b in blobs})
    assert hash_bytes(b"not there") not in ps


def test_an_object_in_two_packs_has_two_locations(tmp_path) -> None:
    a = write_pack(str(tmp_path / "a"), [b"one", b"two"])
    b = write_pack(str(tmp_path / "b"), [b"two", b"three"])
    ps = PackSet.build([a[1], b[1]])
    assert {loc.pack_id for loc in ps.locate(hash_bytes(b"two"))} == {a[0], b[0]}
    assert len(list(ps.hashes())) == 3


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d[:10],
        lambda d: b"XXXX" + d[4:],
        lambda d: d + b"\0",
        lambda d: d[:30] + bytes([d[30] ^ 1]) + d[31:],
    ],
)
def test_a_damaged_index_is_refused(tmp_path, mangle) -> None:
    pid, idx, _ = write_pack(str(tmp_path / "a"), [b"one", b"two"])
    with pytest.raises(UntrustedInputError):
        PackIndex.decode(mangle(idx.encode()), "remote 'r': packs/x.idx", pid)


def test_an_index_naming_bytes_outside_its_pack_is_refused(tmp_path) -> None:
    pid, idx, _ = write_pack(str(tmp_path / "a"), [b"one"])
    h, off, n = idx.entries[0]
    forged = PackIndex(pid, idx.pack_size, [(h, off, n + 100)])
    with pytest.raises(UntrustedInputError, match="outside its pack"):
        PackIndex.decode(forged.encode(), "x", pid)
    with pytest.raises(UntrustedInputError, match="names pack"):
        PackIndex.decode(idx.encode(), "x", "0" * 32)


def test_a_newer_index_format_is_refused_by_name(tmp_path) -> None:
    pid, idx, _ = write_pack(str(tmp_path / "a"), [b"one"])
    data = bytearray(idx.encode())
    data[4] = 9
    body = bytes(data[:-16])
    with pytest.raises(NewerFormatError):
        PackIndex.decode(body + bytes.fromhex(hash_bytes(body)), "x", pid)


def test_only_well_formed_pack_keys_are_recognised() -> None:
    pid = "ab" * 16
    assert pack_id_of_key(f"packs/{pid}.pack") == (pid, "pack")
    assert pack_id_of_key(f"packs/{pid}.idx") == (pid, "idx")
    for bad in ["packs/../x.idx", f"packs/{pid}.tmp", "packs/zz.pack", f"objects/{pid}.idx"]:
        assert pack_id_of_key(bad) is None
    assert os.sep  # keys are POSIX whatever the OS


def test_a_pack_published_on_a_backend_reads_back_verified(tmp_path) -> None:
    from repro.store.backend import LocalBackend
    from repro.store.packs import pack_key
    from repro.store.packstore import PackReader, load_packset, publish, unpublish

    backend = LocalBackend(str(tmp_path / "store"))
    blobs = [os.urandom(n) for n in (1, 100, 5000)]
    pid, idx, _ = write_pack(backend.tmp_path(), blobs)
    publish(
        backend,
        str(tmp_path / "store" / "tmp" / os.listdir(tmp_path / "store" / "tmp")[0]),
        pid,
        idx,
    )
    ps = load_packset(backend, "cache")
    with PackReader(backend) as r:
        for b in blobs:
            assert r.read(hash_bytes(b), ps.locate(hash_bytes(b))) == b
        got = dict(r.read_many((h, ps.locate(h)[0]) for h in ps.hashes()))
    assert got == {hash_bytes(b): b for b in blobs}
    # a flipped byte: that object no longer verifies, the others still do
    p = backend.path(pack_key(pid))
    os.chmod(p, 0o644)
    with open(p, "rb") as f:
        data = bytearray(f.read())
    loc = ps.locate(hash_bytes(blobs[2]))[0]
    data[loc.offset] ^= 1
    with open(p, "wb") as f:
        f.write(bytes(data))
    with PackReader(backend) as r:
        assert r.read(hash_bytes(blobs[2]), ps.locate(hash_bytes(blobs[2]))) is None
        assert r.read(hash_bytes(blobs[1]), ps.locate(hash_bytes(blobs[1]))) == blobs[1]
    unpublish(backend, pid)
    assert len(load_packset(backend, "cache")) == 0
