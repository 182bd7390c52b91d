"""Shared caches through real stores: a local folder (`file://`), fsspec's `memory://`, and S3
through s3fs against a real S3 API server (moto) on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from repro.errors import CorruptObjectError
from repro.project import Project
from tests.conftest import AWS_ENV, git, one_error, run_cli, snapshot_tree, write

SPEC = """\
stages:
  prep:
    cmd: >-
      echo prep >> "$COUNTER"; mkdir -p feats;
      for i in 1 2 3; do echo "$i $(cat raw.txt)" > feats/$i.txt; done
    deps: [raw.txt]
    outs: [feats]
  train:
    cmd: echo train >> "$COUNTER"; cat feats/*.txt > model.bin
    deps: [feats]
    outs: [model.bin]
"""


def make_origin(tmp_path: Path, url: str, options: list[str]) -> tuple[str, str]:
    root = tmp_path / "origin"
    root.mkdir()
    git(root, "init", "-q")
    Project.init(root)
    write(root, "repro.yaml", SPEC)
    write(root, "raw.txt", "v1")
    counter = str(tmp_path / "counter")
    Path(counter).write_text("")
    args = ["remote", "add", "origin", url, "--default"]
    for o in options:
        args += ["-o", o]
    run_cli(args, root, env=AWS_ENV, check=True)
    return str(root), counter


def cli_at(root, *args, env=None, ok=None):
    return run_cli(list(args), root, env={**AWS_ENV, **(env or {})}, check=ok)


def clone(src: str, dst: Path) -> str:
    git(src, "add", "-A")
    git(src, "commit", "-qm", "pipeline", "--allow-empty")
    subprocess.run(["git", "clone", "-q", src, str(dst)], check=True)
    return str(dst)


def test_push_pull_and_fresh_clone_reproduces_without_running(tmp_path, remote_url) -> None:
    url, opts = remote_url
    origin, counter = make_origin(tmp_path, url, opts)
    env = {"COUNTER": counter}
    cli_at(origin, "run", env=env, ok=True)
    assert Path(counter).read_text().split() == ["prep", "train"]
    first = cli_at(origin, "push", "--json", ok=True).json()
    assert first["objects"] > 0 and first["metadata"] > 0
    again = cli_at(origin, "push", "--json", ok=True).json()
    assert again["objects"] == 0 and again["metadata"] == 0
    assert again["already_there"] == first["objects"] + first["already_there"]
    # A fresh clone: git plus the shared remote reproduce the pipeline without one stage running.
    b = clone(origin, tmp_path / "clone")
    assert not os.path.exists(os.path.join(b, "model.bin"))
    r = cli_at(b, "run", "--json", env=env, ok=True).json()
    assert {s["name"]: s["status"] for s in r["stages"]} == {
        "prep": "restored",
        "train": "restored",
    }
    assert Path(counter).read_text().split() == ["prep", "train"]
    want = snapshot_tree(origin, skip=(".repro", ".git"))
    got = snapshot_tree(b, skip=(".repro", ".git"))
    assert {k: v for k, v in got.items() if k != "repro.lock"} == {
        k: v for k, v in want.items() if k != "repro.lock"
    }
    # pull in another clone puts the outputs in place directly.
    c = clone(origin, tmp_path / "clone2")
    cli_at(c, "pull", ok=True)
    assert Path(c, "model.bin").read_bytes() == Path(origin, "model.bin").read_bytes()
    assert cli_at(c, "status", "--exit-code").code == 0
    # --no-remote: the remote run cache is not asked.
    d = clone(origin, tmp_path / "clone3")
    r = cli_at(d, "run", "--no-remote", "--json", env=env, ok=True).json()
    assert {s["status"] for s in r["stages"]} == {"ran"}


def test_checkout_fetches_from_remote_after_local_gc(tmp_path, remote_url) -> None:
    url, opts = remote_url
    origin, counter = make_origin(tmp_path, url, opts)
    env = {"COUNTER": counter}
    old = cli_at(origin, "run", "--json", env=env, ok=True).json()["snapshot"]
    old_model = Path(origin, "model.bin").read_bytes()
    cli_at(origin, "push", ok=True)
    write(origin, "raw.txt", "v2")
    cli_at(origin, "run", env=env, ok=True)
    g = cli_at(origin, "gc", "--keep-last", "1", "--json", ok=True).json()
    assert g["removed_objects"] > 0 and g["freed_bytes"] > 0 and g["removed_snapshots"] == 1
    assert cli_at(origin, "fsck", ok=True).code == 0
    # The old snapshot is gone locally but the remote still has it and its objects.
    proj = Project(origin)
    from repro.snapshots import list_snapshots

    assert old not in list_snapshots(proj.cache.backend)
    cli_at(origin, "pull", ok=True)  # brings the snapshot back
    cli_at(origin, "checkout", old, ok=True)
    assert Path(origin, "model.bin").read_bytes() == old_model


def test_interrupted_push_is_finished_by_running_it_again(tmp_path, remote_url) -> None:
    url, opts = remote_url
    origin, counter = make_origin(tmp_path, url, opts)
    cli_at(origin, "run", env={"COUNTER": counter}, ok=True)
    part = cli_at(origin, "push", "prep", "--json", ok=True).json()  # as if cut short
    rest = cli_at(origin, "push", "--json", ok=True).json()
    assert part["objects"] > 0 and rest["objects"] > 0
    assert rest["already_there"] >= part["objects"]
    assert cli_at(origin, "fsck", "--remote", "origin", ok=True).code == 0


def test_concurrent_pushes_do_not_corrupt_each_other(tmp_path, remote_url) -> None:
    url, opts = remote_url
    origin, _counter = make_origin(tmp_path, url, opts)
    for i in range(40):
        write(origin, f"data/f{i}.bin", os.urandom(2000))
    cli_at(origin, "add", "data", ok=True)
    twin = str(tmp_path / "twin")
    shutil.copytree(origin, twin, ignore=shutil.ignore_patterns("state.db*"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "repro.cli", "push", "-j", "4"],
            cwd=root,
            env={**os.environ, **AWS_ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in (origin, twin)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    fsck = cli_at(origin, "fsck", "--remote", "origin", "--json", ok=True).json()
    assert fsck["ok"] and fsck["checked"] >= 41


def damage_copy(store, h: str) -> tuple[str, object]:
    """Flip one byte of the remote's copy of object `h` where it lives today: inside its pack
    (index intact) or its loose file. Returns the key of that copy and a function that puts
    the original bytes back."""
    from repro.store.layout import object_key
    from repro.store.packs import pack_key
    from repro.store.packstore import load_packset

    locs = load_packset(store.backend, store.name).locate(h)
    key, at = (pack_key(locs[-1].pack_id), locs[-1].offset + 3) if locs else (object_key(h), 3)
    good = store.backend.read_bytes(key)
    bad = bytearray(good)
    bad[at] ^= 0xFF
    store.backend.write_bytes(key, bytes(bad))
    return key, lambda: store.backend.write_bytes(key, good)


def test_corrupted_remote_object_is_reported_and_never_used(tmp_path, remote_url) -> None:
    """A damaged copy on the remote, wherever an object lives there (inside a pack, a loose
    large object, a chunk of a chunked one): pull says so in one sentence naming the remote
    and the key, never uses it, nothing corrupt enters the cache, and fsck names the copy."""
    import json
    import random

    from repro.canonical import hash_bytes
    from repro.remote import open_remote
    from repro.store.chunks import Manifest, manifest_key

    url, opts = remote_url
    origin, counter = make_origin(tmp_path, url, opts)
    cli_at(origin, "run", env={"COUNTER": counter}, ok=True)
    rng = random.Random(15)
    large, huge = rng.randbytes(2 << 20), rng.randbytes(6 << 20)  # loose; chunked
    write(origin, "large.bin", large)
    write(origin, "huge.bin", huge)
    for i in range(12):  # enough small objects to make a pack
        write(origin, f"texts/{i}.txt", f"text {i}\n" * (i + 1))
    cli_at(origin, "add", "large.bin", "huge.bin", "texts", ok=True)
    cli_at(origin, "push", ok=True)
    lock = json.loads(Path(origin, "repro.lock").read_text())
    model = lock["stages"]["train"]["outs"]["model.bin"]["hash"]
    _, store = open_remote(Project(origin), "origin")
    h_huge = hash_bytes(huge)
    m = Manifest.decode(store.backend.read_bytes(manifest_key(h_huge)), h_huge, "test")
    chunk = m.chunks[1][0]
    text = hash_bytes(b"text 3\n" * 4)
    cases = [  # (its path, object pulled, the copy damaged, the key the error names)
        ("texts/3.txt", text, text, None),
        ("model.bin", model, model, None),
        ("large.bin", hash_bytes(large), hash_bytes(large), None),
        ("huge.bin", h_huge, chunk, manifest_key(h_huge)),
    ]
    for n, (path, h, damaged, named) in enumerate(cases):
        key, undo = damage_copy(store, damaged)
        assert n or key.startswith("packs/"), key  # the first copy damaged lives in a pack
        b = clone(origin, tmp_path / f"clone{n}")
        err = one_error(cli_at(b, "pull"))
        assert "remote 'origin'" in err and (named or key) in err and "corrupted" in err, err
        assert named is None or damaged in err, err
        cache = Project(b).cache
        assert not cache.has(h), path
        assert all(cache.verify(x) for x in cache.all_hashes())
        assert not os.path.exists(os.path.join(b, path))
        f = cli_at(origin, "fsck", "--remote", "origin", "--json")
        assert f.code == 1 and any(key in k for k in f.json()["corrupt"]), (path, f.out)
        undo()


def test_python_api_on_memory_remote(tmp_path) -> None:
    """The same push / pull / run-cache path through fsspec's memory:// store (in-process)."""
    from repro.pipeline.runner import run
    from repro.remote import add_remote
    from repro.transfer import pull, push

    a = tmp_path / "a"
    a.mkdir()
    pa = Project.init(a)
    url = f"memory://repro-{uuid.uuid4().hex}"
    add_remote(pa, "mem", url, default=True)
    write(
        a,
        "repro.yaml",
        "stages:\n  s:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n",
    )
    write(a, "in.txt", "hello")
    run(pa)
    rep = push(pa)
    assert rep.objects >= 2
    b = tmp_path / "b"
    shutil.copytree(a, b, ignore=shutil.ignore_patterns("cache", "state.db*", "out.txt"))
    pb = Project(b)
    assert not (b / "out.txt").exists()
    res = run(pb)
    assert res.stages[0].status == "restored"
    assert (b / "out.txt").read_text() == "hello"
    # A corrupted object in the memory store is refused.
    import fsspec

    h = pb.cache.all_hashes()
    c = tmp_path / "c"
    shutil.copytree(a, c, ignore=shutil.ignore_patterns("cache", "state.db*", "out.txt"))
    fs = fsspec.filesystem("memory")
    for hh in h:
        p = f"{url.split('://')[1]}/objects/{hh[:2]}/{hh[2:]}"
        if fs.exists("/" + p) or fs.exists(p):
            fs.pipe_file("/" + p if fs.exists("/" + p) else p, b"bad")
    with pytest.raises(CorruptObjectError):
        pull(Project(c))


def test_missing_bucket_and_unreachable_remote_are_clear(tmp_path, s3_server) -> None:
    from tests.s3server import free_port

    origin, _ = make_origin(
        tmp_path, f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", [f"endpoint_url={s3_server.url}"]
    )
    before = snapshot_tree(origin, skip=(".git",))
    r = cli_at(origin, "push")
    assert r.code == 1 and "remote 'origin'" in r.err and "Traceback" not in r.err
    assert "does not exist" in r.err or "not found" in r.err
    cli_at(
        origin,
        "remote",
        "add",
        "dead",
        "s3://b/x",
        "-o",
        f"endpoint_url=http://127.0.0.1:{free_port()}",
        ok=True,
    )
    r = cli_at(origin, "push", "--remote", "dead")
    assert r.code == 1 and "remote 'dead'" in r.err and "Traceback" not in r.err
    after = snapshot_tree(origin, skip=(".git",))
    assert {k for k in after if "config.toml" not in k and "state.db" not in k} == {
        k for k in before if "config.toml" not in k and "state.db" not in k
    }


def test_bad_credentials_are_one_clear_sentence(tmp_path) -> None:
    pytest.importorskip("s3fs")
    from tests.s3server import MotoServer

    server = MotoServer(check_auth=True)
    try:
        origin, _ = make_origin(tmp_path, "s3://bucket/x", [f"endpoint_url={server.url}"])
        r = cli_at(
            origin, "push", env={"AWS_ACCESS_KEY_ID": "wrong", "AWS_SECRET_ACCESS_KEY": "no"}
        )
        assert r.code == 1 and "access denied" in r.err and "credentials" in r.err
        assert len(r.err.strip().splitlines()) == 1
    finally:
        server.stop()


def test_credentials_never_go_into_config(project, cli) -> None:
    r = cli("remote", "add", "x", "s3://b", "-o", "secret=abc")
    assert r.code == 2 and "credentials" in r.err
    assert "abc" not in Path(project.root, ".repro", "config.toml").read_text()


def test_remote_list_default_remove(project, cli) -> None:
    cli("remote", "add", "a", "/tmp/a", ok=True)
    cli("remote", "add", "b", "s3://b/p", "-o", "endpoint_url=http://x", ok=True)
    rows = cli("remote", "list", "--json", ok=True).json()
    assert [(r["name"], r["default"]) for r in rows] == [("a", True), ("b", False)]
    assert rows[1]["options"] == {"endpoint_url": "http://x"}
    cli("remote", "default", "b", ok=True)
    cli("remote", "remove", "a", ok=True)
    rows = cli("remote", "list", "--json", ok=True).json()
    assert [(r["name"], r["default"]) for r in rows] == [("b", True)]


def test_gc_dry_run_and_keep(project, cli) -> None:
    write(project.root, "d.txt", "one")
    s1 = cli("add", "d.txt", "--json", ok=True).json()["snapshot"]
    os.chmod(os.path.join(project.root, "d.txt"), 0o644)
    write(project.root, "d.txt", "two")
    cli("add", "d.txt", ok=True)
    dry = cli("gc", "--keep-last", "1", "--dry-run", "--json", ok=True).json()
    assert dry["removed_objects"] >= 1 and dry["dry_run"]
    kept = cli("gc", "--keep-last", "1", "--keep", s1, "--json", ok=True).json()
    assert kept["removed_objects"] == 0 and kept["kept_snapshots"] == 2
    gone = cli("gc", "--keep-last", "1", "--json", ok=True).json()
    assert gone["removed_objects"] >= 1
    r = cli("checkout", s1)
    assert r.code == 1 and "no snapshot" in r.err


def test_fsck_finds_local_corruption(project, cli) -> None:
    write(project.root, "d.txt", "precious")
    cli("add", "d.txt", ok=True)
    import xxhash

    h = xxhash.xxh3_128_hexdigest(b"precious")
    p = Path(project.root, ".repro", "cache", "objects", h[:2], h[2:])
    os.chmod(p, 0o644)
    p.write_bytes(b"rotten")
    r = cli("fsck", "--json")
    assert r.code == 1 and f"objects/{h[:2]}/{h[2:]}" in r.json()["corrupt"]
