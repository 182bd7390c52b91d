"""An attacker's pass over the trust boundaries, after issue 9's fixes: each test is one way in
that was found open (or is kept here as a regression), driven through the real CLI.

The attacker controls one of: a remote (any key, any bytes, symlinks in a shared folder), a
`repro.lock` arriving by `git pull` (with symlinks git checks out beside it), a snapshot or run
record in a shared cache, or symlinks in the workspace. Every test watches a sentinel folder
outside the project (it must keep exactly its bytes), and git's own files where they are the
target. Every finding is fixed; the tests keep it that way.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from repro.canonical import hash_bytes, packb, unpackb
from repro.project import Project
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


def cli_at(root, *args, ok=None):
    return run_cli(list(args), root, env=AWS_ENV, check=ok)


def no_crash(r) -> None:
    assert r.code != 70 and "Traceback" not in r.err, (r.code, r.err)


@pytest.fixture
def proj(tmp_path: Path) -> str:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    Project.init(root)
    return str(root)


def lock_of(proj: str) -> dict:
    return json.loads(Path(proj, "repro.lock").read_text())


def save_lock(proj: str, lock: dict) -> None:
    Path(proj, "repro.lock").write_text(json.dumps(lock))


def git_files(proj: str) -> dict[str, bytes]:
    """git's config and hooks: what a write into `.git` would change."""
    tree = snapshot_tree(Path(proj, ".git", "hooks"))
    return {**tree, "config": Path(proj, ".git", "config").read_bytes()}


def added_hash(proj: str, rel: str, content: str) -> str:
    write(proj, rel, content)
    cli_at(proj, "add", rel, ok=True)
    return lock_of(proj)["data"][rel]["hash"]


# -- a symlink git checks out beside the lock leads a write into .git or .repro ---------------
def test_symlink_to_dot_git_does_not_let_checkout_rewrite_git(proj) -> None:
    """Found: with `d -> .git`, checking out the tracked folder `d` deleted every file in .git
    and wrote an executable hook; `sub -> .git` with a lock entry `sub/config` overwrote git's
    config; `sub -> .` with an entry `sub/.repro` deleted the whole cache."""
    write(proj, "d/hooks/post-checkout", "#!/bin/sh\necho pwned\n")
    cli_at(proj, "add", "d", ok=True)
    shutil.rmtree(Path(proj, "d"))
    os.symlink(".git", Path(proj, "d"))
    h = added_hash(proj, "evil", "[core]\n\tfsmonitor = touch /tmp/pwned\n")
    lock = lock_of(proj)
    lock["data"]["sub/config"] = lock["data"].pop("evil")
    lock["data"]["top/.repro"] = {"hash": h, "size": 36}
    save_lock(proj, lock)
    os.remove(Path(proj, "evil"))
    os.symlink(".git", Path(proj, "sub"))
    os.symlink(".", Path(proj, "top"))
    before = git_files(proj)
    for cmd in (["checkout"], ["checkout", "--force"]):
        line = one_error(cli_at(proj, *cmd))
        assert "symlink" in line and "own folder" in line, line
        assert git_files(proj) == before
        assert Path(proj, ".repro", "cache", "objects").is_dir()
    # A restore the user asks for goes no further than a lock entry.
    line = one_error(cli_at(proj, "restore", h, "sub/config", "--force"))
    assert "own folder" in line
    assert git_files(proj) == before


def test_output_behind_a_symlink_to_dot_git_is_not_deleted_by_run(proj) -> None:
    """Found: `repro run` deleted `.git/config` (a stage output `sub/config`, `sub -> .git`)
    before the command ran."""
    write(proj, "repro.yaml", "stages:\n  s:\n    cmd: 'true'\n    outs: [sub/config]\n")
    os.symlink(".git", Path(proj, "sub"))
    before = git_files(proj)
    line = one_error(cli_at(proj, "run"))
    assert "sub/config" in line and "own folder" in line, line
    assert git_files(proj) == before


