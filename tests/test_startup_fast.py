"""The fast path of `repro status` and `repro run` (repro/cli_fast.py) answers exactly as the
Typer path does: same stdout, stderr and exit code, on the same project state. Each command is
run twice as a real process, once as a user runs it and once with REPRO_NO_FAST=1."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from repro.cli_fast import fast_command
from tests.conftest import Result, one_error, run_cli, write

SLOW = {"REPRO_NO_FAST": "1"}
CHAIN = (
    "stages:\n"
    "  a:\n    cmd: cp in.txt a.txt\n    deps: [in.txt]\n    outs: [a.txt]\n"
    "  b:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"
)


def seen(r: Result) -> tuple[int, str, str]:
    """What a user sees, but the run id (a time and a random part: new on every run)."""
    return r.code, re.sub(r'"run_id": "[^"]+"', '"run_id": "*"', r.out), r.err


def same(args: list[str], cwd: str | Path) -> Result:
    """`repro ARGS` on the fast path and on the Typer path, which must agree byte for byte
    (the command must leave the project as it found it: status, a no-op run, an error)."""
    fast = run_cli(args, cwd)
    slow = run_cli(args, cwd, env=SLOW)
    assert seen(fast) == seen(slow), args
    return fast


def same_in_copies(args: list[str], root: str | Path, tmp_path: Path) -> Result:
    """As `same`, for a command that changes the project: each path runs in its own copy."""
    fast_dir, slow_dir = tmp_path / "fast", tmp_path / "slow"
    shutil.copytree(root, fast_dir, symlinks=True)
    shutil.copytree(root, slow_dir, symlinks=True)
    fast = run_cli(args, fast_dir)
    slow = run_cli(args, slow_dir, env=SLOW)
    assert seen(fast) == seen(slow), args
    assert Path(fast_dir, "b.txt").read_bytes() == Path(slow_dir, "b.txt").read_bytes()
    return fast


@pytest.fixture
def chain(project) -> str:
    """A two-stage chain, run once: everything up to date."""
    write(project.root, "repro.yaml", CHAIN)
    write(project.root, "in.txt", "1\n")
    run_cli(["run"], project.root, check=True)
    return project.root


def test_clean_no_op_is_the_same_on_both_paths(chain) -> None:
    r = same(["status"], chain)
    assert r.code == 0 and r.out.splitlines()[-1] == "0 of 2 stages stale", r.out
    assert json.loads(same(["status", "--json"], chain).out)["stages"][1]["state"] == "up-to-date"
    assert same(["status", "--exit-code", "b"], chain).code == 0
    r = same(["run"], chain)
    assert "a: up to date" in r.out and r.err == ""
    doc = json.loads(same(["run", "--json"], chain).out)
    assert [s["status"] for s in doc["stages"]] == ["up-to-date", "up-to-date"]


def test_a_stale_stage_is_the_same_on_both_paths(chain, tmp_path) -> None:
    write(chain, "in.txt", "2\n")
    r = same(["status"], chain)
    assert r.out.splitlines()[0].startswith("a: stale (data: in.txt")
    assert r.out.splitlines()[1] == "b: stale (upstream: a)"
    assert same(["status", "--exit-code"], chain).code == 1
    doc = json.loads(same(["status", "--json", "--exit-code"], chain).out)
    assert doc["stages"][0]["reasons"] == [{"kind": "data", "target": "in.txt"}]
    r = same_in_copies(["run"], chain, tmp_path / "text")
    assert r.code == 0 and "b: ran (upstream: a)" in r.out
    r = same_in_copies(["run", "--json"], chain, tmp_path / "json")
    assert [s["status"] for s in json.loads(r.out)["stages"]] == ["ran", "ran"]
    assert "Running stage 'a'" in r.err  # the commands' echo goes to stderr under --json


def test_a_failing_stage_is_the_same_on_both_paths(chain, tmp_path) -> None:
    write(chain, "repro.yaml", CHAIN.replace("cp a.txt b.txt", "cp a.txt b.txt && exit 3"))
    r = same_in_copies(["run"], chain, tmp_path)
    assert r.code == 1 and "b: FAILED" in r.out
    assert one_error(r).startswith("error: stage 'b'"), r.err


@pytest.mark.parametrize(
    "spec",
    [
        "stages:\n  a:\n    cmd: echo\n    bogus: 1\n",  # an unknown key
        "stages:\n  a:\n    cmd: cp x y\n    deps: [x]\n    outs: [y]\n",  # a missing dep
        "stages: [\n",  # not YAML
    ],
)
def test_a_spec_error_is_one_sentence_on_both_paths(project, spec: str) -> None:
    write(project.root, "repro.yaml", spec)
    before = Path(project.root, "repro.yaml").read_bytes()
    for args in (["status"], ["status", "--json"], ["run"], ["run", "--json"]):
        r = same(args, project.root)
        one_error(r)
        assert r.out == ""
    assert Path(project.root, "repro.yaml").read_bytes() == before


def test_outside_a_project_and_an_unknown_stage(tmp_path, chain) -> None:
    one_error(same(["status"], tmp_path))
    assert "nope" in one_error(same(["status", "nope"], chain))
    assert "nope" in one_error(same(["run", "nope"], chain))


def test_version_is_the_same_on_both_paths(tmp_path) -> None:
    assert same(["--version"], tmp_path).out.startswith("repro ")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["status", "-h"],
        ["status", "--external"],
        ["run", "--force"],
        ["run", "-j", "2"],
        ["run", "--json=1"],
        ["run", "--exit-code"],
        ["run", "--"],
        ["status", ""],
        ["stat"],
        ["--version", "status"],
        ["dag"],
    ],
)
def test_what_the_fast_path_does_not_know_goes_to_typer(args: list[str]) -> None:
    assert fast_command(args) is None


def test_the_fast_path_takes_names_and_its_flags_in_any_order() -> None:
    for args in (["status"], ["status", "b", "--json", "a", "--exit-code"], ["run", "--json"]):
        assert fast_command(args) is not None, args
    assert fast_command(["run", "a", "b"]).args == (["a", "b"], False)  # type: ignore[union-attr]
    assert fast_command(["status", "--json", "--json"]).args == ([], True, False)  # type: ignore[union-attr]


def test_an_edited_config_is_read_again(chain) -> None:
    """`.repro/config.toml` is remembered by its stat (and config.local.toml's): an edit, or a
    local file that appears, is seen by the very next command."""
    cfg = Path(chain, ".repro", "config.toml")
    past = time.time() - 60
    os.utime(cfg, (past, past))  # old enough to be remembered
    assert same(["status"], chain).code == 0
    assert same(["status"], chain).code == 0  # from the remembered parse
    cfg.write_text(cfg.read_text() + "link = 7\n")  # in place: same inode
    assert "cache.link" in one_error(same(["status"], chain))
    cfg.write_text(cfg.read_text().replace("link = 7\n", ""))
    assert same(["status"], chain).code == 0
    write(chain, ".repro/config.local.toml", "[cache]\nlinks = ['copy']\n")
    assert "did you mean 'cache.link'" in one_error(same(["run"], chain))
