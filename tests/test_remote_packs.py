"""Remotes speak packs: small objects go up in a few packs, what a remote holds is learned in a
handful of requests, pull reads whole packs or ranges, and a hostile pack index is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from repro.project import Project
from tests.conftest import AWS_ENV, git, one_error, run_cli, snapshot_tree, write

N_FILES = 2000


def cli_at(root, *args, ok=None):
    return run_cli(list(args), root, env=AWS_ENV, check=ok)


def make_project(tmp_path: Path, name: str, url: str, options: list[str]) -> str:
    root = tmp_path / name
    root.mkdir()
    git(root, "init", "-q")
    Project.init(root)
    args = ["remote", "add", "origin", url, "--default"]
    for o in options:
        args += ["-o", o]
    cli_at(root, *args, ok=True)
    return str(root)


def fresh_copy(src: str, dst: Path) -> str:
    """The project as a fresh clone sees it: repro.lock and config, no cache, no data."""
    dst.mkdir()
    git(dst, "init", "-q")
    Project.init(dst)
    for rel in ("repro.yaml", "repro.lock", ".repro/config.toml"):
        if os.path.exists(os.path.join(src, rel)):
            shutil.copyfile(os.path.join(src, rel), dst / rel)
    return str(dst)


def remote_keys(url: str, options: list[str]) -> list[str]:
    """Every key on the remote, listed independently of repro."""
    if url.startswith("file://") or "://" not in url:
        base = url.removeprefix("file://")
        return sorted(
            os.path.relpath(os.path.join(d, f), base)
            for d, _, fs in os.walk(base)
            for f in fs
            if not os.path.relpath(d, base).startswith("tmp")
        )
    import s3fs

    endpoint = options[0].split("=", 1)[1]
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
    root = url.removeprefix("s3://")
    return sorted(p[len(root) + 1 :] for p in fs.find(root))


def small_files(root: str, n: int = N_FILES) -> None:
    for i in range(n):
        write(root, f"data/d{i % 20}/f{i}.txt", f"small file {i}\n" * (1 + i % 7))


def test_2000_small_files_push_as_a_few_packs_and_pull_back(tmp_path, remote_url) -> None:
    url, opts = remote_url
    a = make_project(tmp_path, "a", url, opts)
    small_files(a)
    cli_at(a, "add", "data", ok=True)
    pushed = cli_at(a, "push", "--json", ok=True).json()
    held = len(Project(a).cache.all_hashes())
    assert held > N_FILES and pushed["objects"] == held  # the files, the tree, the snapshot's
    assert pushed["packs"] >= 1
    assert pushed["requests"] < 40, pushed  # not one request per object
    keys = remote_keys(url, opts)
    assert not [k for k in keys if k.startswith("objects/")]  # every object in packs
    packs = [k for k in keys if k.startswith("packs/")]
    assert 2 <= len(packs) <= 8 and len(packs) % 2 == 0  # each pack with its index
    again = cli_at(a, "push", "--json", ok=True).json()
    assert again["objects"] == 0
    assert again["requests"] <= 3  # nothing new: no upload, (almost) no listing

    b = fresh_copy(a, tmp_path / "b")
    pulled = cli_at(b, "pull", "--json", ok=True).json()
    assert pulled["objects"] >= N_FILES + 1 and pulled["corrupt"] == []
    assert pulled["requests"] < 40, pulled
    assert snapshot_tree(os.path.join(b, "data")) == snapshot_tree(os.path.join(a, "data"))


def test_pull_of_a_few_files_reads_ranges_not_whole_packs(tmp_path) -> None:
    """A plain-folder remote (packs renamed into place): pulling one target of many reads its
    objects with ranged reads, far fewer bytes than the packs hold."""
    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote), [])
    for i in range(400):  # ~8 MiB of packs
        write(a, f"data/f{i}.bin", os.urandom(20_000))
    write(a, "one/x.txt", "x" * 5000)
    cli_at(a, "add", "data", "one", ok=True)
    cli_at(a, "push", ok=True)
    assert not (remote / "tmp").exists() or not os.listdir(remote / "tmp")
    b = fresh_copy(a, tmp_path / "b")
    pulled = cli_at(b, "pull", "one", "--json", ok=True).json()
    pack_bytes = sum(p.stat().st_size for p in (remote / "packs").glob("*.pack"))
    assert pulled["objects"] == 2  # the folder's tree and its file
    assert pulled["requests"] <= 8  # listings, the index, a ranged read or two
    assert pulled["wire_bytes"] < pack_bytes / 4
    assert Path(b, "one/x.txt").read_text() == "x" * 5000


def test_old_remote_of_loose_objects_still_pulls(tmp_path) -> None:
    """A remote an older repro wrote (one file per object, no packs) pulls as before."""
    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote), [])
    small_files(a, 50)
    cli_at(a, "add", "data", ok=True)
    cache = Path(a, ".repro/cache")
    lay_out_loose(cache, remote)
    b = fresh_copy(a, tmp_path / "b")
    pulled = cli_at(b, "pull", "--json", ok=True).json()
    assert pulled["objects"] >= 51 and pulled["corrupt"] == []
    assert snapshot_tree(os.path.join(b, "data")) == snapshot_tree(os.path.join(a, "data"))


def lay_out_loose(cache: Path, remote: Path) -> None:
    """Every object of `cache` (packed or loose) as a loose file under `remote`, the layout of
    a remote an older repro pushed to."""
    from repro.store.layout import object_key

    store = Project(cache.parent.parent).cache
    for h in store.all_hashes():
        dst = remote / object_key(h)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(store.get_bytes(h))


@pytest.mark.parametrize(
    "damage",
    ["flip a byte", "truncate", "newer format", "offset out of range"],
)
def test_a_hostile_pack_index_counts_as_absent(tmp_path, damage) -> None:
    """A damaged index on the remote: pull warns once naming it and fetches nothing through it
    (the objects stay missing); push re-sends its objects in a new pack."""
    import struct

    from repro.canonical import hash_bytes

    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote), [])
    small_files(a, 60)
    cli_at(a, "add", "data", ok=True)
    cli_at(a, "push", ok=True)
    [idx] = list((remote / "packs").glob("*.idx"))
    data = bytearray(idx.read_bytes())
    if damage == "flip a byte":
        data[40] ^= 0xFF
    elif damage == "truncate":
        data = data[:-30]
    elif damage == "newer format":
        struct.pack_into("<I", data, 4, 99)
        body = bytes(data[:-16])
        data = bytearray(body + bytes.fromhex(hash_bytes(body)))
    else:  # a well-formed index (checksum fixed) placing an object past its pack's end
        struct.pack_into("<Q", data, 52, 10**9)  # entry 0: digest, then offset
        body = bytes(data[:-16])
        data = bytearray(body + bytes.fromhex(hash_bytes(body)))
    os.chmod(idx, 0o644)
    idx.write_bytes(bytes(data))
    b = fresh_copy(a, tmp_path / "b")
    r = cli_at(b, "pull", "--json")
    assert idx.name in one_error(r)
    assert not Path(b, "data").exists() or not any(Path(b, "data").rglob("*.txt"))
    cache_objects = Path(b, ".repro/cache/objects")
    assert not cache_objects.exists() or not any(p.is_file() for p in cache_objects.rglob("*"))
    # A machine pushing these objects (no memory of this remote) treats the damaged pack's
    # objects as absent and sends them again.
    twin = str(tmp_path / "twin")
    shutil.copytree(a, twin, ignore=shutil.ignore_patterns("state.db*"))
    pushed = cli_at(twin, "push", "--json", ok=True).json()
    assert pushed["objects"] >= 61 and pushed["packs"] == 1
    pulled = cli_at(b, "pull", "--json", ok=True).json()
    assert pulled["corrupt"] == []
    assert snapshot_tree(os.path.join(b, "data")) == snapshot_tree(os.path.join(a, "data"))


def test_a_corrupt_object_inside_a_remote_pack_is_refused(tmp_path) -> None:
    """Bytes changed inside a pack (index intact): the object fails verification on pull,
    one sentence names the remote and the pack, and nothing corrupt enters the cache."""
    remote = tmp_path / "remote"
    a = make_project(tmp_path, "a", str(remote), [])
    small_files(a, 60)
    cli_at(a, "add", "data", ok=True)
    cli_at(a, "push", ok=True)
    [pack] = list((remote / "packs").glob("*.pack"))
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    b = fresh_copy(a, tmp_path / "b")
    r = cli_at(b, "pull")
    assert r.code not in (0, 70) and "Traceback" not in r.err
    errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and pack.name in errors[0] and "corrupted" in errors[0], r.err
    store = Project(b).cache
    for h in store.all_hashes():
        assert store.verify(h)


def test_dask_worker_sends_and_fetches_through_packs_and_chunks(tmp_path) -> None:
    """The worker's object moving (`repro.execution.worker`: the Dask executor's) speaks the
    same layout: its outputs go up packed and chunked, and another worker's fresh cache gets
    them back verified."""
    from repro.canonical import hash_bytes
    from repro.execution.worker import WorkerError, fetch, send, worker_cache
    from repro.store.backend import LocalBackend
    from repro.store.objects import ObjectStore

    remote = ObjectStore(LocalBackend(str(tmp_path / "remote")), name="remote")
    files = {}
    for i in range(30):
        data = f"output {i}\n".encode() * 50
        p = write(tmp_path / "ws", f"out/{i}.txt", data)
        files[hash_bytes(data)] = str(p)
    big = os.urandom(5 << 20)
    files[hash_bytes(big)] = str(write(tmp_path / "ws", "model.bin", big))
    assert send(remote, files, {}, "stage 'train'") == 31
    keys = remote_keys(str(tmp_path / "remote"), [])
    assert any(k.startswith("packs/") for k in keys)
    assert f"manifests/{hash_bytes(big)}" in keys
    assert send(remote, files, {}, "stage 'train'") == 0  # all there: nothing sent again

    cache = worker_cache(str(tmp_path / "worker2"))
    fetch(cache, remote, set(files), "train")
    assert all(cache.get_bytes(h) == Path(p).read_bytes() for h, p in files.items())
    with pytest.raises(WorkerError, match="not on the remote"):
        fetch(cache, remote, {"f" * 32}, "train")
