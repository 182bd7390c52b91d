"""`repro init`, `hash`, `add`, `checkout`, `restore` through the real command line."""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

from tests.conftest import snapshot_tree, write


def test_init_makes_project_files(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    r = run_cli(["init"], tmp_path)
    assert r.code == 0
    for p in (
        ".repro/cache",
        ".repro/config.toml",
        ".repro/.gitignore",
        "repro.yaml",
        ".repro/state.db",
    ):
        assert (tmp_path / p).exists(), p
    assert "/cache/" in (tmp_path / ".repro/.gitignore").read_text()


def test_hash_json_shape(project, cli) -> None:
    write(project.root, "d/a", b"A")
    write(project.root, "d/b/c", b"C")
    r = cli("hash", "d", "d/a", "--json", ok=True)
    rows = r.json()
    assert [row["path"] for row in rows] == ["d", "d/a"]
    assert set(rows[0]) == {"path", "hash", "bytes", "seconds"}
    assert rows[1]["hash"] == xxhash.xxh3_128_hexdigest(b"A") and rows[1]["bytes"] == 1
    assert rows[0]["bytes"] == 2 and len(rows[0]["hash"]) == 32
    assert r.err == ""


def test_add_tracks_ignores_and_checkout_restores(project, cli) -> None:
    write(project.root, "data/x.csv", "a,b\n1,2\n")
    write(project.root, "data/sub/y.bin", os.urandom(3000))
    before = snapshot_tree(os.path.join(project.root, "data"))
    cli("add", "data", ok=True)
    assert "/data" in Path(project.root, ".gitignore").read_text()
    assert "- data" in Path(project.root, "repro.yaml").read_text()
    import shutil

    shutil.rmtree(os.path.join(project.root, "data"))
    r = cli("checkout", ok=True)
    assert "2 files placed" in r.out
    assert snapshot_tree(os.path.join(project.root, "data")) == before


def test_checkout_saves_unsaved_edits_and_restore_brings_them_back(project, cli) -> None:
    write(project.root, "d.txt", "v1")
    cli("add", "d.txt", ok=True)
    write(project.root, "d.txt", "my unsaved edit")
    r = cli("checkout", ok=True)
    assert Path(project.root, "d.txt").read_text() == "v1"
    h = xxhash.xxh3_128_hexdigest(b"my unsaved edit")
    assert h in r.out
    cli("restore", h, "d.txt", ok=True)
    assert Path(project.root, "d.txt").read_text() == "my unsaved edit"


def test_bad_input_is_one_sentence_and_changes_nothing(project, cli, tmp_path) -> None:
    write(project.root, "ok.txt", "fine")
    before = snapshot_tree(project.root, skip=(".git",))
    for args, needle in (
        (["add", "ok.txt", "missing.txt"], "missing.txt: no such file"),
        (["add", str(tmp_path)], "outside the project"),
        (["add", ".repro/config.toml"], ".repro/"),
        (["hash", "nope"], "nope: no such file"),
    ):
        r = cli(*args)
        assert r.code != 0
        assert needle in r.err
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    after = snapshot_tree(project.root, skip=(".git",))
    assert {k: v for k, v in after.items() if "state.db" not in k} == {
        k: v for k, v in before.items() if "state.db" not in k
    }


def test_not_a_project_is_clear(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    r = run_cli(["add", "x"], tmp_path)
    assert r.code == 1 and "repro init" in r.err


def test_in_place_edit_as_root_cannot_reach_the_cache(project, cli) -> None:
    import pytest

    if os.geteuid() != 0:
        pytest.skip("for other users the read-only bit on hardlinked objects does this job")
    from repro.store.links import ROOT_LINKS

    assert project.cache.links == ROOT_LINKS
    write(project.root, "d/x.bin", b"original")
    cli("add", "d", ok=True)
    with open(os.path.join(project.root, "d", "x.bin"), "r+b") as f:  # as tools running as root do
        f.write(b"EDITED!!")
    assert cli("fsck", "--json", ok=True).json()["ok"] is True
    r = cli("checkout", ok=True)
    assert Path(project.root, "d", "x.bin").read_bytes() == b"original"
    assert "repro restore" in r.out  # the edit itself was saved first
