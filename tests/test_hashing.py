"""The hash contract: files hash to xxh3-128 of their bytes; folders to a tree that depends on
content, names and executable bits and not on where the folder lies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.errors import CorruptObjectError, PathError
from repro.hashing.engine import Hasher
from repro.hashing.filehash import CHUNK, hash_file
from repro.hashing.ignore import default_ignored
from repro.hashing.tree import Tree
from tests.conftest import write

# Names the default ignore rules leave in the tree (`._x` and `x~` are left out by design).
names = st.text(alphabet="abcdefghij_-.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..") and not default_ignored(s, True)
)
folders = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map("/".join),
    st.binary(max_size=64),
    min_size=1,
    max_size=8,
).filter(lambda d: not any(a != b and b.startswith(a + "/") for a in d for b in d))
fast = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def make(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        write(root, rel, data)


@fast
@given(data=st.binary(max_size=5000))
def test_file_hash_is_xxh3_128_of_content(tmp_path: Path, data: bytes) -> None:
    p = write(tmp_path, "f", data)
    assert hash_file(p) == xxhash.xxh3_128(data).hexdigest()


def test_large_file_streamed_hash_matches(tmp_path: Path) -> None:
    data = os.urandom(CHUNK * 2 + 12345)
    p = write(tmp_path, "big", data)
    assert hash_file(p) == xxhash.xxh3_128_hexdigest(data)


@fast
@given(files=folders)
def test_same_content_same_tree_anywhere(tmp_path_factory, files) -> None:
    a, b = tmp_path_factory.mktemp("a") / "x", tmp_path_factory.mktemp("b") / "deep" / "y"
    make(a, files)
    make(b, files)
    assert Hasher().hash_path(str(a)).hash == Hasher().hash_path(str(b)).hash


@fast
@given(files=folders, data=st.data())
def test_any_change_changes_tree(tmp_path_factory, files, data) -> None:
    root = tmp_path_factory.mktemp("t") / "d"
    make(root, files)
    before = Hasher().hash_path(str(root)).hash
    victim = data.draw(st.sampled_from(sorted(files)))
    change = data.draw(st.sampled_from(["byte", "name", "exec"]))
    p = root / victim
    if change == "byte":
        p.write_bytes(files[victim] + b"\x00")
    elif change == "name":
        p.rename(p.with_name(p.name + "_renamed"))
    else:
        os.chmod(p, 0o755)
    assert Hasher().hash_path(str(root)).hash != before


def test_empty_folders_add_nothing_and_symlinks_are_followed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make(a, {"f.txt": b"hi", "sub/g": b"x"})
    make(b, {"f.txt": b"hi", "sub/g": b"x"})
    (b / "empty" / "deeper").mkdir(parents=True)
    assert Hasher().hash_path(str(a)).hash == Hasher().hash_path(str(b)).hash
    target = write(tmp_path, "outside.txt", b"hi")
    (b / "f.txt").unlink()
    (b / "f.txt").symlink_to(target)
    assert Hasher().hash_path(str(a)).hash == Hasher().hash_path(str(b)).hash


def test_dangling_symlink_and_missing_path_are_clear_errors(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "broken").symlink_to(tmp_path / "nowhere")
    with pytest.raises(PathError, match="dangling symlink"):
        Hasher().hash_path(str(d))
    with pytest.raises(PathError, match="no such file"):
        Hasher().hash_path(str(tmp_path / "missing"))


def test_tree_roundtrip_and_climbing_entries_refused() -> None:
    from repro.canonical import packb
    from repro.hashing.tree import TreeEntry

    t = Tree.from_entries([TreeEntry("b", "0" * 32, 1, False), TreeEntry("a/c", "1" * 32, 2, True)])
    assert Tree.decode(t.encode()) == t
    assert [e.path for e in t.entries] == ["a/c", "b"]
    for bad in ("../escape", "/etc/passwd", "a/../../b", ""):
        data = packb({"format": 1, "entries": [[bad, "0" * 32, 1, False]]})
        with pytest.raises(CorruptObjectError, match="climbs out"):
            Tree.decode(data)
