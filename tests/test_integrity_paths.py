"""Nothing from a remote, a lock file, a snapshot, a tree or a workspace symlink writes outside
the project (issue 9, items 1-5, 11, 16), and content saved before an overwrite stays
restorable (item 10).

Every test watches a sentinel folder outside the project: after each hostile input it must hold
exactly the bytes it held before, and the project's own tree must be unchanged where the input
was refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgpack
import pytest

from repro.canonical import hash_bytes, packb
from repro.project import Project
from repro.safety import safe_key
from tests.conftest import (
    AWS_ENV,
    git,
    new_bucket,
    one_error,
    run_cli,
    snapshot_tree,
    untouched,
    write,
)

HEX = "0123456789abcdef" * 2


def cli_at(root, *args, env=None, ok=None):
    return run_cli(list(args), root, env={**AWS_ENV, **(env or {})}, check=ok)


@pytest.fixture
def proj(tmp_path: Path) -> str:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    Project.init(root)
    return str(root)


def remote_for(request, tmp_path) -> tuple[str, list[str], object]:
    """(url, -o options, fsspec filesystem rooted as the url's path) of a fresh remote."""
    import fsspec

    if request.param == "file":
        url = f"file://{tmp_path / 'remote'}"
        return url, [], fsspec.filesystem("file")
    server = request.getfixturevalue("s3_server")
    import s3fs

    url = f"s3://{new_bucket(server)}/cache"
    fs = s3fs.S3FileSystem(endpoint_url=server.url, key="testing", secret="testing")
    return url, [f"endpoint_url={server.url}"], fs


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path):
    return remote_for(request, tmp_path)


def add_remote(root: str, url: str, opts: list[str]) -> None:
    args = ["remote", "add", "origin", url, "--default"]
    for o in opts:
        args += ["-o", o]
    cli_at(root, *args, ok=True)


def rpath(url: str, key: str) -> str:
    return url.split("://", 1)[1] + "/" + key


def put(fs, url: str, key: str, data: bytes) -> None:
    """Write `key` on the remote as another machine (or an attacker) would."""
    path = rpath(url, key)
    if url.startswith("file://"):
        fs.makedirs(os.path.dirname(path), exist_ok=True)
    fs.pipe_file(path, data)


# -- 1. keys listed from a remote -------------------------------------------------------------
def test_hostile_remote_keys_are_refused_and_nothing_is_written_outside(
    proj, outside, remote
) -> None:
    url, opts, fs = remote
    add_remote(proj, url, opts)
    write(proj, "data.txt", "hello")
    cli_at(proj, "add", "data.txt", ok=True)
    cli_at(proj, "push", ok=True)
    cache = Path(proj, ".repro", "cache")
    bad = []
    for folder in ("runs", "snapshots", "records"):
        climb = os.path.relpath(outside / f"pwned-{folder}", cache / folder)
        bad.append(f"{folder}/{climb}" if url.startswith("s3://") else f"{folder}/not-a-{folder}")
        bad.append(f"{folder}/{'a' * 31}")  # one short of a hash
    for key in bad:
        put(fs, url, key, b"\x81\xa3bad\xc3")
    for args in (["pull"], ["pull", "--json"]):
        r = cli_at(proj, *args)
        assert r.code == 0, r.err
        assert "Traceback" not in r.err
        assert r.err.count("warning:") == len(bad), r.err
        assert "is not a valid" in r.err
    assert untouched(outside)
    assert not list(outside.glob("pwned*"))
    for folder in ("runs", "snapshots", "records"):
        names = os.listdir(cache / folder) if (cache / folder).exists() else []
        assert all(safe_key(f"{folder}/{n}", folder, "test") for n in names), names


# -- 2. paths in repro.lock -------------------------------------------------------------------
def _hostile_lock(proj: str, rel: str, where: str, h: str) -> None:
    lock = json.loads(Path(proj, "repro.lock").read_text())
    entry = {"hash": h, "size": 5}
    if where == "data":
        lock["data"][rel] = entry
    else:
        lock["stages"]["evil"] = {"signature": HEX, "cmd": "true", "outs": {rel: entry}}
    Path(proj, "repro.lock").write_text(json.dumps(lock))


@pytest.mark.parametrize("where", ["data", "outs"])
@pytest.mark.parametrize(
    "rel",
    [
        "../outside/victim.txt",
        "a/../../outside/victim.txt",
        "/tmp/x",
        "ok/\x00x",
        "a\\..\\..\\x",
        ".git/hooks/post-checkout",
        "repro.yaml",
        ".gitignore",
        "./a",
    ],
)
def test_hostile_lock_paths_are_refused_by_checkout_status_and_pull(
    proj, outside, where, rel
) -> None:
    write(proj, "data.txt", "hello")
    cli_at(proj, "add", "data.txt", ok=True)
    h = json.loads(Path(proj, "repro.lock").read_text())["data"]["data.txt"]["hash"]
    _hostile_lock(proj, rel, where, h)
    before = snapshot_tree(proj, skip=(".git", ".repro"))
    for cmd in (["checkout"], ["status"], ["checkout", "--force"]):
        line = one_error(cli_at(proj, *cmd))
        assert "repro.lock" in line and "refusing" in line, line
    assert snapshot_tree(proj, skip=(".git", ".repro")) == before
    assert untouched(outside)


