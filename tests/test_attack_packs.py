"""An attacker's pass over issue 15's storage boundaries: pack indexes, packs and manifests from
a remote, packs in a (shared) local cache, and checkouts of packed objects into a hostile
workspace. DESIGN.md "Trust boundaries": nothing read from a remote, a cache or a workspace
symlink writes outside the project, nothing corrupt is trusted; bad input gets one sentence
naming its source and key, a non-zero exit and no change on disk; never a traceback, exit 70 or
a hang. Each test drives the real CLI against a file remote (or moto S3 where key names matter).
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from repro.canonical import hash_bytes
from repro.project import Project
from repro.store.packs import PackIndex
from tests.conftest import (
    AWS_ENV,
    Result,
    git,
    new_bucket,
    one_error,
    run_cli,
    snapshot_tree,
    untouched,
    write,
)

MiB = 1 << 20


def cli_at(root, *args, ok=None) -> Result:
    return run_cli(list(args), root, env=AWS_ENV, check=ok)


def cli_limited(root, *args, seconds: float = 30, memory: int | None = None) -> Result:
    """The CLI with a deadline (a hang fails the test instead of stalling it) and, when given,
    a cap on its address space (a memory bomb fails with MemoryError instead of swapping)."""

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        p = subprocess.run(
            [sys.executable, "-m", "repro.cli", *args],
            cwd=root,
            env={**os.environ, "CI": "1", **AWS_ENV},
            capture_output=True,
            text=True,
            timeout=seconds,
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"repro {' '.join(args)} hung (more than {seconds} s)")
    return Result(p.returncode, p.stdout, p.stderr)


def make_project(tmp_path: Path, name: str, url: str | None = None, opts=()) -> str:
    root = tmp_path / name
    root.mkdir()
    git(root, "init", "-q")
    Project.init(root)
    if url is not None:
        args = ["remote", "add", "origin", url, "--default"]
        for o in opts:
            args += ["-o", o]
        cli_at(root, *args, ok=True)
    return str(root)


def fresh_copy(src: str, dst: Path) -> str:
    """A clone's view: repro.lock and config, no cache, no data."""
    dst.mkdir()
    git(dst, "init", "-q")
    Project.init(dst)
    for rel in ("repro.lock", ".repro/config.toml"):
        if os.path.exists(os.path.join(src, rel)):
            shutil.copyfile(os.path.join(src, rel), dst / rel)
    return str(dst)


def small_files(root: str, n: int = 40, folder: str = "data") -> dict[str, bytes]:
    files = {
        f"{folder}/s{i % 3}/f{i}.txt": f"small file {i}\n".encode() * (3 + i) for i in range(n)
    }
    for rel, data in files.items():
        write(root, rel, data)
    return files


def data_of(root: str, folder: str = "data") -> dict[str, bytes]:
    return {k: v for k, v in snapshot_tree(root).items() if k.startswith(folder + "/")}


def no_cache_change(root: str):
    """The local cache's objects and packs, to compare before and after a refused command."""
    base = Path(root, ".repro", "cache")
    return {
        str(p.relative_to(base)): p.read_bytes()
        for sub in ("objects", "packs")
        if (base / sub).exists()
        for p in (base / sub).rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def resign(data: bytes | bytearray) -> bytes:
    """An index with its checksum made right again (a hostile remote can do that)."""
    body = bytes(data[:-16])
    return body + bytes.fromhex(hash_bytes(body))


def only(paths) -> Path:
    [p] = list(paths)
    return p


def rewrite(p: Path, data: bytes) -> None:
    os.chmod(p, 0o644)
    p.write_bytes(data)


@pytest.fixture
def pushed(tmp_path):
    """A project whose small files went to a plain-folder remote as one pack, and a fresh
    clone of it (its lock and config, no cache): (a, b, remote, files)."""
    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote))
    files = small_files(a)
    cli_at(a, "add", "data", ok=True)
    cli_at(a, "push", ok=True)
    b = fresh_copy(a, tmp_path / "b")
    return a, b, remote, files