def test_output_linked_to_git_config_is_not_copied_into_the_cache(proj) -> None:
    """Found: an output `out.txt -> .git/config` was "saved" before the run, so git's config
    (credentials in remote URLs) went into the cache and, by the next push, to the remote."""
    git(proj, "config", "remote.origin.url", "https://user:SECRET-TOKEN@example.com/r.git")
    write(proj, "repro.yaml", "stages:\n  s:\n    cmd: echo made > out.txt\n    outs: [out.txt]\n")
    os.symlink(".git/config", Path(proj, "out.txt"))
    line = one_error(cli_at(proj, "run"))
    assert "out.txt" in line and "into .git" in line, line
    objects = Path(proj, ".repro", "cache", "objects")
    stored = [p.read_bytes() for p in objects.rglob("*") if p.is_file()]
    assert not any(b"SECRET-TOKEN" in b for b in stored)


# -- .gitignore, which repro rewrites, as a symlink ------------------------------------------
def test_gitignore_symlinks_neither_leak_nor_write_outside(proj, outside) -> None:
    """Found: `.gitignore -> ../outside/victim.txt` copied the outside file's bytes into the
    project's `.gitignore` (to be committed); `.gitignore.repro-tmp -> victim.txt` made repro
    overwrite the outside file."""
    os.symlink(outside / "victim.txt", Path(proj, ".gitignore"))
    added_hash(proj, "a.txt", "a")
    assert untouched(outside)
    assert "precious" not in Path(proj, ".gitignore").read_text()
    assert "/a.txt" in Path(proj, ".gitignore").read_text()
    os.symlink(outside / "victim.txt", Path(proj, ".gitignore.repro-tmp"))
    added_hash(proj, "b.txt", "b")
    assert untouched(outside)
    assert "/b.txt" in Path(proj, ".gitignore").read_text()


def test_gitignore_that_is_not_utf8_or_a_folder(proj) -> None:
    """Found: exit 70 for a `.gitignore` holding Latin-1 bytes, or one that is a folder."""
    Path(proj, ".gitignore").write_bytes(b"caf\xe9\n")
    added_hash(proj, "a.txt", "a")
    assert Path(proj, ".gitignore").read_bytes().startswith(b"caf\xe9\n")
    os.remove(Path(proj, ".gitignore"))
    os.mkdir(Path(proj, ".gitignore"))
    write(proj, "b.txt", "b")
    line = one_error(cli_at(proj, "add", "b.txt"))
    assert ".gitignore" in line and "folder" in line


# -- a shared folder (plain path or file://) whose entries are symlinks -----------------------
@pytest.mark.parametrize("scheme", ["plain", "file"])
def test_shared_folder_symlinks_do_not_lead_out_of_the_store(proj, outside, tmp_path, scheme):
    """Found: `objects/<ab> -> elsewhere` or `snapshots -> elsewhere` on a shared folder made
    `repro push` write there; `records/<id> -> a private file` made pull copy it."""
    store = tmp_path / "shared"
    url = str(store) if scheme == "plain" else f"file://{store}"
    cli_at(proj, "remote", "add", "origin", url, "--default", ok=True)
    h = added_hash(proj, "data.txt", "hello")
    (store / "objects").mkdir(parents=True)
    os.symlink(outside, store / "objects" / h[:2])
    os.symlink(outside, store / "snapshots")
    line = one_error(cli_at(proj, "push"))
    assert "leads through a symlink out of the store" in line, line
    assert untouched(outside)
    # Reading: a record that is a link to a private file is not copied into the local cache.
    os.remove(store / "objects" / h[:2])
    os.remove(store / "snapshots")
    (store / "records").mkdir()
    rid = "20300101T000000000Z-abcdef"
    os.symlink(outside / "victim.txt", store / "records" / rid)
    r = cli_at(proj, "pull")  # refused with a warning; the rest of the pull goes on
    assert r.code == 0 and rid in r.err and "warning:" in r.err, r.err
    assert not Path(proj, ".repro", "cache", "records", rid).exists()
    assert untouched(outside)


