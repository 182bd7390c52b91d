"""`repro install-hooks` (issue 12): real git runs the hooks. post-checkout puts the checked-out
commit's repro.lock state in the workspace; pre-commit warns about stale stages and never
blocks; a hook repro did not write is left alone (or kept and chained with --force);
`core.hooksPath` is honoured; a missing `repro` is explained, and git goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write
from tests.test_tags import two_states

BIN = os.path.dirname(sys.executable)  # the virtualenv's bin: `repro` is there
PATH_WITH_REPRO = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def git_run(root, *args: str, path: str = PATH_WITH_REPRO) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": path,
        "CI": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    p = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True)
    assert p.returncode == 0, f"git {' '.join(args)}: {p.stdout}{p.stderr}"
    return p


def test_post_checkout_follows_git_and_reinstall_is_idempotent(project, cli) -> None:
    root = project.root
    two_states(project, cli)
    out = cli("install-hooks", ok=True).out
    assert out.count("installed") == 3
    hooks = Path(root, ".git", "hooks")
    texts = {h: (hooks / h).read_text() for h in ("pre-commit", "post-checkout", "post-merge")}
    assert all(os.access(hooks / h, os.X_OK) for h in texts)
    again = cli("install-hooks", "--json", ok=True).json()
    assert [a["action"] for a in again] == ["unchanged"] * 3
    assert {h: (hooks / h).read_text() for h in texts} == texts

    branch = git_run(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    git_run(root, "checkout", "-q", "-b", "old", "HEAD~1")
    assert Path(root, "model.txt").read_text() == "v1"  # the output, not only the code
    git_run(root, "merge", "-q", "--ff-only", branch)  # post-merge
    assert Path(root, "model.txt").read_text() == "v2"
    status = cli("status", "--json", ok=True).json()
    assert all(st["state"] == "up-to-date" for st in status["stages"])

    # A failing `repro checkout` (here: the cache lost the object) is printed; git succeeds.
    import shutil

    shutil.rmtree(Path(root, ".repro", "cache", "objects"))
    p = git_run(root, "checkout", "-q", "HEAD~1")
    assert "repro checkout' failed" in p.stderr


def test_pre_commit_warns_on_stale_and_never_blocks(project, cli) -> None:
    root = project.root
    two_states(project, cli)
    cli("install-hooks", ok=True)
    write(root, "train.py", "open('model.txt', 'w').write('v3')\n")
    git_run(root, "add", "-A")
    p = git_run(root, "commit", "-qm", "stale")  # succeeds
    assert "stale" in p.stderr and "train" in p.stderr
    assert "stale" in git_run(root, "log", "-1", "--format=%s").stdout
    cli("run", ok=True)
    git_run(root, "add", "-A")
    p = git_run(root, "commit", "-qm", "fresh", "--allow-empty")
    assert "stale" not in p.stderr

    # Without repro on PATH the hook says what to do, and the commit still goes through.
    p = git_run(root, "commit", "-qm", "no repro", "--allow-empty", path="/usr/bin:/bin")
    assert "'repro' is not on PATH" in p.stderr


def test_foreign_hook_is_kept_and_hooks_path_honoured(project, cli, tmp_path) -> None:
    root = project.root
    two_states(project, cli)
    hooks = Path(root, ".git", "hooks")
    hooks.mkdir(exist_ok=True)
    log = tmp_path / "foreign.log"
    foreign = f"#!/bin/sh\necho foreign-ran >> '{log}'\n"
    (hooks / "pre-commit").write_text(foreign)
    (hooks / "pre-commit").chmod(0o755)

    r = cli("install-hooks", ok=True)
    assert "warning:" in r.err and "pre-commit" in r.err
    assert (hooks / "pre-commit").read_text() == foreign  # left alone
    assert (hooks / "post-checkout").exists()

    r = cli("install-hooks", "--force", ok=True)
    assert (hooks / "pre-commit.repro-backup").read_text() == foreign
    assert "repro-hook" in (hooks / "pre-commit").read_text()
    write(root, "train.py", "open('model.txt', 'w').write('v3')\n")
    git_run(root, "add", "-A")
    p = git_run(root, "commit", "-qm", "both hooks")
    assert "stale" in p.stderr and log.read_text() == "foreign-ran\n"  # repro's, then theirs
    cli("install-hooks", "--force", ok=True)  # idempotent: the backup is not overwritten
    assert (hooks / "pre-commit.repro-backup").read_text() == foreign

    git_run(root, "config", "core.hooksPath", ".githooks")
    cli("install-hooks", ok=True)
    assert sorted(os.listdir(Path(root, ".githooks"))) == [
        "post-checkout",
        "post-merge",
        "pre-commit",
    ]


def test_hooks_of_a_project_below_the_repository_top(tmp_path) -> None:
    from repro.project import Project
    from tests.conftest import run_cli

    repo = tmp_path / "repo"
    repo.mkdir()
    git_run(repo, "init", "-q")
    sub = repo / "ml project"  # a space too: the hook quotes the path
    sub.mkdir()
    Project.init(sub).state.close()
    write(sub, "data.csv", "a\n1\n")
    run_cli(["add", "data.csv"], sub, check=True)
    git_run(repo, "add", "-A")
    git_run(repo, "commit", "-qm", "one")
    write(sub, "data.csv", "a\n2\n")
    run_cli(["add", "data.csv"], sub, check=True)
    git_run(repo, "add", "-A")
    git_run(repo, "commit", "-qm", "two")
    run_cli(["install-hooks"], sub, check=True)
    assert Path(repo, ".git", "hooks", "post-checkout").exists()
    git_run(repo, "checkout", "-q", "HEAD~1")
    assert Path(sub, "data.csv").read_text() == "a\n1\n"