def refused_pull(b: str, key_part: str, **kw) -> str:
    """A pull that must fail in one sentence naming `key_part`, leaving no data behind."""
    before = no_cache_change(b)
    r = cli_limited(b, "pull", **kw)
    err = one_error(r)
    assert key_part in err, r.err
    assert not data_of(b)
    # Nothing unverified entered the cache: what it holds now verifies.
    store = Project(b).cache
    assert all(store.verify(h) for h in store.all_hashes())
    assert set(before) <= set(no_cache_change(b))
    return err


# -- a hostile remote: pack indexes ---------------------------------------------------------
def test_an_index_claiming_a_huge_object_and_pack_costs_no_memory(pushed) -> None:
    """A well-formed index (checksum right) whose pack is 2**62 bytes and whose first entry is
    4 GiB long: before, a pull read 4 GiB into memory (MemoryError, exit 70, under a 1.5 GiB
    cap). Now the index is refused (no writer packs an object of 1 MiB or more)."""
    _a, b, remote, _ = pushed
    idx = only((remote / "packs").glob("*.idx"))
    data = bytearray(idx.read_bytes())
    struct.pack_into("<Q", data, 12, 1 << 62)  # pack size
    head = struct.calcsize("<4sIIQ16s")
    struct.pack_into("<I", data, head + 16 + 8, 0xFFFFFFF0)  # entry 0's length
    rewrite(idx, resign(data))
    refused_pull(b, idx.name, memory=1536 * MiB)


def test_a_duplicate_or_foreign_index_is_refused(pushed, tmp_path) -> None:
    """An index repeating a digest is refused (its objects absent: the pull fails naming it);
    an index of pack A stored under pack B's name counts as absent (one warning), and the
    objects come from pack A, never through the false name."""
    _a, b, remote, _ = pushed
    idx = only((remote / "packs").glob("*.idx"))
    index = PackIndex.decode(idx.read_bytes(), "t", idx.stem)
    original = idx.read_bytes()
    dup = PackIndex(index.pack_id, index.pack_size, [index.entries[0], *index.entries])
    body = struct.pack(
        "<4sIIQ16s", b"RIDX", 1, len(dup.entries), dup.pack_size, bytes.fromhex(dup.pack_id)
    )
    body += b"".join(struct.pack("<16sQI", bytes.fromhex(h), o, n) for h, o, n in dup.entries)
    rewrite(idx, body + bytes.fromhex(hash_bytes(body)))
    refused_pull(b, idx.name)
    # The right index under another pack's name (and that pack's bytes beside it).
    rewrite(idx, original)
    other = "0" * 32
    shutil.copyfile(idx, remote / "packs" / f"{other}.idx")
    shutil.copyfile(remote / "packs" / f"{idx.stem}.pack", remote / "packs" / f"{other}.pack")
    r = cli_limited(b, "pull")  # the real pack still serves every object: a warning only
    assert r.code == 0 and "Traceback" not in r.err, r.err
    warned = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and f"packs/{other}.idx" in warned[0] and "absent" in warned[0]
    assert not list(Path(b, ".repro/cache/packs").glob(f"{other}.*"))


