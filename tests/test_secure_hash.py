"""`hash = "blake3"`: a project whose cache may be shared with untrusted writers hashes with
BLAKE3 (cut to 128 bits), end to end: add, run, fsck, push and pull, a fresh clone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, run_cli, write

blake3 = pytest.importorskip("blake3", reason="hash = 'blake3' needs the 'secure' extra")

SPEC = """\
stages:
  s:
    cmd: cat raw.txt raw.txt > out.txt
    deps: [raw.txt]
    outs: [out.txt]
"""


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest(length=16)


def test_blake3_project_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    git(root, "init", "-q")
    run_cli(["init", "--hash", "blake3"], root, check=True)
    assert 'hash = "blake3"' in (root / ".repro/config.toml").read_text()
    write(root, "data/a.bin", b"A" * 100)
    write(root, "raw.txt", "x\n")
    run_cli(["add", "data"], root, check=True)
    r = run_cli(["hash", "--json", "raw.txt"], root, check=True).json()
    assert r[0]["hash"] == b3(b"x\n")
    write(root, "repro.yaml", SPEC + "data: [data]\n")
    run_cli(["run"], root, check=True)
    lock = json.loads((root / "repro.lock").read_text())
    assert lock["stages"]["s"]["outs"]["out.txt"]["hash"] == b3(b"x\nx\n")
    assert (root / ".repro/cache/objects" / b3(b"A" * 100)[:2] / b3(b"A" * 100)[2:]).exists()
    assert run_cli(["fsck"], root).code == 0
    remote = tmp_path / "remote"
    run_cli(["remote", "add", "origin", str(remote), "--default"], root, check=True)
    run_cli(["push"], root, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "p")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    run_cli(["pull"], clone, check=True)
    assert (clone / "out.txt").read_bytes() == b"x\nx\n"
    assert run_cli(["status", "--exit-code"], clone).code == 0


def test_unknown_hash_is_refused(tmp_path: Path) -> None:
    r = run_cli(["init", "--hash", "md5"], tmp_path)
    assert r.code == 1 and "hash must be one of xxh3, blake3" in r.err
    assert not (tmp_path / ".repro").exists()
