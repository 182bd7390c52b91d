"""States by name (issue 10, item 9): `repro diff` defaults to repro.lock against the
workspace, and a git revision is accepted wherever a sig is (diff, checkout, show)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import git, write

SPEC = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py]
    params: [lr]
    outs: [model.txt]
"""


def _commit(root, msg: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-qm", msg)


def _two_states(project, cli) -> tuple[str, str]:
    root = project.root
    write(root, "repro.yaml", SPEC)
    write(root, "params.yaml", "lr: 0.1\n")
    write(root, "train.py", "open('model.txt', 'w').write('v1')\n")
    s1 = cli("run", "--json", ok=True).json()["snapshot"]
    _commit(root, "v1")
    write(root, "train.py", "open('model.txt', 'w').write('v2')\n")
    write(root, "params.yaml", "lr: 0.2\n")
    s2 = cli("run", "--json", ok=True).json()["snapshot"]
    _commit(root, "v2")
    assert s1 != s2
    return s1, s2


def test_default_diff_is_the_lock_against_the_workspace(project, cli) -> None:
    s1, _s2 = _two_states(project, cli)
    cli("checkout", s1, ok=True)
    # The workspace is exactly repro.lock's state: nothing changed, though s2 is newer.
    d = cli("diff", "--json", ok=True).json()
    assert d["from"] == s1 and d["to"] == "workspace"
    assert d["stages"] == [] and d["data"] == []
    write(project.root, "train.py", "open('model.txt', 'w').write('v3')\n")
    d = cli("diff", "--json", ok=True).json()
    kinds = {(c["kind"], c["target"]) for st in d["stages"] for c in st["changes"]}
    assert ("code", "train.py") in kinds


def test_git_revisions_name_states_in_diff_checkout_and_show(project, cli) -> None:
    s1, s2 = _two_states(project, cli)
    d = cli("diff", "HEAD~1", "HEAD", "--json", ok=True).json()
    assert (d["from"], d["to"]) == (s1, s2)
    changed = {c["target"]: c for st in d["stages"] for c in st["changes"]}
    assert changed["params.yaml:lr"]["old"] == 0.1 and changed["params.yaml:lr"]["new"] == 0.2
    assert cli("show", "HEAD~1", "--json", ok=True).json()["snapshot"] == s1
    cli("checkout", "HEAD~1", ok=True)
    assert Path(project.root, "model.txt").read_text() == "v1"
    assert json.loads(Path(project.root, "repro.lock").read_text())["stages"]["train"][
        "params"
    ] == {"params.yaml:lr": 0.1}


def test_git_revision_without_a_stored_snapshot(project, cli) -> None:
    _s1, _s2 = _two_states(project, cli)
    shutil.rmtree(Path(project.root, ".repro", "cache", "snapshots"))
    # diff still compares against that commit's repro.lock record ...
    d = cli("diff", "HEAD~1", "--json", ok=True).json()
    assert d["from"].startswith("HEAD~1 (")
    assert any(c["kind"] == "params" for st in d["stages"] for c in st["changes"])
    # ... checkout needs the stored snapshot and says where to get it.
    r = cli("checkout", "HEAD~1")
    assert r.code == 1 and "repro pull" in r.err and "Traceback" not in r.err


def test_unknown_names_are_one_sentence(project, cli) -> None:
    _two_states(project, cli)
    for args in (["diff", "no-such-rev"], ["checkout", "deadbeefdead"], ["show", "--", "-x"]):
        r = cli(*args)
        assert r.code != 0 and r.code != 70, (args, r.err)
        assert len([ln for ln in r.err.splitlines() if ln.startswith("error:")]) == 1, r.err


def test_diff_in_a_fresh_clone_says_what_is_absent_not_what_changed(project, cli, tmp_path):
    import subprocess

    from tests.conftest import run_cli

    _two_states(project, cli)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", project.root, str(clone)], check=True)
    d = run_cli(["diff", "--json"], clone, check=True).json()
    assert d["stages"] == [] and d["data"] == [] and d["absent"] == ["model.txt"]
    out = run_cli(["diff"], clone, check=True).out
    assert "repro pull" in out and "no changes" in out
