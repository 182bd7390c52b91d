"""gc over packs: dead packs go, sparse ones are rewritten, orphans and old loose caches handled."""

from __future__ import annotations

import os
import time
from pathlib import Path

from repro.canonical import hash_bytes
from repro.project import Project
from repro.store.layout import object_key
from repro.store.packs import pack_key
from repro.store.packstore import list_packs, load_packset
from tests.conftest import git, run_cli, write


def cli_at(root, *args, ok=None):
    return run_cli(list(args), root, check=ok)


def new_project(path: Path) -> str:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    Project.init(path)
    return str(path)


def cache_dir(root: str) -> Path:
    return Path(root, ".repro", "cache")


def pack_ids(root: str) -> set[str]:
    indexed, packed = list_packs(Project(root).cache.backend)
    assert indexed == packed  # no orphan after a finished command
    return indexed


def pack_of(root: str, data: bytes) -> str:
    (loc,) = Project(root).cache.packs.locate(hash_bytes(data))
    return loc.pack_id


def files(root: str, prefix: str, n: int, tag: str) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        data = f"{tag} file {i} ".encode() * 20
        write(root, f"{prefix}/f{i:03d}.txt", data)
        out[f"{prefix}/f{i:03d}.txt"] = data
    return out


def reads_back(root: str, blobs) -> bool:
    """Every blob is stored (packed or loose) and reads back verified."""
    cache = Project(root).cache
    return all(cache.get_bytes(hash_bytes(b)) == b for b in blobs)


