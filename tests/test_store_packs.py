"""Issue 15, packs in the local cache: small objects go into packs, every lookup sees packed
and loose objects alike, a damaged pack is detected and healed by storing good bytes again, and
a cache of loose objects written before packs keeps working and migrates in place."""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path

import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.project import Project
from repro.store.packs import PACK_MAX_OBJECT, PackIndex, PackWriter
from tests.conftest import git, one_error, snapshot_tree, write

BIG = PACK_MAX_OBJECT + 1000  # a file just over the threshold stays loose


def cache_files(root: str, folder: str) -> list[Path]:
    base = Path(root, ".repro", "cache", folder)
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


def packs(root: str) -> list[PackIndex]:
    out = []
    for idx in cache_files(root, "packs"):
        if idx.suffix == ".idx":
            out.append(PackIndex.decode(idx.read_bytes(), str(idx), idx.stem))
    return out


def fill(root: str, n: int = 40) -> dict[str, bytes]:
    """`n` small files (one executable, one empty, two with the same bytes) and a large one."""
    files = {f"data/sub{i % 3}/f{i}.bin": os.urandom(100 + 37 * i) for i in range(n)}
    files["data/empty.txt"] = b""
    files["data/same1.txt"] = files["data/same2.txt"] = b"same bytes\n"
    files["data/big.bin"] = os.urandom(BIG)
    for rel, data in files.items():
        write(root, rel, data)
    os.chmod(Path(root, "data/sub0/f0.bin"), 0o755)
    return files


def test_add_packs_small_files_and_checkout_puts_every_byte_back(project, cli) -> None:
    root = project.root
    files = fill(root)
    cli("add", "data", ok=True)
    idx = packs(root)
    distinct = {xxhash.xxh3_128_hexdigest(b) for b in files.values()}
    assert len(idx) == 1 and len(idx[0]) == len(distinct) - 1 + 1  # the big one out, the tree in
    loose = {p.parent.name + p.name for p in cache_files(root, "objects")}
    # Of the data, only the large file is an object file of its own (the snapshot's own small
    # records stay loose, as before).
    assert xxhash.xxh3_128_hexdigest(files["data/big.bin"]) in loose
    assert not loose & (distinct - {xxhash.xxh3_128_hexdigest(files["data/big.bin"])})
    small = Path(root, "data/sub1/f1.bin").stat()
    assert small.st_nlink == 1 and small.st_mode & 0o200  # not linked: an ordinary file
    before = snapshot_tree(root)
    shutil.rmtree(Path(root, "data"))
    out = cli("checkout", ok=True)
    assert snapshot_tree(root) == before, out.err
    assert os.access(Path(root, "data/sub0/f0.bin"), os.X_OK)
    assert not os.access(Path(root, "data/sub1/f1.bin"), os.X_OK)
    st_ = cli("status", "--json", ok=True).json()
    assert all(d["state"] == "up-to-date" for d in st_["data"]), st_
    # Removing one file and checking out again rewrites just that one.
    Path(root, "data/sub2/f2.bin").unlink()
    cli("checkout", ok=True)
    assert snapshot_tree(root) == before


