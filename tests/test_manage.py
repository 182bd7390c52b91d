"""The small commands through the real CLI: stage add's DVC flags, stage list/remove, remove,
move, commit, freeze/unfreeze, --version, -h, python -m repro, shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write

STAGE = "python3 -c \"open('out.txt','w').write(open('in.txt').read()); print('RAN')\""


def _gitignore(root: str) -> list[str]:
    return Path(root, ".gitignore").read_text().splitlines()


def test_stage_add_flags_and_stage_list(project, cli) -> None:
    write(project.root, "in.txt", "x")
    cli(
        "stage", "add", "s", "-c", "cp in.txt out.txt; echo 1 > nc.txt; echo 2 > keep.txt; "
        "echo 'a,b' > p.csv", "-d", "in.txt", "-o", "out.txt", "-O", "nc.txt",
        "--outs-persist", "keep.txt", "--plots", "p.csv", "--desc", "copies the input",
        "--always-changed", "-w", ".",
        ok=True,
    )  # fmt: skip
    spec = Path(project.root, "repro.yaml").read_text()
    assert "desc: copies the input" in spec and "always_changed: true" in spec
    assert "cache: false" in spec and "persist: true" in spec and "plots:" in spec
    rows = cli("stage", "list", "--json", ok=True).json()
    assert rows == [
        {
            "name": "s",
            "cmd": rows[0]["cmd"],
            "deps": 1,
            "outs": 4,
            "desc": "copies the input",
            "frozen": False,
            "meta": rows[0]["meta"],
        }
    ]
    assert "copies the input" in cli("stage", "list", ok=True).out
    cli("run", ok=True)
    # the uncached output stays out of .gitignore (it may live in git); the cached ones go in
    assert "/out.txt" in _gitignore(project.root)
    assert "/nc.txt" not in _gitignore(project.root)
    # always_changed: a second run runs it again
    assert "s: ran" in cli("run", ok=True).out


def test_freeze_keeps_result_and_unfreeze_runs_again(project, cli) -> None:
    write(project.root, "in.txt", "1")
    cli("stage", "add", "s", "-c", STAGE, "-d", "in.txt", "-o", "out.txt", ok=True)
    cli("run", ok=True)
    cli("freeze", "s", ok=True)
    assert cli("stage", "list", "--json", ok=True).json()[0]["frozen"] is True
    write(project.root, "in.txt", "2")
    r = cli("run", ok=True)
    assert "RAN" not in r.out and Path(project.root, "out.txt").read_text() == "1"
    assert "s: up to date" in cli("status", ok=True).out
    assert "(frozen)" in cli("stage", "list", ok=True).out
    cli("unfreeze", "s", ok=True)
    assert "frozen" not in Path(project.root, "repro.yaml").read_text()
    assert "RAN" in cli("run", ok=True).out
    assert Path(project.root, "out.txt").read_text() == "2"
    r = cli("freeze", "nope")
    assert r.code == 1 and "no stage named 'nope'" in r.err and "Traceback" not in r.err


def test_stage_remove_drops_lock_and_gitignore_keeps_outputs(project, cli) -> None:
    write(project.root, "in.txt", "1")
    spec = Path(project.root, "repro.yaml")
    cli("stage", "add", "s", "-c", STAGE, "-d", "in.txt", "-o", "out.txt", ok=True)
    cli("stage", "add", "t", "-c", "cp out.txt t.txt", "-d", "out.txt", "-o", "t.txt", ok=True)
    spec.write_text("# my comment\n" + spec.read_text())
    cli("run", ok=True)
    cli("stage", "remove", "t", ok=True)
    assert "t:" not in spec.read_text() and "# my comment" in spec.read_text()
    assert "t" not in json.loads(Path(project.root, "repro.lock").read_text())["stages"]
    assert "/t.txt" not in _gitignore(project.root) and "/out.txt" in _gitignore(project.root)
    assert Path(project.root, "t.txt").exists()
    # --outs deletes them; a stage others depend on can go (its output becomes a plain dep)
    cli("stage", "add", "t", "-c", "cp out.txt t.txt", "-d", "out.txt", "-o", "t.txt", ok=True)
    cli("run", ok=True)
    cli("stage", "remove", "s", "--outs", ok=True)
    assert not Path(project.root, "out.txt").exists()
    r = cli("stage", "remove", "s")
    assert r.code == 1 and "no stage named 's'" in r.err


def test_remove_and_move_tracked_data(project, cli) -> None:
    write(project.root, "data/raw.csv", "a,b\n1,2\n")
    cli("add", "data/raw.csv", ok=True)
    before = Path(project.root, "repro.lock").read_text()
    cli("move", "data/raw.csv", "data/v1/raw.csv", ok=True)
    assert not Path(project.root, "data/raw.csv").exists()
    assert Path(project.root, "data/v1/raw.csv").read_text() == "a,b\n1,2\n"
    lock = json.loads(Path(project.root, "repro.lock").read_text())
    assert list(lock["data"]) == ["data/v1/raw.csv"]
    assert lock["data"]["data/v1/raw.csv"] == json.loads(before)["data"]["data/raw.csv"]
    assert "/data/v1/raw.csv" in _gitignore(project.root)
    assert "/data/raw.csv" not in _gitignore(project.root)
    assert "up to date" in cli("status", ok=True).out
    # moving onto an existing file changes nothing
    write(project.root, "other.csv", "o")
    r = cli("move", "data/v1/raw.csv", "other.csv")
    assert r.code == 1 and "exists already" in r.err
    assert Path(project.root, "data/v1/raw.csv").exists()
    # remove: untracked everywhere, the file stays
    cli("remove", "data/v1/raw.csv", ok=True)
    assert "data/v1/raw.csv" not in Path(project.root, "repro.yaml").read_text()
    assert json.loads(Path(project.root, "repro.lock").read_text())["data"] == {}
    assert "/data/v1/raw.csv" not in _gitignore(project.root)
    assert Path(project.root, "data/v1/raw.csv").exists()
    r = cli("remove", "data/v1/raw.csv")
    assert r.code == 1 and "is not tracked data" in r.err


def test_commit_records_outputs_without_running(project, cli) -> None:
    write(project.root, "in.txt", "1")
    write(project.root, "s.py", "open('out.txt','w').write(open('in.txt').read()); print('RAN')\n")
    cli("stage", "add", "s", "-c", "python3 s.py", "-d", "s.py", "-d", "in.txt", "-o", "out.txt",
        ok=True)  # fmt: skip
    cli("run", ok=True)
    with open(os.path.join(project.root, "s.py"), "a") as f:
        f.write("# a comment only\n")
    assert "stale" in cli("status").out
    r = cli("commit", "s", "--json", ok=True)
    assert r.json()[0]["stage"] == "s" and r.json()[0]["outs"] == ["out.txt"]
    assert "s: up to date" in cli("status", ok=True).out
    assert "RAN" not in cli("run", ok=True).out
    # the run cache knows the new signature: a fresh checkout of the outputs restores them
    os.chmod(os.path.join(project.root, "out.txt"), 0o644)
    os.unlink(os.path.join(project.root, "out.txt"))
    r = cli("run", ok=True)
    assert "RAN" not in r.out and Path(project.root, "out.txt").read_text() == "1"
    # an output that is not there: one sentence, nothing recorded
    os.unlink(os.path.join(project.root, "out.txt"))
    lock = Path(project.root, "repro.lock").read_text()
    r = cli("commit")
    assert r.code == 1 and "out.txt" in r.err and "not in the workspace" in r.err
    assert Path(project.root, "repro.lock").read_text() == lock


def test_version_h_python_m_and_completion(project, cli) -> None:
    from repro import __version__

    assert cli("--version", ok=True).out.strip() == f"repro {__version__}"
    assert "Usage:" in cli("-h", ok=True).out
    assert "--outs-no-cache" in cli("stage", "add", "-h", ok=True).out
    p = subprocess.run(
        [sys.executable, "-m", "repro", "--version"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and __version__ in p.stdout
    assert "_REPRO_COMPLETE" in cli("completion", "bash", ok=True).out
    env = {"_REPRO_COMPLETE": "complete_bash", "COMP_WORDS": "repro unfr", "COMP_CWORD": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "repro"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        cwd=project.root,
    )
    assert p.stdout.split() == ["unfreeze"]
    assert cli("completion", "tcsh").code == 2


@pytest.mark.parametrize(
    "cmd",
    [
        ["move"], ["commit"], ["config"], ["stage", "remove"], ["stage", "add"],
    ],
)  # fmt: skip
def test_help_ends_with_an_example(project, cli, cmd) -> None:
    out = cli(*cmd, "--help", ok=True).out
    assert "Example:" in out and out.rstrip().splitlines()[-1].startswith("  ")