# -- records with a valid run id and a hostile body -------------------------------------------
def _hostile_records(sig: str) -> dict[str, dict]:
    base = {
        "argv": ["repro", "run"],
        "ci": {},
        "started": "2030-01-01T00:00:00.000Z",
        "ended": "2030-01-01T00:00:01.000Z",
        "git_commit": None,
        "git_dirty": None,
        "host": "h",
        "kind": "run",
        "metrics": {},
        "platform": "linux",
        "python": "3.11",
        "snapshot": sig,
        "stages": [],
        "status": "ok",
        "user": "u",
    }
    bodies = [
        {"git_commit": 12345},
        {"snapshot": 7},
        {"started": None},
        {"user": "\x1b[2Jroot"},
        {"metrics": {"m.json": {"acc": "high"}}},
        {"stages": [{"name": "s", "status": "ran", "signature": None, "seconds": "x"}]},
        {"stages": ["s"]},
        {"ci": {"CI": 1}},
        {"run_id": "20300101T000000000Z-000000"},  # a body filed under another run's id
    ]
    out = {}
    for i, change in enumerate(bodies):
        rid = f"2030010{i}T000000000Z-abcdef"
        out[rid] = {**base, "run_id": rid, **change}
    return out


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path):
    """(url, -o options, writer of a key on the remote as an attacker would)."""
    if request.param == "file":
        root = tmp_path / "remote"

        def put(key: str, data: bytes) -> None:
            p = root / key
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)

        return f"file://{root}", [], put
    server = request.getfixturevalue("s3_server")
    import s3fs

    bucket = new_bucket(server)
    fs = s3fs.S3FileSystem(endpoint_url=server.url, key="testing", secret="testing")

    def put_s3(key: str, data: bytes) -> None:
        fs.pipe_file(f"{bucket}/cache/{key}", data)

    return f"s3://{bucket}/cache", [f"endpoint_url={server.url}"], put_s3


def test_hostile_record_bodies_from_a_remote_are_not_used(proj, remote) -> None:
    """Found: a record whose `git_commit` is a number crashed `repro log` (exit 70), and would
    crash `checkout SIG` after it rewrote the workspace; records were checked only for their
    log hashes."""
    url, opts, put = remote
    args = ["remote", "add", "origin", url, "--default"]
    for o in opts:
        args += ["-o", o]
    cli_at(proj, *args, ok=True)
    added_hash(proj, "a.txt", "a")
    git(proj, "add", "-A")
    git(proj, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "one")
    sig = cli_at(proj, "log", "--json", ok=True).json()[0]["snapshot"]
    records = _hostile_records(sig)
    for rid, body in records.items():
        put(f"records/{rid}", packb(body))
    no_crash(cli_at(proj, "pull"))
    for rid in records:
        assert Path(proj, ".repro", "cache", "records", rid).exists()
    for cmd in (["log"], ["log", "--json"], ["checkout", sig], ["show", sig], ["diff"]):
        r = cli_at(proj, *cmd)
        assert r.code == 0, (cmd, r.err)
        assert "\x1b" not in r.out
    rows = cli_at(proj, "log", "--json", ok=True).json()
    assert all(row["run_id"] not in records for row in rows)
    for rid in list(records)[:2]:
        line = one_error(cli_at(proj, "show", rid))
        assert rid in line
    gc = cli_at(proj, "gc", "--dry-run")
    no_crash(gc)


# -- a snapshot or lock whose fields are not the lock's JSON ----------------------------------
def _snapshot(proj: str, stages: dict, data: dict, files: dict | None = None) -> str:
    record = {
        "format": 1,
        "stages": stages,
        "data": data,
        "files": files or {},
        "schemas": {},
        "images": {},
    }
    raw = packb(record)
    sig = hash_bytes(raw)
    Path(proj, ".repro", "cache", "snapshots", sig).write_bytes(raw)
    return sig