def test_a_pack_shorter_or_longer_than_its_index_says(pushed) -> None:
    """Truncated: the objects past the end are refused (one sentence naming the pack), the
    others are kept. Longer (trailing bytes): every object still verifies; the copy kept locally
    is a pack whose name is its content's hash."""
    a, b, remote, files = pushed
    pack = only((remote / "packs").glob("*.pack"))
    original = pack.read_bytes()
    rewrite(pack, original[: len(original) // 2])
    r = cli_limited(b, "pull")
    assert pack.name in one_error(r) and "corrupted" in r.err
    store = Project(b).cache
    assert all(store.verify(h) for h in store.all_hashes())
    rewrite(pack, original + os.urandom(5000))
    c = fresh_copy(a, Path(b).parent / "c")
    cli_limited(c, "pull")
    assert data_of(c) == files
    for p in Path(c, ".repro/cache/packs").glob("*.pack"):
        assert hash_bytes(p.read_bytes()) == p.stem


def test_a_renamed_pack_whose_objects_verify_is_not_trusted_by_its_name(pushed) -> None:
    """Pack and index renamed to another id (the index's own pack id rewritten to match): each
    object verifies, the pack's bytes do not hash to its name. Pull keeps the objects in a
    pack named by its real hash, never under the false name."""
    _a, b, remote, files = pushed
    idx = only((remote / "packs").glob("*.idx"))
    pid = idx.stem
    fake = "1" * 32
    data = bytearray(idx.read_bytes())
    data[20:36] = bytes.fromhex(fake)
    (remote / "packs" / f"{fake}.idx").write_bytes(resign(data))
    os.rename(remote / "packs" / f"{pid}.pack", remote / "packs" / f"{fake}.pack")
    idx.unlink()
    cli_limited(b, "pull")
    assert data_of(b) == files
    local = list(Path(b, ".repro/cache/packs").glob("*"))
    assert local and not [p for p in local if p.stem == fake]
    assert all(hash_bytes(p.read_bytes()) == p.stem for p in local if p.suffix == ".pack")
    assert cli_at(b, "fsck").code == 0


def test_hostile_key_names_on_an_s3_remote_are_ignored(tmp_path, s3_server) -> None:
    """Keys under packs/ and manifests/ that are not hashes, or that contain `..` or `/`:
    listed, ignored, never read or written through; the real objects still pull."""
    import s3fs

    bucket = new_bucket(s3_server)
    url, opts = f"s3://{bucket}/cache", [f"endpoint_url={s3_server.url}"]
    a = make_project(tmp_path, "a", url, opts)
    files = small_files(a)
    cli_at(a, "add", "data", ok=True)
    cli_at(a, "push", ok=True)
    fs = s3fs.S3FileSystem(endpoint_url=s3_server.url, key="testing", secret="testing")
    hex32 = "a" * 32
    for key in (
        f"packs/../{hex32}.idx",
        f"packs/x/{hex32}.idx",
        "packs/NOTAHASH.idx",
        f"packs/{hex32}.idx.tmp",
        f"manifests/../objects/{hex32[:2]}/{hex32[2:]}",
        f"manifests/{hex32}/..",
        "manifests/..",
        f"manifests/{hex32.upper()}",
    ):
        fs.pipe_file(f"{bucket}/cache/{key}", b"RIDX hostile")
    b = fresh_copy(a, tmp_path / "b")
    r = cli_limited(b, "pull")
    assert r.code == 0, r.err
    assert data_of(b) == files
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # nothing written beside the projects


def test_a_short_pack_and_an_empty_manifest_on_s3(tmp_path, s3_server) -> None:
    """S3 answers a range past an object's end with 416: before, a pack cut short (ranged
    reads past its end) and an empty manifest failed the pull with "range not satisfiable"
    after four retries. Now both read as short and are refused by name; the rest pulls."""
    import s3fs

    bucket = new_bucket(s3_server)
    url, opts = f"s3://{bucket}/cache", [f"endpoint_url={s3_server.url}"]
    a = make_project(tmp_path, "a", url, opts)
    small_files(a, 40)
    small_files(a, 16, "one")
    write(a, "big.bin", os.urandom(5 * MiB))
    cli_at(a, "add", "data", "one", "big.bin", ok=True)
    cli_at(a, "push", ok=True)
    fs = s3fs.S3FileSystem(endpoint_url=s3_server.url, key="testing", secret="testing")
    root = f"{bucket}/cache"
    [pack] = fs.glob(f"{root}/packs/*.pack")
    fs.pipe_file(pack, fs.cat_file(pack)[:8])  # the header only
    [manifest] = fs.glob(f"{root}/manifests/*")
    fs.pipe_file(manifest, b"")
    b = fresh_copy(a, tmp_path / "b")
    err = one_error(cli_limited(b, "pull", "one"))  # a few objects of the pack: ranged reads
    assert Path(pack).name in err and "corrupted" in err
    err = one_error(cli_limited(b, "pull", "big.bin"))
    assert f"manifests/{Path(manifest).name}" in err
    assert not Path(b, "big.bin").exists() and not data_of(b, "one")


# -- a hostile remote: manifests of chunked objects ----------------------------------------
@pytest.fixture
def chunked(tmp_path):
    """A 5 MiB file pushed chunked to a plain-folder remote: (a, b, remote, its hash)."""
    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote))
    data = os.urandom(5 * MiB)
    write(a, "big.bin", data)
    cli_at(a, "add", "big.bin", ok=True)
    cli_at(a, "push", ok=True)
    b = fresh_copy(a, tmp_path / "b")
    return a, b, remote, hash_bytes(data)