def test_hostile_lock_hash_is_refused(proj, outside) -> None:
    write(proj, "data.txt", "hello")
    cli_at(proj, "add", "data.txt", ok=True)
    lock = json.loads(Path(proj, "repro.lock").read_text())
    lock["data"]["data.txt"]["hash"] = "../../../outside/victim.txt" + "0" * 5
    Path(proj, "repro.lock").write_text(json.dumps(lock))
    line = one_error(cli_at(proj, "checkout"))
    assert "data.data.txt.hash" in line and "not a hash" in line
    assert untouched(outside)


def test_hostile_lock_from_git_pull_is_refused_by_pull(proj, outside, remote) -> None:
    url, opts, _fs = remote
    add_remote(proj, url, opts)
    write(proj, "data.txt", "hello")
    cli_at(proj, "add", "data.txt", ok=True)
    cli_at(proj, "push", ok=True)
    h = json.loads(Path(proj, "repro.lock").read_text())["data"]["data.txt"]["hash"]
    _hostile_lock(proj, "../outside/victim.txt", "data", h)
    line = one_error(cli_at(proj, "pull"))
    assert "repro.lock" in line
    assert untouched(outside)


# -- 3. a crafted snapshot in a shared cache ---------------------------------------------------
def _crafted_snapshot(files: dict, data: dict) -> tuple[str, bytes]:
    record = {
        "format": 1,
        "stages": {},
        "data": data,
        "files": files,
        "schemas": {},
        "images": {},
    }
    raw = packb(record)
    return hash_bytes(raw), raw


@pytest.mark.parametrize("field", ["data", "files"])
def test_crafted_snapshot_cannot_write_outside(proj, outside, remote, field) -> None:
    url, opts, fs = remote
    add_remote(proj, url, opts)
    write(proj, "data.txt", "pwned!")
    cli_at(proj, "add", "data.txt", ok=True)
    cli_at(proj, "push", ok=True)
    h = json.loads(Path(proj, "repro.lock").read_text())["data"]["data.txt"]["hash"]
    climb = os.path.relpath(outside / "victim.txt", proj)
    entry = {climb: {"hash": h, "size": 6}}
    sig, raw = _crafted_snapshot(
        entry if field == "files" else {}, entry if field == "data" else {}
    )
    put(fs, url, f"snapshots/{sig}", raw)
    # pull skips it with a warning naming it, and does not copy it into the local cache.
    r = cli_at(proj, "pull")
    assert r.code == 0 and "Traceback" not in r.err, r.err
    assert "warning:" in r.err and sig[:12] in r.err, r.err
    assert not Path(proj, ".repro/cache/snapshots", sig).exists()
    assert untouched(outside)
    # The same snapshot in the local cache (a shared cache folder): checkout refuses it.
    Path(proj, ".repro/cache/snapshots", sig).write_bytes(raw)
    before = snapshot_tree(proj, skip=(".git", ".repro"))
    line = one_error(cli_at(proj, "checkout", sig[:10]))
    assert f"snapshot {sig[:12]}" in line and "climbs out" in line, line
    assert snapshot_tree(proj, skip=(".git", ".repro")) == before
    assert untouched(outside)


# -- 4. workspace symlinks ---------------------------------------------------------------------
def test_symlinked_tracked_folder_is_not_written_through(proj, outside) -> None:
    write(proj, "raw/a.txt", "A")
    write(proj, "raw/b.txt", "B")
    cli_at(proj, "add", "raw", ok=True)
    import shutil

    shutil.rmtree(Path(proj, "raw"))
    os.symlink(outside, Path(proj, "raw"))
    for cmd in (["checkout"], ["checkout", "--force"]):
        line = one_error(cli_at(proj, *cmd))
        assert "symlink" in line and "raw" in line, line
        assert untouched(outside)


def test_symlinked_parent_of_an_output_is_not_written_through(proj, outside) -> None:
    write(
        proj,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo hi > sub/victim.txt\n    outs: [sub/victim.txt]\n",
    )
    os.symlink(outside, Path(proj, "sub"))
    line = one_error(cli_at(proj, "run"))
    assert "symlink" in line and "sub/victim.txt" in line, line
    assert untouched(outside)