@pytest.mark.parametrize(
    "field,value",
    [("cmd", b"\x00bytes"), ("params", {"p.yaml:lr": [b"x"]}), ("env", 1), ("env", "x")],
)
def test_snapshot_fields_that_are_not_json_data_are_refused(proj, field, value) -> None:
    """Found: a snapshot (content-addressed: anyone can make a valid one) whose stage holds
    bytes crashed `checkout SIG` after the workspace was rewritten (the lock could not be
    written as JSON), and `diff`; an `env` that is no mapping crashed `diff` and `status`."""
    h = added_hash(proj, "a.txt", "a")
    stage = {"cmd": "true", "signature": h, "outs": {"out.txt": {"hash": h, "size": 1}}}
    sig = _snapshot(proj, {"s": {**stage, field: value}}, {"a.txt": {"hash": h, "size": 1}})
    before = snapshot_tree(proj, skip=(".git", ".repro"))
    for cmd in (["checkout", sig], ["diff", sig], ["show", sig, "--json"]):
        line = one_error(cli_at(proj, *cmd))
        assert f"snapshot {sig[:12]}" in line and f"stages.s.{field}" in line, line
    assert snapshot_tree(proj, skip=(".git", ".repro")) == before
    lock = lock_of(proj)
    lock["stages"]["s"] = {**stage, field: value} if field == "env" else stage
    save_lock(proj, lock)
    if field == "env":
        line = one_error(cli_at(proj, "status"))
        assert "repro.lock" in line and "stages.s.env" in line


def test_paths_inside_a_file_the_state_names_are_refused_before_writing(proj) -> None:
    """Found: a lock naming `q` (a file) and `q/r` placed `q`, then died with exit 70."""
    h = added_hash(proj, "a.txt", "a")
    lock = lock_of(proj)
    lock["data"].update({"q": {"hash": h, "size": 1}, "q/r": {"hash": h, "size": 1}})
    save_lock(proj, lock)
    line = one_error(cli_at(proj, "checkout"))
    assert "'q/r'" in line and "lies inside 'q'" in line
    assert not Path(proj, "q").exists()
    sig = _snapshot(proj, {}, {"x": {"hash": h, "size": 1}}, {"x/y": {"hash": h, "size": 1}})
    line = one_error(cli_at(proj, "checkout", sig))
    assert "lies inside 'x'" in line
    assert not Path(proj, "x").exists()


@pytest.mark.parametrize(
    "rel,problem",
    [
        ("x" * 300, "longer than 255 bytes"),  # was exit 70 (ENAMETOOLONG) after other writes
        ("/".join(["y" * 200] * 25), "longer than 4095 bytes"),
        (".GIT/hooks/post-checkout", "own folder"),  # `.git` on macOS and Windows
        (".g\u200cit/config", "own folder"),  # `.git` on HFS+
        ("GIT~1/config", "own folder"),  # `.git`'s short name on NTFS
        ("sub/.Git/config", "own folder"),
        ("REPRO.yaml", "repro or git owns"),
    ],
)
def test_names_no_filesystem_takes_or_that_fold_to_owned_ones_are_refused(
    proj, rel, problem
) -> None:
    h = added_hash(proj, "a.txt", "a")
    lock = lock_of(proj)
    lock["data"]["0-first"] = {"hash": h, "size": 1}  # sorted before: would be written first
    lock["data"][rel] = {"hash": h, "size": 1}
    save_lock(proj, lock)
    line = one_error(cli_at(proj, "checkout"))
    assert "repro.lock" in line and problem in line, line
    assert not Path(proj, "0-first").exists()