def _flip_inside_pack(root: str, h: str) -> None:
    """Flip one byte of object `h` inside its pack, in place (as a disk fault would)."""
    for idx in packs(root):
        for eh, off, n in idx.entries:
            if eh == h:
                p = Path(root, ".repro", "cache", "packs", f"{idx.pack_id}.pack")
                os.chmod(p, 0o644)
                with open(p, "r+b") as f:
                    f.seek(off + n // 2)
                    b = f.read(1)
                    f.seek(off + n // 2)
                    f.write(bytes([b[0] ^ 0xFF]))
                return
    raise AssertionError(f"{h} is in no pack")


def test_a_flipped_byte_in_a_pack_is_detected_and_healed_by_adding_again(project, cli) -> None:
    root = project.root
    files = {f"data/f{i}.txt": f"file {i}\n".encode() * 40 for i in range(30)}
    for rel, data in files.items():
        write(root, rel, data)
    cli("add", "data", ok=True)
    victim = "data/f7.txt"
    h = xxhash.xxh3_128_hexdigest(files[victim])
    _flip_inside_pack(root, h)
    # Without the workspace copy, checkout refuses in one sentence and never writes bad bytes.
    Path(root, victim).unlink()
    err = one_error(cli("checkout"))
    assert "corrupt" in err and victim in err
    assert not Path(root, victim).exists()
    # Good bytes passing by heal it: the file is put back and added again.
    write(root, victim, files[victim])
    cli("add", "data", ok=True)
    assert len(packs(root)) == 2  # a new pack holds the good copy; the damaged one is left
    shutil.rmtree(Path(root, "data"))
    cli("checkout", ok=True)
    assert {k: v for k, v in snapshot_tree(root).items() if k.startswith("data/")} == files
    assert cli("status", "--json", ok=True).json()["data"][0]["state"] == "up-to-date"


def test_stage_outputs_are_packed_and_restored_from_the_run_cache(project, cli) -> None:
    root = project.root
    write(
        root,
        "gen.py",
        "import os\nos.makedirs('out', exist_ok=True)\n"
        "[open(f'out/{i}.txt', 'w').write(str(i) * 50) for i in range(25)]\n",
    )
    write(
        root,
        "repro.yaml",
        "stages:\n  gen:\n    cmd: python3 gen.py\n    deps: [gen.py]\n    outs: [out]\n",
    )
    cli("run", ok=True)
    packed = {h for idx in packs(root) for h, _, _ in idx.entries}
    outs = {xxhash.xxh3_128_hexdigest((str(i) * 50).encode()) for i in range(25)}
    assert outs <= packed
    assert not outs & {p.parent.name + p.name for p in cache_files(root, "objects")}
    before = snapshot_tree(root)
    shutil.rmtree(Path(root, "out"))
    r = cli("run", "--json", ok=True).json()
    assert r["stages"][0]["status"] == "restored"
    assert snapshot_tree(root) == before


def _unpack_to_loose(project: Project) -> set[str]:
    """Turn the cache into what repro wrote before packs: each object a read-only file of its
    own under objects/, vouched for by the stat cache, and no packs/ folder."""
    cache = project.cache
    rows = []
    hashes = set(cache.packs.hashes())
    for h in hashes:
        p = Path(cache.local.path(f"objects/{h[:2]}/{h[2:]}"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(cache.get_bytes(h))
        os.chmod(p, 0o444)
        rows.append(p)
    shutil.rmtree(cache.local.path("packs"))
    # As the old put_file did: each new object recorded as verified (its hash, its stat).
    from repro.hashing.state import StatKey

    old = 10**18  # a check time far after the files' mtime: not racy
    project.state.put_many(
        [(str(p), StatKey.of(os.stat(p)), p.parent.name + p.name, old) for p in rows]
    )
    return hashes


def test_an_old_loose_cache_keeps_working_and_migrates_without_rehashing(
    project, cli, tmp_path, monkeypatch
) -> None:
    root = project.root
    files = fill(root, 30)
    write(root, "count.py", "import os\nprint(len(os.listdir('data/sub1')))\n")
    write(
        root,
        "repro.yaml",
        "stages:\n  count:\n    cmd: python3 count.py > n.txt\n"
        "    deps: [count.py, data]\n    outs: [n.txt]\n",
    )
    cli("add", "data", ok=True)
    vouched = _unpack_to_loose(Project(root))
    assert len(vouched) > 30 and not cache_files(root, "packs")
    # Read by the new code, untouched: status, checkout, run, push.
    assert all(d["state"] == "up-to-date" for d in cli("status", "--json", ok=True).json()["data"])
    shutil.rmtree(Path(root, "data"))
    cli("checkout", ok=True)
    assert all(Path(root, rel).read_bytes() == data for rel, data in files.items())
    assert cli("run", "--json", ok=True).json()["stages"][0]["status"] == "ran"
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote), "--default", ok=True)
    cli("push", ok=True)
    # Migration in place: small loose objects folded into a pack; no object re-hashed (the
    # stat cache vouches for them), the loose files gone once the pack is published.
    import repro.store.objects as objects

    calls = []
    real = objects.hash_bytes
    monkeypatch.setattr(objects, "hash_bytes", lambda b: calls.append(len(b)) or real(b))
    p = Project(root)
    loose_before = p.cache.loose_hashes()
    assert p.cache.pack_loose(vouched) == len(vouched)
    assert len(calls) <= len(packs(root))  # the index of each pack, never an object
    p.cache.pack_loose()  # the rest (the run's and the snapshots' small objects)
    left = p.cache.loose_hashes()
    assert left < loose_before and all(p.cache.object_size(h) >= PACK_MAX_OBJECT for h in left)
    assert p.cache.verified_set(loose_before) == loose_before
    shutil.rmtree(Path(root, "data"))
    cli("checkout", ok=True)
    assert all(Path(root, rel).read_bytes() == data for rel, data in files.items())


def test_mixed_loose_and_packed_objects_check_out_together(project, cli) -> None:
    root = project.root
    for i in range(20):
        write(root, f"a/old{i}.txt", f"old {i}" * 10)
    cli("add", "a", ok=True)
    _unpack_to_loose(Project(root))  # a's objects are loose now
    for i in range(20):
        write(root, f"a/new{i}.txt", f"new {i}" * 10)  # a new version: new objects packed
    cli("add", "a", ok=True)
    assert cache_files(root, "packs") and cache_files(root, "objects")
    before = snapshot_tree(root)
    shutil.rmtree(Path(root, "a"))
    cli("checkout", ok=True)
    assert snapshot_tree(root) == before
    assert Path(root, "a/new3.txt").stat().st_nlink == 1  # packed ones are written out


def test_a_handful_of_small_files_stays_loose(project, cli) -> None:
    write(project.root, "one.txt", "one")
    write(project.root, "few/a.txt", "a")
    cli("add", "one.txt", "few", ok=True)
    assert not cache_files(project.root, "packs")  # a pack would only cost an index more


def test_import_pack_keeps_only_verified_objects(project) -> None:
    cache = project.cache
    good = {xxhash.xxh3_128_hexdigest(b): b for b in (b"alpha" * 9, b"beta" * 9, b"gamma" * 9)}
    w = PackWriter(cache.local.tmp_path())
    for h, b in good.items():
        w.add(h, b)
    _pid, index = w.finish()
    assert cache.import_pack(w.path, index) == set(good)
    assert dict(cache.read_many(good)) == good
    # A pack damaged on the way: its good objects are kept (in a new pack), the bad one not.
    more = {xxhash.xxh3_128_hexdigest(b): b for b in (b"delta" * 9, b"epsilon" * 9)}
    w = PackWriter(cache.local.tmp_path())
    for h, b in more.items():
        w.add(h, b)
    pid2, index2 = w.finish()
    bad_h, off, _n = index2.entries[0]
    with open(w.path, "r+b") as f:
        f.seek(off)
        f.write(b"X")
    assert cache.import_pack(w.path, index2) == set(more) - {bad_h}
    assert not cache.has_verified(bad_h)
    assert not Path(cache.local.path(f"packs/{pid2}.pack")).exists()


@st.composite
def trees(draw):
    names = draw(
        st.lists(
            st.sampled_from(["a", "b", "c", "d/e", "d/f", "g/h/i"]),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    names += [f"many/{i}" for i in range(draw(st.integers(0, 40)))]  # past PACK_MIN_FILES
    out = {}
    for name in names:
        kind = draw(st.sampled_from(["small", "small", "small", "empty", "large"]))
        seed = draw(st.integers(0, 2**16))
        size = {"small": draw(st.integers(1, 5000)), "empty": 0, "large": BIG}[kind]
        out[name] = (random.Random(seed).randbytes(size), draw(st.booleans()))
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=trees())
def test_any_set_of_files_added_then_checked_out_gives_the_same_bytes(tmp_path_factory, tree):
    from repro.data import add, checkout_lock

    root = tmp_path_factory.mktemp("prop")
    git(root, "init", "-q")
    project = Project.init(root)
    for name, (data, exe) in tree.items():
        p = write(root, f"ws/{name}", data)
        os.chmod(p, 0o755 if exe else 0o644)
    add(project, [str(Path(root, "ws"))])
    before = snapshot_tree(root)
    shutil.rmtree(Path(root, "ws"))
    project = Project(root)  # a new process's view: packs read from disk
    checkout_lock(project)
    assert snapshot_tree(root) == before
    for name, (_data, exe) in tree.items():
        mode = os.stat(Path(root, "ws", name)).st_mode
        assert bool(mode & stat.S_IXUSR) == exe


def test_add_json_counts_new_objects_packed_or_not(project, cli) -> None:
    write(project.root, "x/a.txt", "a")
    write(project.root, "x/b.txt", "b")
    write(project.root, "x/big.bin", os.urandom(BIG))
    out = cli("add", "x", "--json", ok=True).json()
    assert sorted(out) == ["added", "snapshot"]
    (entry,) = out["added"]
    assert entry["path"] == "x" and entry["isdir"] and entry["new_objects"] == 3
    again = cli("add", "x", "--json", ok=True).json()
    assert again["added"][0]["new_objects"] == 0 and again["added"][0]["hash"] == entry["hash"]


def test_stages_run_at_once_each_publish_their_own_pack(project, cli) -> None:
    root = project.root
    spec = "stages:\n"
    for name in ("left", "right"):
        write(
            root,
            f"{name}.py",
            f"import os\nos.makedirs('{name}', exist_ok=True)\n"
            f"[open(f'{name}/{{i}}.txt', 'w').write('{name}' * i) for i in range(1, 30)]\n",
        )
        spec += f"  {name}:\n    cmd: python3 {name}.py\n    deps: [{name}.py]\n"
        spec += f"    outs: [{name}]\n"
    write(root, "repro.yaml", spec)
    cli("run", "-j", "2", ok=True)
    assert len(packs(root)) == 2  # one per stage, each published when its outputs were stored
    before = snapshot_tree(root)
    shutil.rmtree(Path(root, "left"))
    shutil.rmtree(Path(root, "right"))
    cli("checkout", ok=True)
    assert snapshot_tree(root) == before


def test_a_new_process_trusts_a_published_pack_by_its_stat(project, cli, monkeypatch) -> None:
    root = project.root
    for i in range(20):
        write(root, f"d/{i}.txt", f"{i}" * 99)
    cli("add", "d", ok=True)
    import repro.store.objects as objects

    calls: list[int] = []
    real = objects.hash_bytes
    monkeypatch.setattr(objects, "hash_bytes", lambda b: calls.append(len(b)) or real(b))
    cache = Project(root).cache
    hashes = set(cache.packs.hashes())
    assert cache.verified_set(hashes) == hashes and not calls  # a stat, no re-read
    # A pack whose stat changed is read again before anything in it counts as stored.
    (pack,) = [p for p in cache_files(root, "packs") if p.suffix == ".pack"]
    os.utime(pack)
    cache = Project(root).cache
    assert cache.verified_set(hashes) == hashes and calls
