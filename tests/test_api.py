"""`repro.api`: the documented example runs as written, and each promise of docs/api.md holds
(root= from another cwd, typed errors, failed stages as results, params, quiet dry runs)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repro import api
from repro.errors import NotAProjectError, NotFoundError, PathError, ReproError, SpecError
from tests.conftest import git, run_cli, snapshot_tree, write
from tests.test_startup import HEAVY

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

TWO_STAGES = """stages:
  prep:
    cmd: sh -c 'echo prepared; cat a.txt > mid.txt'
    deps: [a.txt]
    params: [prep.n, other.json:shared.k]
    outs: [mid.txt]
  train:
    cmd: cat mid.txt > model.txt
    deps: [mid.txt]
    params: [train]
    outs: [model.txt]
"""
PARAMS = "prep:\n  n: 1\n  unused: 9\ntrain:\n  lr: 0.1\n  layers: [8, 4]\n"


def _pipeline(root: str | os.PathLike[str]) -> None:
    write(root, "repro.yaml", TWO_STAGES)
    write(root, "params.yaml", PARAMS)
    write(root, "other.json", json.dumps({"shared": {"k": "v", "x": 0}}))
    write(root, "a.txt", "a\n")


def test_the_documented_example_runs_as_written(tmp_path, monkeypatch) -> None:
    """docs/api.md's example is executed here: if the API or the doc drifts, this fails."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, "docs/api.md has no python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[-1], str(DOC), "exec"), {"__name__": "docs_api_example"})
    assert (tmp_path / "demo" / "model.txt").read_text() == "12\n"


def test_root_is_the_base_for_paths_not_the_process_cwd(project, tmp_path, monkeypatch) -> None:
    _pipeline(project.root)
    write(project.root, "sub/d.txt", "in the project\n")
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere, "sub/d.txt", "a decoy in the cwd\n")
    monkeypatch.chdir(elsewhere)

    added = api.add("sub/d.txt", root=project.root)
    assert [a.path for a in added.added] == ["sub/d.txt"]
    hashed = run_cli(["hash", "--json", "sub/d.txt"], project.root, check=True).json()
    assert added.added[0].hash.hash == hashed[0]["hash"]  # the project's file, not the decoy
    # A root inside the project: the project is found above it, paths are taken from it.
    write(project.root, "sub/e.txt", "e\n")
    assert [a.path for a in api.add("e.txt", root=Path(project.root) / "sub").added] == [
        "sub/e.txt"
    ]
    result = api.run(root=project.root)
    assert result.ok and os.path.exists(os.path.join(project.root, "model.txt"))
    assert not (elsewhere / "model.txt").exists() and not (elsewhere / ".repro").exists()
    assert api.status(root=project.root).stale is False
    assert [r["kind"] for r in api.log(root=project.root)] == ["run", "add", "add"]


def test_the_cli_prints_what_the_api_returns(project) -> None:
    _pipeline(project.root)
    api.run(root=project.root)
    write(project.root, "a.txt", "changed\n")
    status = run_cli(["status", "--json"], project.root, check=True).json()
    assert status == api.status(root=project.root).to_dict()
    assert status["stages"][0]["state"] == "stale"
    assert run_cli(["log", "--json"], project.root, check=True).json() == api.log(root=project.root)
    assert run_cli(["diff", "--json"], project.root, check=True).json() == json.loads(
        json.dumps(api.diff(root=project.root), default=str)
    )


def test_errors_are_typed_carry_their_sentence_and_print_nothing(project, tmp_path, capfd) -> None:
    not_project = tmp_path / "plain"
    not_project.mkdir()
    with pytest.raises(NotAProjectError, match="no repro project here or above"):
        api.status(root=not_project)
    with pytest.raises(PathError, match="no such folder"):
        api.status(root=Path(project.root) / "typo")  # not the project above it
    _pipeline(project.root)
    with pytest.raises(NotFoundError, match="no stage named 'nope'"):
        api.run("nope", root=project.root)
    with pytest.raises(NotFoundError, match="no stage named 'nope'"):
        api.params("nope", root=project.root)
    with pytest.raises(ReproError, match="no executor named 'nope'"):
        api.run(root=project.root, executor="nope")
    with pytest.raises(PathError, match=r"missing\.txt: no such file"):
        api.add("missing.txt", root=project.root)
    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: true\n    bogus: 1\n")
    with pytest.raises(SpecError) as err:
        api.status(root=project.root)
    assert "repro.yaml" in str(err.value) and "bogus" in str(err.value)
    assert isinstance(err.value, ReproError) and err.value.message == str(err.value)
    out, errs = capfd.readouterr()
    assert out == "" and errs == ""