def test_symlinked_subfolder_inside_a_tracked_folder_is_not_followed_out(proj, outside) -> None:
    write(proj, "raw/a.txt", "A")
    os.symlink(outside, Path(proj, "raw", "ext"))
    line = one_error(cli_at(proj, "add", "raw"))
    assert "leads outside the project" in line and "follow_symlinks" in line
    assert not Path(proj, "repro.lock").exists()
    # Opting in follows it (the user's choice, said in config).
    cfg = Path(proj, ".repro/config.toml")
    cfg.write_text(cfg.read_text() + "\n[core]\nfollow_symlinks = true\n")
    cli_at(proj, "add", "raw", ok=True)
    assert untouched(outside)


def test_link_inside_the_project_is_still_followed(proj) -> None:
    write(proj, "real/a.txt", "A")
    os.makedirs(Path(proj, "raw"))
    os.symlink(Path(proj, "real", "a.txt"), Path(proj, "raw", "a.txt"))
    cli_at(proj, "add", "raw", ok=True)


# -- 5. tree entries --------------------------------------------------------------------------
def test_tree_with_a_climbing_hash_is_refused_on_pull(proj, outside, remote) -> None:
    url, opts, fs = remote
    add_remote(proj, url, opts)
    bad_hash = "../../../../outside/victim.txt"
    tree = msgpack.packb({"entries": [["a.txt", bad_hash, 8, False]], "format": 1})
    th = hash_bytes(tree)
    put(fs, url, f"objects/{th[:2]}/{th[2:]}", tree)
    lock = {"schema": 1, "stages": {}, "images": {}, "data": {}}
    lock["data"]["raw"] = {"hash": th, "size": 8, "isdir": True, "nfiles": 1}
    Path(proj, "repro.lock").write_text(json.dumps(lock))
    r = cli_at(proj, "pull")
    line = one_error(r)
    assert "malformed hash" in line, line
    assert not Path(proj, "raw").exists()
    assert untouched(outside)


# -- 11. paths git or repro own ---------------------------------------------------------------
@pytest.mark.parametrize("out", [".git", ".git/config", "repro.yaml", "repro.lock", ".gitignore"])
def test_owned_paths_are_never_outputs(proj, out) -> None:
    write(proj, "repro.yaml", f"stages:\n  s:\n    cmd: 'true'\n    outs: ['{out}']\n")
    before = snapshot_tree(proj, skip=(".repro",))
    for cmd in (["status"], ["run"]):
        line = one_error(cli_at(proj, *cmd))
        assert "stage 's'" in line and "outs" in line, line
    assert snapshot_tree(proj, skip=(".repro",)) == before


def test_git_tracked_output_is_refused_and_kept(proj) -> None:
    write(proj, "train.py", "print('precious code')\n")
    git(proj, "add", "train.py")
    git(proj, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "code")
    write(proj, "repro.yaml", "stages:\n  s:\n    cmd: echo x > train.py\n    outs: [train.py]\n")
    r = cli_at(proj, "run")
    assert r.code == 1
    assert "tracked by git" in r.err and "train.py" in r.err
    assert Path(proj, "train.py").read_text() == "print('precious code')\n"
    # `cache: false` outputs may live in git (DVC's metrics files).
    write(
        proj,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo x > train.py\n    outs: [{train.py: {cache: false}}]\n",
    )
    cli_at(proj, "run", ok=True)


def test_git_tracked_file_is_not_added_as_data(proj) -> None:
    write(proj, "data.csv", "a,b\n")
    git(proj, "add", "data.csv")
    line = one_error(cli_at(proj, "add", "data.csv"))
    assert "tracked by git" in line
    assert not Path(proj, "repro.lock").exists()


# -- 10. saved work ----------------------------------------------------------------------------
def test_saved_content_is_listed_kept_by_gc_and_restorable(proj) -> None:
    write(proj, "repro.yaml", "stages:\n  s:\n    cmd: echo made > out.txt\n    outs: [out.txt]\n")
    cli_at(proj, "run", ok=True)
    write(proj, "out.txt", "hand edited\n")
    r = cli_at(proj, "checkout", ok=True)
    assert "saved out.txt" in r.out
    assert Path(proj, "out.txt").read_text() == "made\n"
    rows = cli_at(proj, "restore", "--json", ok=True).json()
    assert [r["path"] for r in rows] == ["out.txt"]
    assert rows[0]["command"].endswith("checkout")
    assert cli_at(proj, "log", "--saved", "--json", ok=True).json() == rows
    cli_at(proj, "gc", ok=True)  # the saved content is no snapshot's, yet gc keeps it
    cli_at(proj, "restore", rows[0]["hash"], "out.txt", "--force", ok=True)
    assert Path(proj, "out.txt").read_text() == "hand edited\n"
    # Past the keeping time, gc lets it go.
    cli_at(proj, "checkout", "--force", ok=True)
    cfg = Path(proj, ".repro/config.toml")
    cfg.write_text(cfg.read_text() + "\n[gc]\nkeep_saved_days = 0\n")
    cli_at(proj, "gc", ok=True)
    r = cli_at(proj, "restore", rows[0]["hash"], "out.txt", "--force")
    assert r.code != 0 and "missing" in r.err
