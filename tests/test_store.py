"""The object store: atomic writes, verified reads, safe links into the workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repro.canonical import hash_bytes
from repro.errors import CorruptObjectError, MissingObjectError
from repro.hashing.state import StateDB
from repro.store.backend import LocalBackend, open_backend
from repro.store.objects import ObjectStore, object_key
from tests.conftest import write


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return ObjectStore(LocalBackend(str(tmp_path / "cache")), StateDB(None))
    import uuid

    return ObjectStore(open_backend(f"memory://repro-test-{uuid.uuid4().hex}"))


def test_put_get_roundtrip_and_layout(store: ObjectStore, tmp_path: Path) -> None:
    h = store.put_bytes(b"hello")
    assert h == hash_bytes(b"hello")
    assert store.has(h) and store.get_bytes(h) == b"hello"
    f = write(tmp_path, "w/f.bin", b"data" * 1000)
    hf = hash_bytes(f.read_bytes())
    assert store.put_file(str(f), hf) is True
    assert store.put_file(str(f), hf) is False  # already there: nothing written
    assert store.all_hashes() == {h, hf}
    assert object_key(hf) == f"objects/{hf[:2]}/{hf[2:]}"


def test_corrupted_object_is_reported_never_returned(store: ObjectStore) -> None:
    h = store.put_bytes(b"precious")
    key = object_key(h)
    if isinstance(store.backend, LocalBackend):
        p = store.backend.path(key)
        os.chmod(p, 0o644)
        Path(p).write_bytes(b"tampered")
    else:
        store.backend.fs.pipe_file(store.backend._p(key), b"tampered")
    with pytest.raises(CorruptObjectError, match=h):
        store.get_bytes(h)
    assert store.verify(h) is False
    with pytest.raises(MissingObjectError):
        store.get_bytes("0" * 32)


def test_no_temporary_files_left_and_objects_read_only(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path / "cache"))
    store = ObjectStore(backend, StateDB(None))
    f = write(tmp_path, "f", b"abc")
    store.put_file(str(f), hash_bytes(b"abc"), link=True)
    leftovers = list(Path(backend.tmp).iterdir()) if os.path.isdir(backend.tmp) else []
    assert leftovers == []
    assert os.stat(backend.path(object_key(hash_bytes(b"abc")))).st_mode & 0o222 == 0


def test_checkout_link_then_edit_by_rename_keeps_cache_intact(tmp_path: Path) -> None:
    store = ObjectStore(
        LocalBackend(str(tmp_path / "cache")), StateDB(None), links=("hardlink", "copy")
    )
    f = write(tmp_path, "src", b"original")
    h = hash_bytes(b"original")
    store.put_file(str(f), h)
    dst = str(tmp_path / "ws" / "out")
    os.makedirs(os.path.dirname(dst))
    assert store.checkout_file(h, dst) == "hardlink"
    tmp = dst + ".new"
    Path(tmp).write_bytes(b"edited")  # how editors and most tools save
    os.replace(tmp, dst)
    assert store.get_bytes(h) == b"original"


def test_in_place_edit_of_hardlinked_file_is_detected(tmp_path: Path) -> None:
    store = ObjectStore(
        LocalBackend(str(tmp_path / "cache")), StateDB(str(tmp_path / "s.db")), links=("hardlink",)
    )
    f = write(tmp_path, "src", b"original")
    h = hash_bytes(b"original")
    store.put_file(str(f), h)
    dst = str(tmp_path / "out")
    store.checkout_file(h, dst)
    os.chmod(dst, 0o644)  # root ignores read-only bits anyway
    with open(dst, "r+b") as fh:
        fh.write(b"CHANGED!")
    with pytest.raises(CorruptObjectError):
        store.checkout_file(h, str(tmp_path / "again"))