def test_gc_rewrites_a_sparse_pack_and_drops_a_dead_one(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    first = files(root, "d", 40, "v1")
    cli_at(root, "add", "d", ok=True)
    pack1 = pack_of(root, first["d/f000.txt"])
    # Change 30 of the 40 files: the first pack keeps 10 live objects of 41 (a quarter).
    second = dict(first)
    for i in range(30):
        second[f"d/f{i:03d}.txt"] = f"v2 file {i} ".encode() * 20
        write(root, f"d/f{i:03d}.txt", second[f"d/f{i:03d}.txt"])
    cli_at(root, "add", "d", ok=True)
    before = pack_ids(root)
    dry = cli_at(root, "gc", "--keep-last", "1", "--dry-run", "--json", ok=True).json()
    assert dry["packs_rewritten"] == 1 and dry["removed_objects"] == 31  # 30 files, 1 tree
    assert pack1 in pack_ids(root)  # a dry run changes nothing
    g = cli_at(root, "gc", "--keep-last", "1", "--json", ok=True).json()
    assert g["packs_rewritten"] == 1 and g["packs_written"] == 1
    assert g["removed_objects"] == 31 and g["pack_freed_bytes"] > 30 * 200
    assert g["freed_bytes"] >= g["pack_freed_bytes"]
    assert pack1 not in pack_ids(root) and pack1 in before
    assert reads_back(root, second.values())
    cache = Project(root).cache
    assert not any(hash_bytes(first[f"d/f{i:03d}.txt"]) in cache.packs for i in range(30))
    assert cli_at(root, "fsck", "--all", ok=True).code == 0
    # Everything old now dead: the pack it lived in goes whole.
    for p, data in first.items():
        write(root, p, data + b"!")
    cli_at(root, "add", "d", ok=True)
    g = cli_at(root, "gc", "--keep-last", "1", "--json", ok=True).json()
    assert g["packs_removed"] + g["packs_rewritten"] >= 2 and g["removed_objects"] == 41
    assert reads_back(root, [d + b"!" for d in first.values()])
    os.unlink(Path(root, "d/f000.txt"))
    cli_at(root, "checkout", "--force", ok=True)
    assert Path(root, "d/f000.txt").read_bytes() == first["d/f000.txt"] + b"!"


def test_gc_folds_an_old_loose_cache_into_packs_without_losing_anything(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    blobs = files(root, "d", 30, "old")
    cli_at(root, "add", "d", ok=True)
    # Lay the cache out as a repro before packs did: one loose file per object, no packs.
    cache = Project(root).cache
    local = cache.local
    assert local is not None
    hashes = set(cache.packs.hashes())
    for h in hashes:
        p = Path(local.ensure_parent(object_key(h)))
        if not p.exists():
            p.write_bytes(cache.get_bytes(h))
            p.chmod(0o444)
    for pid in pack_ids(root):
        for ext in ("idx", "pack"):
            os.unlink(local.path(f"packs/{pid}.{ext}"))
    assert cli_at(root, "fsck", ok=True).code == 0  # the old layout reads as it is
    g = cli_at(root, "gc", "--json", ok=True).json()
    assert g["packed_loose"] >= len(hashes) and g["removed_objects"] == 0
    assert not any(Path(local.path(object_key(h))).exists() for h in hashes)
    assert hashes <= set(load_packset(local, "cache").hashes())
    assert reads_back(root, blobs.values())
    assert cli_at(root, "fsck", "--all", ok=True).code == 0
    # A fold killed after its pack was published, before the loose copies went: gc finishes it.
    fresh = Project(root).cache
    for h in sorted(hashes)[:5]:
        Path(local.ensure_parent(object_key(h))).write_bytes(fresh.get_bytes(h))
    cli_at(root, "gc", ok=True)
    assert not any(Path(local.path(object_key(h))).exists() for h in hashes)
    assert reads_back(root, blobs.values())


def test_gc_removes_old_orphans_and_leaves_young_ones(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    files(root, "d", 5, "x")
    cli_at(root, "add", "d", ok=True)
    packs = cache_dir(root) / "packs"
    packs.mkdir(exist_ok=True)
    old, young = "a" * 32, "b" * 32
    for pid in (old, young):
        (packs / f"{pid}.pack").write_bytes(b"RPAK\x01\x00\x00\x00half a pack")
    (packs / f"{'c' * 32}.idx").write_bytes(b"an index whose pack is gone")
    past = time.time() - 3600
    os.utime(packs / f"{old}.pack", (past, past))
    os.utime(packs / f"{'c' * 32}.idx", (past, past))
    f = cli_at(root, "fsck", "--json", ok=True).json()  # orphans are notes, not damage
    assert any(pack_key(old) in n for n in f["notes"])
    g = cli_at(root, "gc", "--json", ok=True).json()
    assert g["orphans_removed"] == 2
    assert not (packs / f"{old}.pack").exists() and (packs / f"{young}.pack").exists()
    assert not (packs / f"{'c' * 32}.idx").exists()


def test_gc_never_drops_a_live_object_whose_packed_copy_is_damaged(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    first = files(root, "d", 20, "v1")
    cli_at(root, "add", "d", ok=True)
    pack1 = pack_of(root, first["d/f000.txt"])
    for i in range(18):
        write(root, f"d/f{i:03d}.txt", b"new " * 40 + bytes([i]))
    cli_at(root, "add", "d", ok=True)
    # Damage a file still live (f019) inside the sparse first pack.
    cache = Project(root).cache
    (loc,) = cache.packs.locate(hash_bytes(first["d/f019.txt"]))
    p = cache_dir(root) / "packs" / f"{pack1}.pack"
    p.chmod(0o644)
    data = bytearray(p.read_bytes())
    data[loc.offset] ^= 0xFF
    p.write_bytes(bytes(data))
    g = cli_at(root, "gc", "--keep-last", "1", "--json", ok=True).json()
    assert g["damaged_packed"] == [f"packs/{pack1}.pack:{hash_bytes(first['d/f019.txt'])}"]
    assert (cache_dir(root) / "corrupt" / "packs" / f"{pack1}.pack").exists()  # kept to inspect
    assert reads_back(root, [first["d/f018.txt"]])  # the other live object was carried over
    r = cli_at(root, "fsck", "--json")
    assert r.code == 1 and hash_bytes(first["d/f019.txt"]) in r.json()["missing"]
    assert cli_at(root, "fsck", "--repair", ok=True).code == 0  # the workspace still has it
    assert reads_back(root, [first["d/f019.txt"]])


def age_all(folder: Path, seconds: float = 7200) -> None:
    past = time.time() - seconds
    for dirpath, _dirs, names in os.walk(folder):
        for n in names:
            os.utime(os.path.join(dirpath, n), (past, past))


def pull_into_clone(root: str, clone: Path, remote: Path) -> None:
    clone.mkdir()
    git(clone, "init", "-q")
    Project.init(clone)
    for name in ("repro.lock", "repro.yaml"):
        Path(clone, name).write_bytes(Path(root, name).read_bytes())
    cli_at(str(clone), "remote", "add", "origin", str(remote), "--default", ok=True)
    cli_at(str(clone), "pull", ok=True)


def test_gc_on_a_remote_repacks_and_keeps_chunked_files_whole(tmp_path) -> None:
    import random

    from repro.store.chunks import CHUNK_MIN

    root = new_project(tmp_path / "p")
    remote = tmp_path / "remote"
    cli_at(root, "remote", "add", "origin", str(remote), "--default", ok=True)
    big = random.Random(5).randbytes(CHUNK_MIN + (1 << 20))
    write(root, "big.bin", big)
    cli_at(root, "add", "big.bin", ok=True)
    cli_at(root, "push", ok=True)  # chunked there: a manifest, its chunks (some packed)
    first = files(root, "d", 40, "v1")
    cli_at(root, "add", "d", ok=True)
    cli_at(root, "push", ok=True)
    for i in range(30):
        write(root, f"d/f{i:03d}.txt", f"v2 file {i} ".encode() * 20)
    cli_at(root, "add", "d", ok=True)
    cli_at(root, "push", ok=True)
    young = cli_at(root, "gc", "-r", "origin", "--keep-last", "1", "--json", ok=True).json()
    assert young["removed_objects"] == 0 and young["packs_rewritten"] == 0  # all within grace
    age_all(remote)
    g = cli_at(root, "gc", "-r", "origin", "--keep-last", "1", "--json", ok=True).json()
    assert g["removed_objects"] >= 31 and g["packs_rewritten"] + g["packs_removed"] >= 1
    assert g["pack_freed_bytes"] > 0
    assert cli_at(root, "fsck", "-r", "origin", "--all", ok=True).code == 0
    pull_into_clone(root, tmp_path / "clone", remote)
    assert Path(tmp_path, "clone", "big.bin").read_bytes() == big  # its chunks all survived
    assert Path(tmp_path, "clone", "d", "f039.txt").read_bytes() == first["d/f039.txt"]
    assert Path(tmp_path, "clone", "d", "f000.txt").read_bytes() == b"v2 file 0 " * 20


def test_gc_on_an_old_loose_remote_folds_it_into_packs(tmp_path) -> None:
    from repro.store.backend import LocalBackend

    root = new_project(tmp_path / "p")
    remote = tmp_path / "remote"
    cli_at(root, "remote", "add", "origin", str(remote), "--default", ok=True)
    blobs = files(root, "d", 30, "old")
    cli_at(root, "add", "d", ok=True)
    cli_at(root, "push", ok=True)
    rb = LocalBackend(str(remote))  # lay the remote out as before packs: one file per object
    packset = load_packset(rb, "remote")
    cache = Project(root).cache
    for h in packset.hashes():
        p = Path(rb.ensure_parent(object_key(h)))
        p.write_bytes(cache.get_bytes(h))
    for pid in packset.pack_ids:
        for ext in ("idx", "pack"):
            os.unlink(rb.path(f"packs/{pid}.{ext}"))
    n = len(Project(root).cache.loose_hashes() | set(packset.hashes()))
    g = cli_at(root, "gc", "-r", "origin", "--json", ok=True).json()
    assert g["packed_loose"] >= len(set(packset.hashes())) and g["removed_objects"] == 0
    assert n and not list(rb.list("objects"))  # every object is packed now
    assert cli_at(root, "fsck", "-r", "origin", "--all", ok=True).code == 0
    pull_into_clone(root, tmp_path / "clone", remote)
    assert all(Path(tmp_path, "clone", p).read_bytes() == b for p, b in blobs.items())


def test_a_damaged_index_stops_gc_from_removing_any_object(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    first = files(root, "d", 20, "v1")
    cli_at(root, "add", "d", ok=True)
    for i in range(18):  # two files stay as they were: they live on in the first pack
        write(root, f"d/f{i:03d}.txt", f"v2 {i}".encode() * 30)
    cli_at(root, "add", "d", ok=True)
    # The index of the pack holding the current tree is damaged: what the tree needs is unknown.
    idx = cache_dir(root) / "packs" / f"{pack_of(root, b'v2 0' * 30)}.idx"
    idx.chmod(0o644)
    idx.write_bytes(idx.read_bytes()[:-1] + b"\0")  # its checksum fails
    g = cli_at(root, "gc", "--keep-last", "1", "--json", ok=True).json()
    assert g["bad_indexes"] == [f"packs/{idx.name}"] and g["removed_objects"] == 0
    assert g["packs_rewritten"] == g["packs_removed"] == 0 and idx.exists()
    assert reads_back(root, [first["d/f018.txt"], first["d/f019.txt"]])
