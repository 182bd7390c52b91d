"""fsck over packs: every index decoded, every packed object re-read; damage healed, kept aside."""

from __future__ import annotations

import json
import os
from pathlib import Path

from repro.canonical import hash_bytes
from repro.project import Project
from repro.store.packstore import list_packs
from tests.conftest import git, run_cli, write


def cli_at(root, *args, ok=None):
    return run_cli(list(args), root, check=ok)


def new_project(path: Path) -> str:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    Project.init(path)
    return str(path)


def files(root: str, n: int, tag: str = "v1") -> dict[str, bytes]:
    out = {}
    for i in range(n):
        out[f"d/f{i:02d}.txt"] = f"{tag} file {i} ".encode() * 30
        write(root, f"d/f{i:02d}.txt", out[f"d/f{i:02d}.txt"])
    return out


def flip(pack_dir: Path, pack_id: str, offset: int, ext: str = "pack") -> None:
    p = pack_dir / f"{pack_id}.{ext}"
    p.chmod(0o644)
    data = bytearray(p.read_bytes())
    data[offset] ^= 0xFF
    p.write_bytes(bytes(data))


def damage_object(root: str, data: bytes) -> str:
    """Flip a byte of the packed copy of `data` in the local cache; returns its pack id."""
    (loc,) = Project(root).cache.packs.locate(hash_bytes(data))
    flip(Path(root, ".repro", "cache", "packs"), loc.pack_id, loc.offset + 3)
    return loc.pack_id


def test_a_damaged_packed_object_is_named_healed_and_its_pack_kept_aside(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    blobs = files(root, 24)
    cli_at(root, "add", "d", ok=True)
    assert cli_at(root, "fsck", "--json", ok=True).json()["checked"] >= 13
    h = hash_bytes(blobs["d/f03.txt"])
    pid = damage_object(root, blobs["d/f03.txt"])
    r = cli_at(root, "fsck", "--json")
    assert r.code == 1 and r.json()["corrupt"] == [f"packs/{pid}.pack:{h}"]
    r = cli_at(root, "fsck", "--repair", "--json", ok=True).json()
    assert f"packs/{pid}.pack:{h}" in r["repaired"] and r["ok"]
    aside = Path(root, ".repro", "cache", "corrupt", "packs", f"{pid}.pack")
    assert aside.exists()  # the damaged pack is kept for inspection, never deleted
    assert pid not in list_packs(Project(root).cache.backend)[1]
    assert cli_at(root, "fsck", "--all", ok=True).code == 0
    cache = Project(root).cache
    assert all(cache.get_bytes(hash_bytes(b)) == b for b in blobs.values())


def test_damage_without_a_good_copy_is_moved_aside_and_the_rest_survives(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    blobs = files(root, 24)
    cli_at(root, "add", "d", ok=True)
    write(root, "d/f05.txt", "the workspace moved on")  # the only other copy is gone
    pid = damage_object(root, blobs["d/f05.txt"])
    r = cli_at(root, "fsck", "--repair", "--json")
    assert r.code == 1
    doc = r.json()
    assert f"packs/{pid}.pack" in doc["moved_aside"]
    assert f"packs/{pid}.pack:{hash_bytes(blobs['d/f05.txt'])}" not in doc["repaired"]
    assert Path(root, ".repro", "cache", "corrupt", "packs", f"{pid}.pack").exists()
    cache = Project(root).cache  # every other object of the pack was carried into a new one
    assert all(cache.get_bytes(hash_bytes(b)) == b for p, b in blobs.items() if p != "d/f05.txt")
    again = cli_at(root, "fsck", "--json")
    assert again.code == 1 and hash_bytes(blobs["d/f05.txt"]) in again.json()["missing"]
    assert again.json()["corrupt"] == []


def test_a_damaged_index_is_reported_and_its_objects_healed_from_the_workspace(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    blobs = files(root, 24)
    cli_at(root, "add", "d", ok=True)
    (loc,) = Project(root).cache.packs.locate(hash_bytes(blobs["d/f00.txt"]))
    flip(Path(root, ".repro", "cache", "packs"), loc.pack_id, 40, ext="idx")
    r = cli_at(root, "fsck", "--json")
    assert r.code == 1 and f"packs/{loc.pack_id}.idx" in r.json()["corrupt"]
    tree = json.loads(Path(root, "repro.lock").read_text())["data"]["d"]["hash"]
    assert tree in r.json()["missing"]  # the folder's objects are unfindable without the index
    r = cli_at(root, "fsck", "--repair", "--json").json()
    assert f"packs/{loc.pack_id}.idx" in r["moved_aside"]
    assert Path(root, ".repro", "cache", "corrupt", "packs", f"{loc.pack_id}.pack").exists()
    assert cli_at(root, "fsck", ok=True).code == 0
    cache = Project(root).cache
    assert all(cache.get_bytes(hash_bytes(b)) == b for b in blobs.values())


def test_remote_fsck_reads_packed_objects_and_repairs_them(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    blobs = files(root, 10)
    cli_at(root, "add", "d", ok=True)
    remote = tmp_path / "remote"
    cli_at(root, "remote", "add", "origin", str(remote), "--default", ok=True)
    cli_at(root, "push", ok=True)
    h = hash_bytes(blobs["d/f07.txt"])
    packs = remote / "packs"
    from repro.store.backend import LocalBackend
    from repro.store.packstore import load_packset

    (loc,) = load_packset(LocalBackend(str(remote)), "remote").locate(h)
    flip(packs, loc.pack_id, loc.offset)
    assert cli_at(root, "fsck", "-r", "origin", "--json").json()["corrupt"] == [
        f"packs/{loc.pack_id}.pack:{h}"
    ]
    r = cli_at(root, "fsck", "-r", "origin", "--repair", "--json", ok=True).json()
    assert f"packs/{loc.pack_id}.pack:{h}" in r["remote"]["repaired"]
    assert cli_at(root, "fsck", "-r", "origin", "--all", ok=True).code == 0
    clone = tmp_path / "clone"  # what the remote serves now pulls back whole
    os.makedirs(clone)
    git(clone, "init", "-q")
    Project.init(clone)
    for name in ("repro.lock", "repro.yaml"):
        Path(clone, name).write_bytes(Path(root, name).read_bytes())
    cli_at(str(clone), "remote", "add", "origin", str(remote), "--default", ok=True)
    cli_at(str(clone), "pull", ok=True)
    assert Path(clone, "d/f07.txt").read_bytes() == blobs["d/f07.txt"]
