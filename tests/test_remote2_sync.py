"""Remote sync, second round: what a remote gc must keep of chunked objects
(`manifest_liveness`), a damaged packed copy healed by `push --verify-remote` and then pulled
from its good copy, no pack left in tmp by a failed wave of downloads, and a worker's inventory
taken once per process."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from repro.canonical import hash_bytes
from repro.project import Project
from repro.store.backend import LocalBackend
from repro.store.chunks import Manifest, manifest_key
from repro.store.objects import ObjectStore
from repro.store.sync import (
    Meter,
    fetch_objects,
    forget_indexes,
    inventory,
    manifest_liveness,
    push_objects,
    shared_inventory,
)
from tests.conftest import write
from tests.test_remote_packs import cli_at, fresh_copy, make_project

MiB = 1 << 20


def remote_store(path: Path) -> ObjectStore:
    return ObjectStore(LocalBackend(str(path)), name="remote 'r'")


def blobs(tag: str, n: int) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        data = f"{tag} object {i}\n".encode() * (i + 1)
        out[hash_bytes(data)] = data
    return out


def push_files(remote: ObjectStore, files: dict[str, bytes], tmp: Path) -> None:
    paths = {}
    for i, (h, data) in enumerate(files.items()):
        paths[h] = str(write(tmp, f"f{i}.bin", data))
    meter = Meter()
    res = push_objects(remote, list(paths), inventory(remote, meter), meter, paths=paths)
    assert res.sent == set(paths) and not res.corrupt and not res.failed


def chunks_of(remote: ObjectStore, h: str) -> set[str]:
    m = Manifest.decode(remote.backend.read_bytes(manifest_key(h)), h, "test")
    return {c for c, _ in m.chunks}


def test_manifest_liveness_keeps_live_chunks_and_names_dead_manifests(tmp_path) -> None:
    remote = remote_store(tmp_path / "remote")
    rng = random.Random(2)
    v1 = bytearray(rng.randbytes(6 * MiB))
    v2 = bytearray(v1)
    v2[3 * MiB] ^= 0xFF  # shares every chunk with v1 but one or two
    gone = bytes(rng.randbytes(5 * MiB))
    damaged = bytes(rng.randbytes(5 * MiB))
    files = {hash_bytes(bytes(d)): bytes(d) for d in (v1, v2, gone, damaged)}
    push_files(remote, files, tmp_path / "ws")
    h1, h2, hg, hd = files
    write(tmp_path / "remote", manifest_key(hd), b"not a manifest")
    write(tmp_path / "remote", "manifests/tmp-123", b"a writer's temporary file")

    keep, dead = manifest_liveness(remote.backend, {h2, hd, "f" * 32}, "remote 'r'")
    assert keep == chunks_of(remote, h2)  # every chunk of the live chunked object, only them
    assert dead == sorted([manifest_key(h1), manifest_key(hg)])
    shared = chunks_of(remote, h1) & keep
    assert shared and len(chunks_of(remote, h1) - keep) <= 2  # v1's shared chunks stay alive
    assert manifest_liveness(remote.backend, set(), "r") == (
        set(),
        sorted([*dead, manifest_key(h2), manifest_key(hd)]),
    )
    assert manifest_liveness(remote_store(tmp_path / "empty").backend, {h1}, "r") == (set(), [])


def test_verify_remote_heals_a_damaged_packed_copy_and_pull_uses_the_good_one(tmp_path) -> None:
    """A byte flipped inside a remote pack: `push --verify-remote` uploads our verified copy,
    and a fresh clone's pull then gets the object (the good copy, not the damaged one)."""
    from repro.store.packs import pack_key
    from repro.store.packstore import load_packset

    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote), [])
    for i in range(20):
        write(a, f"data/{i}.txt", f"line {i}\n" * (i + 1))
    cli_at(a, "add", "data", ok=True)
    cli_at(a, "push", ok=True)
    backend = LocalBackend(str(remote))
    h = hash_bytes(b"line 7\n" * 8)
    [loc] = load_packset(backend, "r").locate(h)
    pack = remote / pack_key(loc.pack_id)
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    data[loc.offset] ^= 0xFF
    pack.write_bytes(bytes(data))

    b0 = fresh_copy(a, tmp_path / "b0")
    assert cli_at(b0, "pull").code == 1  # damaged: refused
    r = cli_at(a, "push", "--verify-remote", "--json", ok=True).json()
    assert any(h[2:] in k for k in r["repaired"]), r
    b = fresh_copy(a, tmp_path / "b")
    cli_at(b, "pull", ok=True)
    assert Path(b, "data/7.txt").read_bytes() == b"line 7\n" * 8
    assert Project(b).cache.verify(h)


def test_a_failed_wave_of_pack_downloads_leaves_no_temp_files(tmp_path) -> None:
    remote = remote_store(tmp_path / "remote")
    wanted: dict[str, bytes] = {}
    for tag in ("a", "b", "c"):  # three packs
        objs = blobs(tag, 12)
        meter = Meter()
        push_objects(remote, list(objs), inventory(remote, meter), meter, blobs=objs)
        wanted.update(objs)
    meter = Meter()
    inv = inventory(remote, meter)
    assert len(inv.indexes) == 3
    first = min(wanted)  # its pack is the first of the wave: the others are still downloading
    [loc] = inv.locate(first)
    pack = tmp_path / "remote" / "packs" / f"{loc.pack_id}.pack"
    os.chmod(pack, 0o644)
    os.unlink(pack)
    os.mkdir(pack)  # a read error other than "gone": the wave fails
    (tmp_path / "p").mkdir()
    local = Project.init(tmp_path / "p").cache
    with pytest.raises(OSError):
        fetch_objects(local, remote, set(wanted), inv, meter)
    tmp = Path(local.local.tmp)  # where downloads land
    assert not tmp.exists() or os.listdir(tmp) == []
    assert all(local.verify(h) for h in local.all_hashes())


def test_a_worker_lists_the_remote_once_per_process(tmp_path) -> None:
    """`shared_inventory`: a second stage's send makes no listing; what this process sent is
    known; after `forget_indexes` (a gc there) the remote is listed again."""
    remote = remote_store(tmp_path / "remote")
    first = Meter()
    inv = shared_inventory(remote, first)
    assert first.requests > 0
    objs = blobs("w", 10)
    push_objects(remote, list(objs), inv, first, blobs=objs)
    again = Meter()
    assert shared_inventory(remote, again) is inv and again.requests == 0
    assert all(inv.has(h) for h in objs)
    res = push_objects(remote, list(objs), inv, again, blobs=objs)
    assert res.sent == set() and again.requests == 0  # nothing sent twice, nothing asked
    forget_indexes(remote.backend.url)
    fresh = Meter()
    inv2 = shared_inventory(remote, fresh)
    assert inv2 is not inv and fresh.requests > 0 and all(inv2.has(h) for h in objs)