# -- found, fixed elsewhere: kept failing until their fix lands -------------------------------
def test_checkout_sig_does_not_delete_through_a_symlinked_parent(proj, outside) -> None:
    added_hash(proj, "in.txt", "a")
    sig = cli_at(proj, "log", "--json", ok=True).json()[0]["snapshot"]
    write(
        proj,
        "repro.yaml",
        "stages:\n  s:\n    cmd: mkdir -p sub && echo made > sub/victim.txt\n"
        "    outs: [sub/victim.txt]\ndata: [in.txt]\n",
    )
    cli_at(proj, "run", ok=True)
    shutil.rmtree(Path(proj, "sub"))
    os.symlink(outside, Path(proj, "sub"))
    no_crash(cli_at(proj, "checkout", "--force", sig))
    assert untouched(outside)


def test_saved_journal_symlink_does_not_append_outside(proj, outside) -> None:
    write(proj, "repro.yaml", "stages:\n  s:\n    cmd: echo made > out.txt\n    outs: [out.txt]\n")
    cli_at(proj, "run", ok=True)
    write(proj, "out.txt", "hand edited\n")
    os.symlink(outside / "victim.txt", Path(proj, ".repro", "saved.jsonl"))
    no_crash(cli_at(proj, "checkout"))
    assert untouched(outside)


def test_dot_repro_tmp_symlink_does_not_lead_writes_outside(proj, outside) -> None:
    shutil.rmtree(Path(proj, ".repro", "tmp"))
    os.symlink(outside, Path(proj, ".repro", "tmp"))
    write(proj, "repro.yaml", "stages:\n  s:\n    cmd: echo made > out.txt\n    outs: [out.txt]\n")
    no_crash(cli_at(proj, "run"))
    assert untouched(outside)


def test_one_symlinked_snapshot_on_a_shared_folder_does_not_break_pull(
    proj, outside, tmp_path
) -> None:
    store = tmp_path / "shared"
    cli_at(proj, "remote", "add", "origin", str(store), "--default", ok=True)
    added_hash(proj, "data.txt", "hello")
    cli_at(proj, "push", ok=True)
    os.symlink(outside / "victim.txt", store / "snapshots" / ("f" * 32))
    r = cli_at(proj, "pull")
    assert r.code == 0 and "warning:" in r.err, r.err
    assert untouched(outside)


def test_lock_from_git_cannot_make_a_snapshot_store_a_private_file(proj) -> None:
    write(proj, ".env", "AWS_SECRET=TOPSECRET\n")
    added_hash(proj, "a.txt", "a")
    lock = lock_of(proj)
    entry = {"hash": "0" * 32, "size": 1}
    lock["stages"]["evil"] = {"signature": "0" * 32, "cmd": "true", "deps": {".env": entry}}
    save_lock(proj, lock)
    added_hash(proj, "b.txt", "b")
    objects = Path(proj, ".repro", "cache", "objects")
    assert not any(b"TOPSECRET" in p.read_bytes() for p in objects.rglob("*") if p.is_file())


def test_run_record_round_trip_still_loads(proj) -> None:
    """The record checks accept what repro writes: a real run's record shows and logs."""
    write(proj, "p.yaml", "lr: 1\n")
    write(proj, "m.src", '{"acc": 1}\n')
    write(
        proj,
        "repro.yaml",
        "stages:\n  s:\n    cmd: cp m.src m.json\n    deps: [m.src]\n"
        "    params: [{p.yaml: [lr]}]\n    metrics: [m.json]\n",
    )
    cli_at(proj, "run", ok=True)
    write(proj, "p.yaml", "lr: 2\n")
    cli_at(proj, "run", ok=True)
    rows = cli_at(proj, "log", "--json", ok=True).json()
    assert len(rows) == 2 and rows[0]["metrics"] == {"m.json": {"acc": 1}}
    rid = rows[0]["run_id"]
    raw = Path(proj, ".repro", "cache", "records", rid).read_bytes()
    assert unpackb(raw)["stages"][0]["reasons"]
    assert cli_at(proj, "show", rid, "--json", ok=True).json()["run_id"] == rid
