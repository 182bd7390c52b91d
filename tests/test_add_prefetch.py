"""`repro add` of a large file where the cache copies (as root, or `cache.link` without
hardlink): the copy into the cache runs while the file is hashed, and is used only when the
file did not change meanwhile; nothing is left in the cache's tmp/ either way."""

from __future__ import annotations

import os
from pathlib import Path

from repro.canonical import hash_bytes
from repro.store.objects import PREFETCH_MIN
from tests.conftest import write


def copying(root: str) -> None:
    """Make the project's cache copy files in (no hardlinks), whoever runs the test."""
    cfg = Path(root, ".repro", "config.toml")
    text = cfg.read_text()
    assert "\n[cache]\n" in text
    cfg.write_text(text.replace("\n[cache]\n", '\n[cache]\nlink = ["copy"]\n', 1))


def tmp_left(root: str) -> list[str]:
    tmp = Path(root, ".repro", "cache", "tmp")
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def test_a_large_file_is_stored_by_the_overlapped_copy(project, cli) -> None:
    copying(project.root)
    data = os.urandom(PREFETCH_MIN + 12345)
    write(project.root, "big.bin", data)
    cli("add", "big.bin", ok=True)
    h = hash_bytes(data)
    obj = Path(project.root, ".repro", "cache", "objects", h[:2], h[2:])
    assert obj.read_bytes() == data and obj.stat().st_mode & 0o222 == 0  # read-only
    assert obj.stat().st_ino != Path(project.root, "big.bin").stat().st_ino  # a copy, no link
    assert tmp_left(project.root) == []
    os.unlink(Path(project.root, "big.bin"))
    cli("checkout", ok=True)
    assert Path(project.root, "big.bin").read_bytes() == data
    assert cli("fsck").code == 0


def test_an_unused_copy_is_removed(project, cli) -> None:
    """The object is there already (the same bytes under another name): the copy made while
    hashing is not needed and goes."""
    copying(project.root)
    data = os.urandom(PREFETCH_MIN + 1)
    write(project.root, "a.bin", data)
    cli("add", "a.bin", ok=True)
    write(project.root, "b.bin", data)
    cli("add", "b.bin", ok=True)
    assert tmp_left(project.root) == []
    assert cli("fsck").code == 0