def _manifest(remote: Path, h: str, record) -> str:
    p = remote / "manifests" / h
    rewrite(p, msgpack.packb(record))
    return f"manifests/{h}"


@pytest.mark.parametrize(
    "chunks",
    [
        "zero-length",
        "overflowing length",
        "cycle",
        "negative",
    ],
)
def test_a_hostile_manifest_is_refused_in_one_sentence(chunked, chunks) -> None:
    _a, b, remote, h = chunked
    real = msgpack.unpackb((remote / "manifests" / h).read_bytes())
    first = real["chunks"][0][0]
    if chunks == "zero-length":
        record = {"format": 1, "size": 5 * MiB, "chunks": [[first, 0], *real["chunks"]]}
    elif chunks == "overflowing length":
        record = {"format": 1, "size": 2**64 - 1, "chunks": [[first, 2**64 - 1]]}
    elif chunks == "cycle":  # the object is its own (only) chunk
        record = {"format": 1, "size": 4 * MiB, "chunks": [[h, 4 * MiB]]}
    else:
        record = {"format": 1, "size": 5 * MiB, "chunks": [[first, -1], *real["chunks"]]}
    key = _manifest(remote, h, record)
    before = no_cache_change(b)
    r = cli_limited(b, "pull")
    assert key in one_error(r)
    assert not Path(b, "big.bin").exists() and no_cache_change(b) == before


def test_a_manifest_of_gigabytes_is_refused_without_reading_it(chunked) -> None:
    """A 4 GiB manifest (sparse: it costs the test no disk): before, pull read it whole (under
    a 1.5 GiB cap: MemoryError, exit 70). Now only what a manifest can be is read."""
    _a, b, remote, h = chunked
    p = remote / "manifests" / h
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.truncate(4 << 30)
    refused_pull(b, f"manifests/{h}", memory=1536 * MiB)


# -- a hostile shared/local cache -----------------------------------------------------------
@pytest.fixture
def packed(tmp_path):
    """A project whose small files are in one local pack: (root, files, pack path)."""
    root = make_project(tmp_path, "p")
    files = small_files(root)
    cli_at(root, "add", "data", ok=True)
    pack = only(Path(root, ".repro/cache/packs").glob("*.pack"))
    return root, files, pack


def test_packs_folder_symlinked_out_of_the_project(packed, outside) -> None:
    root, _files, _ = packed
    packs = Path(root, ".repro/cache/packs")
    for p in packs.iterdir():
        shutil.copyfile(p, outside / p.name)
    shutil.rmtree(packs)
    os.symlink(outside, packs)
    victim = dict(snapshot_tree(outside))
    shutil.rmtree(Path(root, "data"))
    r = cli_limited(root, "checkout")
    assert r.code not in (0, 70) and "Traceback" not in r.err, r.err
    assert snapshot_tree(outside) == victim
    write(root, "more/x.txt", "x")
    small_files(root, 30, "more")
    r = cli_limited(root, "add", "more")
    assert r.code not in (0, 70) and "Traceback" not in r.err, r.err
    assert snapshot_tree(outside) == victim


