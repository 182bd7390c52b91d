"""`.reproignore` and the default ignore rules: an ignored file is not part of a folder, for
hashing, status, `repro add` and checkout alike."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from repro.hashing.engine import Hasher
from repro.hashing.ignore import DEFAULT_RULES, IgnoreRules, default_ignored
from repro.hashing.state import StateDB
from tests.conftest import write

# Python writes `__pycache__` only when this is empty (the test machine sets it).
BYTECODE = {"PYTHONDONTWRITEBYTECODE": ""}

CODE_STAGE = f"""stages:
  train:
    cmd: {sys.executable} -c "import sys; sys.path.insert(0, 'src'); import model; model.main()"
    deps: [src]
    outs: [out.txt]
"""


def _stale(cli) -> list[dict]:
    r = cli("status", "--json", env=BYTECODE, ok=True)
    return [s for s in r.json()["stages"] if s["state"] == "stale"]


def test_python_code_folder_stays_up_to_date_after_its_own_run(project, cli) -> None:
    write(project.root, "src/model.py", "def main():\n    open('out.txt', 'w').write('ok')\n")
    write(project.root, "src/util/helpers.py", "X = 1\n")
    write(project.root, "repro.yaml", CODE_STAGE)
    cli("run", env=BYTECODE, ok=True)
    assert (Path(project.root) / "src" / "__pycache__").is_dir()  # the case under test happened
    assert _stale(cli) == []
    assert cli("status", "--exit-code", env=BYTECODE).code == 0
    # A file browser's droppings and an editor's swap file do not make it stale either.
    write(project.root, "src/.DS_Store", b"\0\0\0\1Bud1")
    write(project.root, "src/util/.model.py.swp", b"swap")
    write(project.root, "src/.ipynb_checkpoints/model-checkpoint.py", "old\n")
    assert _stale(cli) == []
    # A real change still does.
    write(project.root, "src/util/helpers.py", "X = 2\n")
    assert [s["name"] for s in _stale(cli)] == ["train"]


def test_custom_rule_and_editing_reproignore_rehashes(project, cli) -> None:
    write(project.root, "src/model.py", "def main():\n    open('out.txt', 'w').write('ok')\n")
    write(project.root, "repro.yaml", CODE_STAGE)
    write(project.root, ".reproignore", "# training logs\n*.log\n")
    cli("run", env=BYTECODE, ok=True)
    write(project.root, "src/debug.log", "noise\n")
    assert _stale(cli) == []
    # Editing the rules re-hashes even though no file in src/ changed (the stat cache's
    # folder fingerprint carries the rules' identity).
    write(project.root, ".reproignore", "# nothing ignored any more\n")
    stale = _stale(cli)
    assert [s["name"] for s in stale] == ["train"]
    assert {"kind": "data", "target": "src"} in stale[0]["reasons"]
    # Putting the rule back makes it up to date again: the rules, not the files, changed.
    write(project.root, ".reproignore", "*.log\n")
    assert _stale(cli) == []


def test_nested_rules_and_reinclusion(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "d/keep.txt", "k")
    write(root, "d/a.log", "a")
    write(root, "d/sub/b.log", "b")
    write(root, "d/sub/c.pyc", "c")
    write(root, "d/__pycache__/m.pyc", "m")
    write(root, ".reproignore", "*.log\n")
    write(root, "d/sub/.reproignore", "!b.log\n!*.pyc\n")
    h = Hasher(StateDB(None), ignore=IgnoreRules(str(root)))
    r = h.hash_path(str(root / "d"), files=True)
    assert sorted(f.rel for f in r.files) == [
        "keep.txt",
        "sub/.reproignore",
        "sub/b.log",
        "sub/c.pyc",
    ]
    # Anchored patterns are relative to the file that holds them: `/d/keep.txt` from the root.
    write(root, ".reproignore", "*.log\n/d/keep.txt\n")
    r2 = h.hash_path(str(root / "d"), files=True)
    assert "keep.txt" not in {f.rel for f in r2.files}


def test_rule_change_invalidates_the_folder_cache(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "d/a.txt", "a")
    write(root, "d/b.log", "b")
    old = 1_600_000_000
    for f in ("d/a.txt", "d/b.log"):
        os.utime(root / f, (old, old))  # not "racy": the folder cache vouches for them
    db = str(tmp_path / "state.db")
    warm = Hasher(StateDB(db), ignore=IgnoreRules(str(root)))
    warm.hash_path(str(root / "d"))
    assert warm.files_read == 2
    again = Hasher(StateDB(db), ignore=IgnoreRules(str(root)))
    again.hash_path(str(root / "d"))
    assert again.files_read == 0  # a warm folder: answered from its fingerprint
    before = Hasher(StateDB(db), ignore=IgnoreRules(str(root))).hash_path(str(root / "d")).hash
    write(root, ".reproignore", "*.log\n")
    after = Hasher(StateDB(db), ignore=IgnoreRules(str(root))).hash_path(str(root / "d"))
    assert after.hash != before
    assert after.nfiles == 1


@pytest.mark.parametrize(
    "name,is_dir",
    [
        ("__pycache__", True),
        ("__pycache__", False),
        ("x.pyc", False),
        ("x.pyc", True),
        (".DS_Store", False),
        (".ipynb_checkpoints", True),
        (".git", True),
        ("a.swp", False),
        ("notes.txt~", False),
        (".#notes.txt", False),
        ("._photo.jpg", False),
        ("data.csv", False),
        ("pyc", False),
        ("model.py", False),
        ("git", True),
    ],
)
def test_fast_defaults_agree_with_gitignore_semantics(name: str, is_dir: bool) -> None:
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines(DEFAULT_RULES)
    path = f"some/dir/{name}" + ("/" if is_dir else "")
    assert default_ignored(name, is_dir) == spec.match_file(path)


def test_add_skips_ignored_files_and_refuses_an_ignored_path(project, cli) -> None:
    write(project.root, "data/a.csv", "x\n1\n")
    write(project.root, "data/.DS_Store", b"junk")
    write(project.root, "data/__pycache__/m.pyc", b"junk")
    write(project.root, "data/cache.tmp", "t")
    write(project.root, ".reproignore", "*.tmp\n")
    cli("add", "data", ok=True)
    lock = json.loads(Path(project.root, "repro.lock").read_text())
    assert lock["data"]["data"]["nfiles"] == 1
    assert cli("status", "--exit-code").code == 0
    before = Path(project.root, "repro.yaml").read_bytes()
    r = cli("add", "data/cache.tmp")
    assert r.code != 0 and "ignored" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert Path(project.root, "repro.yaml").read_bytes() == before


def test_checkout_keeps_ignored_files_inside_an_output_folder(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  make:\n    cmd: mkdir -p out && echo a > out/a.txt && echo b > out/b.txt\n"
        "    outs: [out]\n",
    )
    cli("run", ok=True)
    out = Path(project.root, "out")
    write(out, ".DS_Store", b"finder")
    write(out, "notes.log", "mine")
    write(project.root, ".reproignore", "*.log\n")
    os.chmod(out / "a.txt", 0o644)
    (out / "a.txt").unlink()
    write(out, "a.txt", "edited\n")
    r = cli("checkout", "--force", ok=True)
    assert r.code == 0
    assert (out / "a.txt").read_text() == "a\n"
    assert (out / ".DS_Store").read_bytes() == b"finder"
    assert (out / "notes.log").read_text() == "mine"
    assert cli("status", "--exit-code").code == 0