def test_a_failed_stage_is_a_result_not_an_exception(project, capfd) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  bad:\n    cmd: echo about to fail; exit 3\n    outs: [x]\n"
        "  after:\n    cmd: cat x > y\n    deps: [x]\n    outs: [y]\n",
    )
    result = api.run(root=project.root)
    assert not result.ok
    assert [(s.name, s.status) for s in result.stages] == [("bad", "failed"), ("after", "skipped")]
    assert "bad" in result.stages[0].message and result.stages[0].exit_code == 3
    assert result.to_dict()["stages"][0]["status"] == "failed"
    assert not os.path.exists(project.lock_path) or "bad" not in Path(project.lock_path).read_text()
    out, err = capfd.readouterr()
    assert "about to fail" not in out + err  # quiet unless echo= is given
    echo = io.StringIO()
    api.run(root=project.root, echo=echo)
    assert "about to fail" in echo.getvalue()


def test_params_are_the_named_keys_with_current_values(project) -> None:
    _pipeline(project.root)
    assert api.params(root=project.root) == {
        "params.yaml": {"prep": {"n": 1}, "train": {"lr": 0.1, "layers": [8, 4]}},
        "other.json": {"shared": {"k": "v"}},
    }
    assert api.params("prep", root=project.root) == {
        "params.yaml": {"prep": {"n": 1}},
        "other.json": {"shared": {"k": "v"}},
    }
    write(project.root, "params.yaml", PARAMS.replace("lr: 0.1", "lr: 0.5"))
    got = api.params("train", root=project.root)
    assert got == {"params.yaml": {"train": {"lr": 0.5, "layers": [8, 4]}}}
    got["params.yaml"]["train"]["layers"].append(99)  # a copy: the parse cache is not touched
    assert api.params("train", root=project.root)["params.yaml"]["train"]["layers"] == [8, 4]


def test_a_dry_run_changes_nothing(project) -> None:
    _pipeline(project.root)
    api.add("a.txt", root=project.root)
    before = snapshot_tree(project.root, skip=(".git",))
    result = api.run(root=project.root, dry_run=True)
    assert result.dry_run and [s.status for s in result.stages] == ["ran", "ran"]
    after = snapshot_tree(project.root, skip=(".git",))
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith(os.path.join(".repro", "tmp"))} - {
        os.path.join(".repro", "state.db"),
        os.path.join(".repro", "state.db-wal"),
        os.path.join(".repro", "state.db-shm"),
    } == set()
    assert len(api.log(root=project.root)) == 1  # only the add: a dry run records no run


def test_push_pull_and_checkout_through_the_api(project, tmp_path) -> None:
    _pipeline(project.root)
    remote = f"file://{tmp_path / 'remote'}"
    run_cli(["remote", "add", "origin", remote, "--default"], project.root, check=True)
    first = api.run(root=project.root)
    pushed = api.push(root=project.root)
    assert pushed.objects > 0 and pushed.to_dict()["remote"] == "origin"
    assert api.push(root=project.root).objects == 0  # nothing new

    clone = tmp_path / "clone"
    clone.mkdir()
    git(clone, "init", "-q")
    api.init(clone)
    for f in ("repro.yaml", "repro.lock", "params.yaml", "other.json", "a.txt"):
        shutil.copy(os.path.join(project.root, f), clone / f)
    shutil.copy(os.path.join(project.dot, "config.toml"), clone / ".repro" / "config.toml")
    pulled = api.pull("train", root=clone)
    assert pulled.objects > 0 and (clone / "model.txt").read_text() == "a\n"

    write(project.root, "a.txt", "b\n")
    api.run(root=project.root)
    report = api.checkout(first.snapshot, root=project.root)
    assert report.placed > 0 and Path(project.root, "model.txt").read_text() == "a\n"
    with pytest.raises(NotFoundError):
        api.checkout("fffffff", root=project.root)


def test_importing_the_api_loads_nothing_heavy() -> None:
    probe = "import json, sys, repro.api; print(json.dumps(sorted(sys.modules)))"
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    loaded = {m.split(".")[0] for m in json.loads(p.stdout)}
    assert loaded & (HEAVY | {"typer", "rich", "msgpack", "sqlite3"}) == set()
