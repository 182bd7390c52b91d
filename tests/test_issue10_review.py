"""Hostile input along the paths issue 10 added: a `repro.lock` read from git at a revision, a
`.reproignore` that came with `git pull`, the stage interpreter's probe and its cache in
`.repro/tmp/envfp`. Each case ends in one sentence and a non-zero exit, quickly: never a
traceback, exit 70 or a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git, run_cli, write


def cli_within(root, args: list[str], seconds: float, env: dict | None = None):
    """`repro ARGS`, failing the test when it takes longer than `seconds` (a hang)."""
    try:
        p = subprocess.run(
            [sys.executable, "-m", "repro.cli", *args],
            cwd=root,
            env={**os.environ, "CI": "1", **(env or {})},
            capture_output=True,
            text=True,
            timeout=seconds,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"repro {' '.join(args)} did not finish in {seconds} s")
    return p


def one_sentence(err: str) -> None:
    assert "Traceback" not in err and "unexpected" not in err, err
    assert err.count("error:") == 1, err


# -- repro.lock at a git revision ---------------------------------------------------------------


def commit_lock(root: Path, content: bytes | None, msg: str) -> None:
    lock = root / "repro.lock"
    if lock.is_dir():
        for f in lock.iterdir():
            f.unlink()
        lock.rmdir()
    elif lock.exists():
        lock.unlink()
    if content is not None:
        lock.write_bytes(content)
    git(root, "add", "-A")
    git(root, "commit", "-qm", msg, "--allow-empty")


def test_lock_at_a_revision_is_read_as_untrusted(project) -> None:
    root = Path(project.root)
    project.state.close()
    commit_lock(root, b'{"stages": {}, "data": {"\xff\xfe": 1}}', "not utf-8")
    r = run_cli(["diff", "HEAD"], root)
    assert r.code == 1 and "repro.lock at HEAD: is not UTF-8" in r.err, r.err
    one_sentence(r.err)
    r = run_cli(["checkout", "HEAD"], root)
    assert r.code == 1, r.err
    one_sentence(r.err)

    commit_lock(root, None, "folder")
    (root / "repro.lock").mkdir()
    (root / "repro.lock" / "f").write_text("{}")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "lock is a folder")
    r = run_cli(["diff", "HEAD"], root)
    assert r.code == 1 and "has no repro.lock" in r.err, r.err

    commit_lock(root, b"{}" + b" " * (17 << 20), "huge")
    (root / "repro.lock").write_text("{}")  # the workspace's own lock is fine
    r = run_cli(["diff", "HEAD"], root)
    assert r.code == 1 and "repro.lock at HEAD: is over" in r.err, r.err
    one_sentence(r.err)

    # A revision whose state no snapshot holds is compared as its lock records it, and named
    # whole (not cut to 12 characters like a sig).
    commit_lock(root, b"{}", "empty lock")
    commit = git(root, "rev-parse", "HEAD").strip()
    r = run_cli(["diff", "HEAD"], root, check=True)
    assert f"from HEAD ({commit[:10]}) to workspace" in r.out, r.out
    r = run_cli(["diff", ":/empty lock"], root, check=True)  # git's search by message
    assert f"({commit[:10]}) to workspace" in r.out, r.out

    # Revision strings that are options, ranges or paths name nothing and run nothing.
    for rev in ("--output=pwned", "HEAD..HEAD~1", "HEAD HEAD", "..", "HEAD:repro.lock", "-n"):
        r = run_cli(["diff", "--", rev], root)
        assert r.code == 1 and "names it" in r.err, (rev, r.err)
        one_sentence(r.err)
    assert not (root / "pwned").exists()


# -- .reproignore from git ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "why"),
    [
        ("*.tmp\n*a*a*a*a*a*a*a*ab\n", "line 2"),  # 10 s per 100-character name at 6 stars
        ("a/**/a/**/a/**/a/**/b\n", "'**' components"),  # seconds per deep path
        ("".join(f"p{i}*\n" for i in range(6000)), "pattern count"),  # 10 ms a file
        ("".join(f"*a{i}*b\n" for i in range(60)), "line 51"),  # 0.5 ms a name each
        ("ok\n[z-a]\n", "line 2"),  # not a pattern pathspec can compile
        ("!\n", "line 1"),
    ],
)
def test_catastrophic_reproignore_is_refused_quickly(project, rules: str, why: str) -> None:
    root = Path(project.root)
    project.state.close()
    write(root, ".reproignore", rules)
    write(root, "d/" + "a" * 100, "x")
    write(root, "d/" + "/".join(["a"] * 400) + "/c", "deep")
    r = cli_within(root, ["add", "d"], 20)
    assert r.returncode == 1 and ".reproignore" in r.stderr and why in r.stderr, r.stderr
    one_sentence(r.stderr)
    assert not (root / "repro.lock").exists()  # nothing recorded


def test_ordinary_reproignore_still_works(project) -> None:
    root = Path(project.root)
    project.state.close()
    write(root, ".reproignore", "# build leftovers\n*.tmp\n**/build/\n!keep.tmp\ndata/*/cache*\n")
    write(root, "data/a.csv", "1")
    write(root, "data/b.tmp", "2")
    write(root, "data/keep.tmp", "3")
    write(root, "data/x/build/o", "4")
    write(root, "data/x/cache1", "5")
    run_cli(["add", "data"], root, check=True)
    doc = json.loads((root / "repro.lock").read_text())
    assert doc["data"]["data"]["nfiles"] == 2  # a.csv and keep.tmp


def test_reproignore_cannot_reinclude_git_or_repro(project) -> None:
    root = Path(project.root)
    project.state.close()
    write(root, ".reproignore", "!.git/\n!.repro/\n!**/.git/**\n")
    write(root, "d/a.csv", "1")
    write(root, "d/.git/hooks/post-checkout", "#!/bin/sh\necho pwned\n")
    write(root, "d/sub/.repro/config.toml", "x")
    run_cli(["add", "d"], root, check=True)
    doc = json.loads((root / "repro.lock").read_text())
    assert doc["data"]["d"]["nfiles"] == 1  # d/a.csv alone


def test_fifo_reproignore_is_an_error_not_a_hang(project) -> None:
    root = Path(project.root)
    project.state.close()
    write(root, "d/a.csv", "1")
    os.mkfifo(root / "d" / ".reproignore")
    r = cli_within(root, ["add", "d"], 20)
    assert r.returncode == 1 and "d/.reproignore: is not a regular file" in r.stderr, r.stderr
    assert str(root) not in r.stderr  # a project-relative name
    one_sentence(r.stderr)


# -- the stage interpreter's probe --------------------------------------------------------------


def env_stage(root: Path, interpreter: str) -> None:
    write(
        root,
        "repro.yaml",
        "stages:\n"
        "  a:\n"
        "    cmd: python -c 1 > a.txt\n"
        "    outs: [a.txt]\n"
        f"    environment: {{python: {interpreter}, packages: [pyyaml]}}\n",
    )


def test_probe_that_never_answers_times_out_with_one_sentence(project) -> None:
    root = Path(project.root)
    project.state.close()
    # A wrapper that leaves a child holding its output: killing the wrapper alone would leave
    # repro waiting for that child.
    write(root, "slowpy", "#!/bin/sh\n(sleep 30) &\nsleep 30\n")
    os.chmod(root / "slowpy", 0o755)
    env_stage(root, "slowpy")
    t0 = time.monotonic()
    r = cli_within(root, ["status"], 20, env={"REPRO_ENV_PROBE_TIMEOUT": "1"})
    assert time.monotonic() - t0 < 10
    assert r.returncode == 1 and "stage 'a'" in r.stderr and "no answer in 1 s" in r.stderr
    one_sentence(r.stderr)


def test_hostile_probe_cache_is_probed_afresh(project) -> None:
    root = Path(project.root)
    project.state.close()
    env_stage(root, sys.executable)
    first = cli_within(root, ["status", "--json"], 30)
    assert first.returncode == 0, first.stderr
    cache = root / ".repro" / "tmp" / "envfp"
    (path,) = list(cache.glob("py-*.json"))
    doc = json.loads(path.read_text())
    hostile = [
        {**doc, "env": {**doc["env"], "paths": [{"x": 1}, 5]}},
        {**doc, "env": {**doc["env"], "paths": 5}},
        {**doc, "env": {**doc["env"], "packages": ["pyyaml"]}},
        {"stamp": doc["stamp"], "env": {"python": {"x": 1}, "packages": {}}},
        [1, 2, 3],
    ]
    for bad in hostile:
        path.write_text(json.dumps(bad))
        r = cli_within(root, ["status", "--json"], 30)
        assert r.returncode == 0 and r.stdout == first.stdout, (bad, r.stderr)
    path.unlink()
    os.mkfifo(path)  # a FIFO where the cache file was: read without blocking
    r = cli_within(root, ["status", "--json"], 30)
    assert r.returncode == 0 and r.stdout == first.stdout, r.stderr


# -- fsck ---------------------------------------------------------------------------------------


def test_fsck_with_an_unreadable_lock_is_no_healthy_answer(project) -> None:
    root = Path(project.root)
    project.state.close()
    write(root, "d/a.csv", "1")
    run_cli(["add", "d"], root, check=True)
    assert run_cli(["fsck"], root).code == 0
    (root / "repro.lock").write_text("<<<<<<< HEAD\n{}\n")  # a merge left unresolved
    r = run_cli(["fsck"], root)
    assert r.code == 1 and "error: repro.lock: cannot be parsed" in r.err, r.out + r.err
    assert "what it needs was not checked" in r.err and "Traceback" not in r.err