@pytest.mark.parametrize("kind", ["symlink to /etc/passwd", "fifo pack", "fifo index"])
def test_a_pack_or_index_that_is_not_a_regular_file(packed, kind) -> None:
    """Checkout must neither hang on a FIFO nor read through a symlink; the packed objects are
    then missing (one sentence), and a new add stores them again."""
    root, files, pack = packed
    if kind == "symlink to /etc/passwd":
        pack.unlink()
        os.symlink("/etc/passwd", pack)
    elif kind == "fifo pack":
        pack.unlink()
        os.mkfifo(pack)
    else:
        idx = pack.with_suffix(".idx")
        idx.unlink()
        os.mkfifo(idx)
    shutil.rmtree(Path(root, "data"))
    err = one_error(cli_limited(root, "checkout"))
    assert "data" in err
    assert not data_of(root)
    small_files(root)
    cli_limited(root, "add", "data")
    shutil.rmtree(Path(root, "data"))
    r = cli_limited(root, "checkout")
    assert r.code == 0, r.err
    assert data_of(root) == files


@pytest.mark.parametrize("kind", ["fifo", "symlink out"])
def test_a_large_loose_object_that_is_a_fifo_or_a_symlink(tmp_path, outside, kind) -> None:
    """Large objects stay loose beside the packs. One replaced by a FIFO: before, checkout and
    status hung reading it. One replaced by a symlink to a file outside: never followed. Both
    count as corrupt (one sentence naming the path), and adding the file again heals them."""
    root = make_project(tmp_path, "p")
    data = os.urandom(2 * MiB)
    write(root, "big.bin", data)
    cli_at(root, "add", "big.bin", ok=True)
    obj = Path(root, ".repro/cache/objects", hash_bytes(data)[:2], hash_bytes(data)[2:])
    obj.unlink()
    if kind == "fifo":
        os.mkfifo(obj)
    else:
        shutil.copyfile(Path(root, "big.bin"), outside / "copy.bin")
        os.symlink(outside / "copy.bin", obj)
    Path(root, "big.bin").unlink()
    assert "big.bin" in one_error(cli_limited(root, "checkout"))
    assert not Path(root, "big.bin").exists()
    st = cli_limited(root, "status")
    assert st.code == 0 and "big.bin" in st.out, st.err
    fsck = cli_limited(root, "fsck")  # before, fsck hashed the FIFO and hung
    assert fsck.code == 1 and "objects/" in fsck.out, (fsck.out, fsck.err)
    write(root, "big.bin", data)
    r = cli_limited(root, "add", "big.bin")
    assert r.code == 0, r.err
    assert obj.is_file() and not obj.is_symlink() and obj.read_bytes() == data
    assert snapshot_tree(outside) == {
        "victim.txt": b"precious",
        **({"copy.bin": data} if kind != "fifo" else {}),
    }


