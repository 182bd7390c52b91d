"""The stat cache: unchanged files are not read again; changed ones always are, even when their
size and mtime were put back, or when they changed within the timestamp tick of their hashing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import xxhash

from repro.hashing.engine import Hasher
from repro.hashing.state import RACY_NS, StateDB
from tests.conftest import write


def settled(p: Path) -> None:
    """Give a file an mtime clearly in the past, so its first hashing is not racy."""
    old = time.time_ns() - 10 * RACY_NS
    os.utime(p, ns=(old, old))


def test_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    p = write(tmp_path, "d/f", b"x" * 1000)
    settled(p)
    h = Hasher(StateDB(db))
    first = h.hash_path(str(tmp_path / "d")).hash
    assert h.files_read == 1
    h2 = Hasher(StateDB(db))  # a new process: the cache survives restarts
    assert h2.hash_path(str(tmp_path / "d")).hash == first
    assert h2.files_read == 0  # the folder came from its fingerprint
    # The file alone comes from its own stat-cache row, unread, and is its content's hash.
    assert h2.hash_path(str(p)).hash == xxhash.xxh3_128_hexdigest(b"x" * 1000)
    assert h2.files_read == 0


def test_touched_but_unchanged_file_is_read_and_same(tmp_path: Path) -> None:
    p = write(tmp_path, "f", b"content")
    settled(p)
    h = Hasher(StateDB(str(tmp_path / "s.db")))
    before = h.hash_path(str(p)).hash
    now = time.time_ns() - 10 * RACY_NS + 1000
    os.utime(p, ns=(now, now))
    assert h.hash_path(str(p)).hash == before
    assert h.files_read == 2


def test_changed_file_with_size_and_mtime_put_back_is_detected(tmp_path: Path) -> None:
    p = write(tmp_path, "f", b"aaaa")
    settled(p)
    h = Hasher(StateDB(str(tmp_path / "s.db")))
    before = h.hash_path(str(p)).hash
    st = os.stat(p)
    with open(p, "r+b") as f:  # same inode, same size
        f.write(b"bbbb")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(p).st_mtime_ns == st.st_mtime_ns and os.stat(p).st_size == st.st_size
    assert h.hash_path(str(p)).hash != before


def test_racy_write_in_same_tick_is_not_trusted(tmp_path: Path) -> None:
    p = write(tmp_path, "f", b"one!")
    h = Hasher(StateDB(str(tmp_path / "s.db")))
    before = h.hash_path(str(p)).hash  # hashed right after writing: the entry is racy
    mtime = os.stat(p).st_mtime_ns
    with open(p, "r+b") as f:
        f.write(b"two!")
    os.utime(p, ns=(mtime, mtime))  # as if rewritten in the same timestamp tick
    assert h.hash_path(str(p)).hash != before


def test_concurrent_processes_share_the_state_db(tmp_path: Path) -> None:
    for i in range(200):
        settled(write(tmp_path, f"d/{i}", str(i)))
    db = str(tmp_path / "s.db")
    code = (
        "import sys; from repro.hashing.engine import Hasher; from repro.hashing.state import"
        " StateDB; print(Hasher(StateDB(sys.argv[1])).hash_path(sys.argv[2]).hash)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db, str(tmp_path / "d")], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outs) == 1
    h = Hasher(StateDB(db))
    assert h.hash_path(str(tmp_path / "d")).hash in outs
    assert h.files_read == 0
