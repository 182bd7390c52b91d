"""Issue 9, sections 6 and 7: no corrupt object or swapped record is ever trusted, and
corruption heals whenever good bytes pass by.

Damage is done as a disk fault or a careless tool would: an object file made writable and then
a byte flipped, the file truncated, or emptied. The only other copy of the content is in the
workspace (the cache copies rather than links here, so the workspace file is independent).
Everything is driven through the real CLI, against a file remote and S3 (moto on loopback).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.project import Project
from tests.conftest import AWS_ENV, git, run_cli, write

DAMAGES = ("flip", "truncate", "empty")
STAGE = 'stages:\n  s:\n    cmd: cp in.txt out.txt; echo x >> "$COUNTER"\n'
STAGE += "    deps: [in.txt]\n    outs: [out.txt]\n"


def h_of(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def obj(root: str, h: str) -> Path:
    return Path(root, ".repro", "cache", "objects", h[:2], h[2:])


def damage(p: Path, kind: str, pos: int = 0, xor: int = 0xFF) -> None:
    """Damage object file `p` in place (objects are read-only: chmod first)."""
    os.chmod(p, 0o644)
    data = p.read_bytes()
    if kind == "flip":
        i = pos % len(data)
        data = data[:i] + bytes([data[i] ^ (xor or 1)]) + data[i + 1 :]
    elif kind == "truncate":
        data = data[: len(data) // 2]
    else:
        data = b""
    with open(p, "r+b") as f:  # in place: same inode, as a disk fault or an in-place tool
        f.truncate(0)
        f.write(data)


def new_project(root: Path) -> str:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    Project.init(root)
    # Copies, not links: the workspace file is then the independent "only other copy".
    cfg = Path(root, ".repro", "config.toml")
    text = cfg.read_text()
    assert "[cache]" in text
    cfg.write_text(text.replace("[cache]\n", '[cache]\nlink = ["copy"]\n', 1))
    return str(root)


def cli_at(root: str, *args: str, env: dict | None = None, ok: bool | None = None):
    return run_cli(list(args), root, env={**AWS_ENV, **(env or {})}, check=ok)


def intact(root: str, h: str) -> bool:
    """The local cache holds a good copy of `h`, loose or in a pack."""
    from repro.errors import ReproError
    from repro.store.backend import LocalBackend
    from repro.store.objects import ObjectStore

    cache = ObjectStore(LocalBackend(str(Path(root, ".repro", "cache"))))
    try:
        return h_of(cache.get_bytes(h)) == h
    except ReproError:
        return False


@pytest.fixture
def remote(remote_url):
    """(url, options) of an empty remote of each kind."""
    return remote_url


def add_remote(root: str, url: str, opts: list[str]) -> None:
    args = ["remote", "add", "origin", url, "--default"]
    for o in opts:
        args += ["-o", o]
    cli_at(root, *args, ok=True)


def remote_store(root: str):
    from repro.remote import open_remote

    return open_remote(Project(root), "origin")[1]


# -- a damaged object never costs the workspace copy --------------------------------------------


@pytest.mark.parametrize("kind", DAMAGES)
def test_checkout_and_run_never_lose_the_workspace_copy(tmp_path, kind) -> None:
    root = new_project(tmp_path / "p")
    # checkout: the workspace holds B, B's object is damaged, checkout of A would overwrite it.
    write(root, "d.txt", "content A " * 50)
    s1 = cli_at(root, "add", "d.txt", "--json", ok=True).json()["snapshot"]
    b = ("content B " * 50).encode()
    write(root, "d.txt", b)
    s2 = cli_at(root, "add", "d.txt", "--json", ok=True).json()["snapshot"]
    damage(obj(root, h_of(b)), kind)
    cli_at(root, "checkout", s1, ok=True)
    assert intact(root, h_of(b)), "the workspace copy was not saved over the damaged object"
    cli_at(root, "checkout", s2, ok=True)
    assert Path(root, "d.txt").read_bytes() == b
    # run: out.txt holds A, A's object is damaged; a change of input makes the stage rerun.
    counter = str(tmp_path / "counter")
    env = {"COUNTER": counter}
    write(root, "repro.yaml", STAGE + "data: [d.txt]\n")
    a = ("output A " * 40).encode()
    write(root, "in.txt", a)
    cli_at(root, "run", env=env, ok=True)
    damage(obj(root, h_of(a)), kind)
    write(root, "in.txt", "output B")
    cli_at(root, "run", env=env, ok=True)
    assert intact(root, h_of(a))
    write(root, "in.txt", a)
    r = cli_at(root, "run", "--json", env=env, ok=True).json()
    assert r["stages"][0]["status"] == "restored"
    assert Path(root, "out.txt").read_bytes() == a
    assert cli_at(root, "fsck").code == 0


def test_run_force_and_add_of_the_good_bytes_heal(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    env = {"COUNTER": str(tmp_path / "counter")}
    write(root, "repro.yaml", STAGE)
    a = b"the stage's output\n" * 20
    write(root, "in.txt", a)
    cli_at(root, "run", env=env, ok=True)
    damage(obj(root, h_of(a)), "flip")
    r = cli_at(root, "fsck", "--json")
    assert r.code == 1 and f"objects/{h_of(a)[:2]}/{h_of(a)[2:]}" in r.json()["corrupt"]
    cli_at(root, "run", "--force", env=env, ok=True)
    assert intact(root, h_of(a)) and cli_at(root, "fsck").code == 0
    # repro add of the same bytes heals too (it used to say "already there").
    d = b"tracked data\n" * 30
    write(root, "d.txt", d)
    cli_at(root, "add", "d.txt", ok=True)
    damage(obj(root, h_of(d)), "truncate")
    cli_at(root, "add", "d.txt", ok=True)
    assert intact(root, h_of(d)) and cli_at(root, "fsck").code == 0


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(which=st.integers(0, 10**6), pos=st.integers(0, 10**6), xor=st.integers(1, 255))
def test_any_single_byte_damage_is_detected_and_never_restored(tmp_path, which, pos, xor):
    """Invariant: whichever object (file or tree) gets whichever byte flipped, the cache no
    longer vouches for it, and a checkout refuses it instead of writing it to the workspace."""
    from repro.data import checkout_lock
    from repro.errors import CorruptObjectError

    root = tmp_path / uuid.uuid4().hex
    new_project(root)
    project = Project(root)
    for i in range(3):
        write(root, f"data/f{i}.txt", f"file {i} " * (5 + i))
    from repro.data import add

    add(project, [str(root / "data")])
    hashes = sorted(project.cache.all_hashes())
    h = hashes[which % len(hashes)]
    damage(obj(str(root), h), "flip", pos, xor)
    project = Project(root)  # a new process's view
    assert not project.cache.has_verified(h)
    before = {p: Path(root, "data", p).read_bytes() for p in os.listdir(Path(root, "data"))}
    shutil.rmtree(Path(root, "data"))
    with pytest.raises(CorruptObjectError):
        checkout_lock(project)
    for dirpath, _dirs, files in os.walk(Path(root, "data")):
        for f in files:  # whatever was placed is good content, never the damaged bytes
            assert Path(dirpath, f).read_bytes() in before.values()
    project.state.close()


# -- push, push --verify-remote, fsck --repair ----------------------------------------------------


def test_push_refuses_corrupt_objects_and_repairs_the_remote(tmp_path, remote) -> None:
    url, opts = remote
    root = new_project(tmp_path / "p")
    add_remote(root, url, opts)
    good, other = b"precious bytes\n" * 40, b"other bytes\n" * 40
    write(root, "d.txt", good)
    write(root, "e.txt", other)
    cli_at(root, "add", "d.txt", "e.txt", ok=True)
    damage(obj(root, h_of(good)), "flip")
    r = cli_at(root, "push")
    key = f"objects/{h_of(good)[:2]}/{h_of(good)[2:]}"
    assert r.code == 1 and key in r.err and "Traceback" not in r.err
    store = remote_store(root)
    assert not store.has(h_of(good)), "a corrupt object was uploaded"
    assert store.has(h_of(other)) and store.verify(h_of(other)), "the rest was not pushed"
    # The good bytes pass by (repro add): the object heals, and the next push uploads it.
    cli_at(root, "add", "d.txt", ok=True)
    assert cli_at(root, "push", "--json", ok=True).json()["objects"] == 1
    assert store.verify(h_of(good))
    # Damaged on the remote side: a plain push trusts its index; --verify-remote repairs it.
    store.backend.write_bytes(key, b"rotten")
    assert cli_at(root, "fsck", "-r", "origin").code == 1
    r = cli_at(root, "push", "--verify-remote", "--json", ok=True)
    assert key in r.json()["repaired"]
    assert store.verify(h_of(good)) and cli_at(root, "fsck", "-r", "origin").code == 0
    store.backend.write_bytes(key, b"")  # and fsck -r NAME --repair does the same
    rep = cli_at(root, "fsck", "-r", "origin", "--repair", "--json", ok=True).json()
    assert key in rep["remote"]["repaired"] and store.verify(h_of(good))
    # fsck --repair: the local object is damaged and the workspace copy is gone.
    damage(obj(root, h_of(good)), "empty")
    os.unlink(Path(root, "d.txt"))
    assert cli_at(root, "fsck").code == 1
    rep = cli_at(root, "fsck", "--repair", "--json", ok=True).json()
    assert key in rep["repaired"] and rep["ok"]
    assert intact(root, h_of(good))
    cli_at(root, "checkout", ok=True)
    assert Path(root, "d.txt").read_bytes() == good
    # pull: the verified download replaces a damaged local object.
    damage(obj(root, h_of(good)), "truncate")
    os.unlink(Path(root, "d.txt"))
    cli_at(root, "pull", ok=True)
    assert intact(root, h_of(good)) and Path(root, "d.txt").read_bytes() == good


def test_fsck_repair_moves_aside_what_has_no_good_copy(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    data = b"only here\n" * 10
    write(root, "d.txt", data)
    cli_at(root, "add", "d.txt", ok=True)
    damage(obj(root, h_of(data)), "truncate")
    os.unlink(Path(root, "d.txt"))
    r = cli_at(root, "fsck", "--repair", "--json")
    assert r.code == 1
    key = f"objects/{h_of(data)[:2]}/{h_of(data)[2:]}"
    assert r.json()["moved_aside"] == [key]
    aside = Path(root, ".repro", "cache", "corrupt", h_of(data))
    assert aside.exists() and not obj(root, h_of(data)).exists()  # kept, never deleted
    # Now the content is reported missing (the truth), and nothing else is damaged.
    r = cli_at(root, "fsck", "--json")
    assert r.code == 1 and r.json()["missing"] == [h_of(data)] and not r.json()["corrupt"]


def test_fsck_repair_heals_from_the_workspace(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    write(root, "d/a.txt", "a" * 100)
    write(root, "d/b.txt", "b" * 100)
    cli_at(root, "add", "d", ok=True)
    h = h_of(b"b" * 100)
    damage(obj(root, h), "flip")
    rep = cli_at(root, "fsck", "--repair", "--json", ok=True).json()
    assert f"objects/{h[:2]}/{h[2:]}" in rep["repaired"] and intact(root, h)


# -- swapped run-cache entries -------------------------------------------------------------------


def _two_states(root: str, env: dict) -> tuple[str, str]:
    write(root, "repro.yaml", STAGE)
    write(root, "in.txt", "state one")
    s1 = cli_at(root, "run", "--json", env=env, ok=True).json()["stages"][0]["signature"]
    write(root, "in.txt", "state two")
    s2 = cli_at(root, "run", "--json", env=env, ok=True).json()["stages"][0]["signature"]
    return s1, s2


def test_swapped_local_run_cache_entry_is_refused(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    counter = tmp_path / "counter"
    env = {"COUNTER": str(counter)}
    s1, s2 = _two_states(root, env)
    runs = Path(root, ".repro", "cache", "runs")
    os.chmod(runs / s2, 0o644)
    shutil.copyfile(runs / s1, runs / s2)  # runs/S2 now answers S1
    write(root, "in.txt", "state one")
    cli_at(root, "run", env=env, ok=True)  # restored from S1, fine
    write(root, "in.txt", "state two")
    runs_before = counter.read_text().count("x")
    r = cli_at(root, "run", "--json", env=env, ok=True)
    assert r.json()["stages"][0]["status"] == "ran"
    assert counter.read_text().count("x") == runs_before + 1
    assert Path(root, "out.txt").read_text() == "state two"
    assert f"runs/{s2}" in r.err and "warning" in r.err and "Traceback" not in r.err
    # An entry filed under the right signature but for another stage is refused too.
    from repro.pipeline.runcache import RunCacheEntry

    entry = RunCacheEntry.decode((runs / s1).read_bytes())
    entry.stage = "other"
    (runs / s1).write_bytes(entry.encode())
    write(root, "in.txt", "state one")
    r = cli_at(root, "run", "--json", env=env, ok=True)
    assert r.json()["stages"][0]["status"] == "ran" and "'other'" in r.err
    assert Path(root, "out.txt").read_text() == "state one"


def test_swapped_remote_run_cache_entry_is_refused(tmp_path, remote) -> None:
    url, opts = remote
    root = new_project(tmp_path / "p")
    add_remote(root, url, opts)
    counter = tmp_path / "counter"
    env = {"COUNTER": str(counter)}
    s1, s2 = _two_states(root, env)
    cli_at(root, "push", ok=True)
    store = remote_store(root)
    store.backend.write_bytes(f"runs/{s2}", store.backend.read_bytes(f"runs/{s1}"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "x")
    clone = str(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", root, clone], check=True)
    before = counter.read_text().count("x")
    r = cli_at(clone, "run", "--json", env=env, ok=True)
    assert r.json()["stages"][0]["status"] == "ran"
    assert counter.read_text().count("x") == before + 1
    assert Path(clone, "out.txt").read_text() == "state two"
    assert f"runs/{s2}" in r.err and "remote 'origin'" in r.err
    # fsck of the remote lists the swapped entry; push --verify-remote puts ours back.
    f = cli_at(root, "fsck", "-r", "origin", "--json")
    assert f.code == 1 and f"runs/{s2}" in f.json()["corrupt"]
    cli_at(root, "push", "--verify-remote", ok=True)
    assert cli_at(root, "fsck", "-r", "origin").code == 0


# -- a bad snapshot ------------------------------------------------------------------------------


def test_bad_snapshot_on_a_remote_is_skipped_everywhere(tmp_path, remote) -> None:
    url, opts = remote
    root = new_project(tmp_path / "p")
    add_remote(root, url, opts)
    env = {"COUNTER": str(tmp_path / "counter")}
    write(root, "repro.yaml", STAGE)
    write(root, "in.txt", "v1")
    good = cli_at(root, "run", "--json", env=env, ok=True).json()["snapshot"]
    cli_at(root, "push", ok=True)
    store = remote_store(root)
    bad = "0" * 32  # bytes of a real snapshot under a name they do not hash to
    store.backend.write_bytes(f"snapshots/{bad}", store.backend.read_bytes(f"snapshots/{good}"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "x")
    clone = str(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", root, clone], check=True)
    r = cli_at(clone, "pull")
    assert r.code == 0 and f"snapshots/{bad}" in r.err
    assert Path(clone, "out.txt").read_text() == "v1"
    assert not Path(clone, ".repro", "cache", "snapshots", bad).exists()
    assert Path(clone, ".repro", "cache", "snapshots", good).exists()
    assert cli_at(clone, "diff", good, ok=True).code == 0
    assert cli_at(clone, "log", ok=True).code == 0
    assert not cli_at(clone, "fsck", "--json").json()["corrupt"]
    f = cli_at(clone, "fsck", "-r", "origin", "--json")
    assert f.code == 1 and f.json()["corrupt"] == [f"snapshots/{bad}"] and not f.json()["missing"]
    g = cli_at(clone, "gc", "-r", "origin", "--json", ok=True).json()
    assert g["corrupt_snapshots"] == [f"snapshots/{bad}"] and g["kept_snapshots"] == 1
    assert cli_at(clone, "fsck", "-r", "origin", ok=True).code == 0
    assert cli_at(clone, "checkout", good, ok=True).code == 0


def test_bad_local_snapshot_does_not_let_gc_delete_what_good_ones_need(tmp_path) -> None:
    root = new_project(tmp_path / "p")
    write(root, "d.txt", "one")
    s1 = cli_at(root, "add", "d.txt", "--json", ok=True).json()["snapshot"]
    write(root, "d.txt", "two")
    cli_at(root, "add", "d.txt", ok=True)
    snaps = Path(root, ".repro", "cache", "snapshots")
    os.chmod(snaps / s1, 0o644)
    (snaps / s1).write_bytes((snaps / s1).read_bytes()[:-3] + b"xyz")
    f = cli_at(root, "fsck", "--json")
    assert f.code == 1 and f"snapshots/{s1}" in f.json()["corrupt"]
    g = cli_at(root, "gc", "--json", ok=True).json()
    assert g["corrupt_snapshots"] == [f"snapshots/{s1}"]
    assert Path(root, ".repro", "cache", "corrupt", "snapshots", s1).exists()  # set aside
    assert cli_at(root, "fsck", ok=True).code == 0
    assert cli_at(root, "log", ok=True).code == 0
    assert json.loads(Path(root, "repro.lock").read_text())["data"]["d.txt"]["hash"] == h_of(b"two")
    assert intact(root, h_of(b"two"))
