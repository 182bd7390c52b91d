"""Named versions (issue 12): `repro tag`, `tags`, `tag -d`, names checked, and a tag name
accepted wherever a sig is (checkout, diff, show), winning over a git revision of that name."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import git, one_error, write

SPEC = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py]
    params: [lr]
    outs: [model.txt]
"""


def two_states(project, cli) -> tuple[str, str]:
    """Two committed states of a one-stage pipeline: (v1's sig, v2's sig); repro.lock is v2."""
    root = project.root
    write(root, "repro.yaml", SPEC)
    write(root, "params.yaml", "lr: 0.1\n")
    write(root, "train.py", "open('model.txt', 'w').write('v1')\n")
    s1 = cli("run", "--json", ok=True).json()["snapshot"]
    git(root, "add", "-A")
    git(root, "commit", "-qm", "v1")
    write(root, "train.py", "open('model.txt', 'w').write('v2')\n")
    write(root, "params.yaml", "lr: 0.2\n")
    s2 = cli("run", "--json", ok=True).json()["snapshot"]
    git(root, "add", "-A")
    git(root, "commit", "-qm", "v2")
    assert s1 != s2
    return s1, s2


def tag_files(project) -> list[str]:
    d = Path(project.root, ".repro", "cache", "tags")
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_tag_tags_force_delete_and_bad_names(project, cli) -> None:
    s1, s2 = two_states(project, cli)
    t1 = cli("tag", "v1.0", s1[:9], "-m", "first model", "--json", ok=True).json()
    assert t1["name"] == "v1.0" and t1["sig"] == s1 and t1["message"] == "first model"
    assert t1["user"] and t1["host"] and t1["time"].endswith("Z")
    cli("tag", "prod", ok=True)  # default: the state repro.lock records (v2)
    rows = cli("tags", "--json", ok=True).json()
    assert [(r["name"], r["sig"]) for r in rows] == [("prod", s2), ("v1.0", s1)]  # newest first
    text = cli("tags", ok=True).out
    assert "v1.0" in text and s1[:12] in text and "first model" in text

    # Moving a tag needs --force, and without it nothing changes.
    err = one_error(cli("tag", "v1.0", s2))
    assert "v1.0" in err and "--force" in err
    assert cli("tags", "--json", ok=True).json()[1]["sig"] == s1
    cli("tag", "v1.0", s2, "--force", ok=True)
    assert {r["name"]: r["sig"] for r in cli("tags", "--json", ok=True).json()}["v1.0"] == s2

    cli("tag", "-d", "v1.0", ok=True)
    assert [r["name"] for r in cli("tags", "--json", ok=True).json()] == ["prod"]
    assert "v1.0" in one_error(cli("tag", "-d", "v1.0"))

    # Bad names: one sentence each, nothing written.
    before = tag_files(project)
    for bad, why in [
        (".hidden", "starts with"),
        ("deadbeef12", "hex"),
        ("a/b", "letters, digits"),
        ("x" * 101, "100 characters"),
    ]:
        assert why in one_error(cli("tag", bad, s1)), bad
    assert tag_files(project) == before
    assert "no snapshot" in one_error(cli("tag", "ok-name", "0123456789abc"))


def test_tag_names_a_state_for_checkout_diff_and_show(project, cli) -> None:
    s1, s2 = two_states(project, cli)
    cli("tag", "v1", s1, ok=True)
    cli("tag", "v2", s2, ok=True)
    d = cli("diff", "v1", "v2", "--json", ok=True).json()
    assert (d["from"], d["to"]) == (s1, s2)
    changed = {c["target"]: c for st in d["stages"] for c in st["changes"]}
    assert changed["params.yaml:lr"]["old"] == 0.1 and changed["params.yaml:lr"]["new"] == 0.2
    assert cli("show", "v1", "--json", ok=True).json()["snapshot"] == s1

    cli("checkout", "v1", ok=True)
    assert Path(project.root, "model.txt").read_text() == "v1"
    assert "lr: 0.1" in Path(project.root, "params.yaml").read_text()

    # A git tag of the same name names another state: the repro tag wins.
    git(project.root, "tag", "v1", "HEAD")  # HEAD's repro.lock is v2's state
    assert cli("diff", "v1", "--json", ok=True).json()["from"] == s1
    # A git revision still works where no repro tag has its name.
    assert cli("show", "HEAD", "--json", ok=True).json()["snapshot"] == s2


def test_gc_keeps_a_tagged_snapshot(project, cli) -> None:
    s1, s2 = two_states(project, cli)
    cli("tag", "keep-me", s1, ok=True)
    cli("gc", "--keep-last", "1", ok=True)  # the newest run's snapshot (v2) and tagged ones
    assert sorted(os.listdir(Path(project.root, ".repro", "cache", "snapshots"))) == sorted(
        [s1, s2]
    )
    cli("checkout", "keep-me", ok=True)  # and everything it reaches is still there
    assert Path(project.root, "model.txt").read_text() == "v1"
    cli("checkout", s2, ok=True)
    cli("tag", "-d", "keep-me", ok=True)
    cli("gc", "--keep-last", "1", ok=True)  # untagged, v1 goes like any old snapshot
    assert os.listdir(Path(project.root, ".repro", "cache", "snapshots")) == [s2]


def test_fsck_reports_a_damaged_tag_record(project, cli) -> None:
    s1, _ = two_states(project, cli)
    cli("tag", "v1", s1, ok=True)
    assert cli("fsck", "--json", ok=True).json()["ok"]
    Path(project.root, ".repro", "cache", "tags", "v1").write_bytes(b"\x81\xa4name\xa5other")
    r = cli("fsck", "--json")
    assert r.code != 0 and "tags/v1" in r.json()["corrupt"]
    assert cli("tags", "--json", ok=True).json() == []  # a bad record is never used