def test_a_pack_changed_in_place_with_its_mtime_put_back(packed) -> None:
    """The stat cache vouches for a pack by its stat; bytes changed in place with the mtime
    restored still change the ctime, so the pack is checked again and the bad object refused."""
    root, files, pack = packed
    st = pack.stat()
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(20)
        b0 = f.read(1)
        f.seek(20)
        f.write(bytes([b0[0] ^ 0xFF]))
    os.chmod(pack, st.st_mode)
    os.utime(pack, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.rmtree(Path(root, "data"))
    r = cli_limited(root, "checkout")
    assert "corrupt" in one_error(r)
    for rel, data in data_of(root).items():
        assert files[rel] == data  # nothing damaged was written


def test_packs_folder_that_cannot_be_written(packed) -> None:
    """`packs` is a file (root ignores permission bits, so this stands for an unwritable
    folder): an add that would publish a pack says so in one sentence."""
    root, _files, _ = packed
    packs = Path(root, ".repro/cache/packs")
    shutil.rmtree(packs)
    packs.write_text("not a folder")
    small_files(root, 30, "more")
    r = cli_limited(root, "add", "more")
    assert ".repro/cache/packs" in one_error(r)
    tmp = Path(root, ".repro/tmp")
    assert not [p for p in tmp.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"RPAK"]


# -- a hostile workspace ---------------------------------------------------------------------
def test_checkout_of_packed_files_does_not_write_through_a_symlink(packed, outside) -> None:
    """A tracked folder replaced by a symlink to a folder outside: refused in one sentence
    naming the path, nothing written there. A tracked file replaced by a symlink to a file
    outside: the symlink itself is replaced (the file outside keeps its bytes)."""
    root, files, _ = packed
    shutil.rmtree(Path(root, "data/s1"))
    os.symlink(outside, Path(root, "data/s1"))
    err = one_error(cli_limited(root, "checkout", "--force"))
    assert "data/s1/" in err and "symlink" in err
    assert untouched(outside)
    os.unlink(Path(root, "data/s1"))
    Path(root, "data/s0/f0.txt").unlink()
    os.symlink(outside / "victim.txt", Path(root, "data/s0/f0.txt"))
    r = cli_limited(root, "checkout", "--force")
    assert r.code == 0, r.err
    assert untouched(outside)
    assert data_of(root) == files and not Path(root, "data/s0/f0.txt").is_symlink()


def test_a_tree_naming_a_file_and_a_folder_of_the_same_name_is_refused(packed) -> None:
    """A tree (from a shared cache, named by a lock from git) holding `x` and `x/y`: before,
    checkout wrote `x`, then replaced it by a folder mid-checkout and reported success (and
    every later checkout flipped it back and forth, "saving" it each time). Now it is refused
    in one sentence naming the tree and the entry, before anything is written."""
    import json

    from repro.hashing.tree import Tree, TreeEntry

    root, _files, _ = packed
    cache = Project(root).cache
    with cache.batch():
        ents = [TreeEntry(f"z{i}", cache.put_bytes(b"%d" % i), 1, False) for i in range(20)]
        a, b = cache.put_bytes(b"file x\n"), cache.put_bytes(b"file y\n")
        ents += [TreeEntry("x", a, 7, False), TreeEntry("x/y", b, 7, False)]
        twice = [*ents[:20], TreeEntry("z3", a, 7, False)]
        clash, dup = cache.put_tree(Tree(tuple(ents))), cache.put_tree(Tree(tuple(twice)))
    for h, name in ((clash, "'x'"), (dup, "'z3'")):
        lock = json.loads(Path(root, "repro.lock").read_text())
        lock["data"]["hostile"] = {"hash": h, "isdir": True, "nfiles": 22, "size": 34}
        Path(root, "repro.lock").write_text(json.dumps(lock))
        err = one_error(cli_limited(root, "checkout"))
        assert f"tree {h}" in err and name in err
        assert not Path(root, "hostile").exists()


def test_a_folder_where_a_packed_file_goes(packed) -> None:
    """A folder (with a user's file in it) where a packed file is to be checked out: its
    content is saved first, then the file is put back."""
    root, files, _ = packed
    target = Path(root, "data/s2/f2.txt")
    target.unlink()
    write(root, "data/s2/f2.txt/mine.txt", "user's own")
    r = cli_limited(root, "checkout")
    assert r.code == 0, r.err
    assert data_of(root) == files
    assert "repro restore" in r.out  # the folder's content was saved first, and says how
    saved = r.out.split("repro restore ")[1].split()[0]
    assert Project(root).cache.has_verified(saved)


def test_gc_sets_a_damaged_pack_aside_and_says_so(packed) -> None:
    """Every byte of a pack zeroed (its tree included): gc removes nothing, moves the pack with
    its index to corrupt/packs/ and names it; before, it counted the pack's objects as removed."""
    root, _files, pack = packed
    os.chmod(pack, 0o644)
    data = pack.read_bytes()
    rewrite(pack, data[:8] + bytes(len(data) - 8))
    r = cli_at(root, "gc", "--json", ok=True).json()
    assert r["removed_objects"] == 0 and r["damaged_packed"], r
    kept = Path(root, ".repro/cache/corrupt/packs", pack.name)
    assert kept.read_bytes() == data[:8] + bytes(len(data) - 8)
    assert Path(root, ".repro/cache/corrupt/packs", pack.stem + ".idx").exists()
