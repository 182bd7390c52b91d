"""A SIGKILL at a hypothesis-chosen moment while packing (`repro add`) or repacking (`repro gc`)
loses nothing committed before it, and the command re-run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from repro.canonical import hash_bytes
from repro.project import Project
from tests.conftest import git, run_cli

N_FILES = 3000


def cli_at(root, *args, ok=None):
    return run_cli(list(args), root, check=ok)


def new_project(path: Path) -> str:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    Project.init(path)
    return str(path)


def small_files(root: str, folder: str, n: int, tag: str, only=range(0)) -> dict[str, bytes]:
    out = {}
    os.makedirs(Path(root, folder), exist_ok=True)
    for i in only or range(n):
        data = f"{tag} {folder} {i} ".encode() * 8
        Path(root, folder, f"f{i:05d}").write_bytes(data)
        out[f"{folder}/f{i:05d}"] = data
    return out


def killed(root: str, delay: float, *args: str) -> None:
    """Start `repro ARGS` and SIGKILL it after `delay` seconds (or let it finish first)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "repro.cli", *args],
        cwd=root,
        env={**os.environ, "CI": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=60)


def intact(root: str, blobs) -> bool:
    """Every blob is in the cache (packed or loose) and reads back with its bytes."""
    cache = Project(root).cache
    return all(cache.get_bytes(hash_bytes(b)) == b for b in blobs)


def fsck_ok(root: str, *extra: str) -> None:
    r = cli_at(root, "fsck", "--json", *extra)
    doc = r.json()
    assert r.code == 0 and doc["corrupt"] == [] and doc["missing"] == [], doc


@settings(max_examples=8, deadline=None)
@given(delay=st.floats(min_value=0.0, max_value=0.6))
def test_kill_during_add_of_thousands_of_small_files(tmp_path_factory, delay) -> None:
    root = new_project(tmp_path_factory.mktemp("kill-add") / "p")
    base = small_files(root, "base", 40, "base")
    cli_at(root, "add", "base", ok=True)
    big = small_files(root, "big", N_FILES, "big")
    killed(root, delay, "add", "big")
    fsck_ok(root)  # whatever repro.lock names now (base, maybe big too) is there and whole
    assert intact(root, base.values())
    cli_at(root, "add", "big", ok=True)  # the command re-run completes
    fsck_ok(root, "--all")
    assert intact(root, big.values()) and intact(root, base.values())


@settings(max_examples=8, deadline=None)
@given(delay=st.floats(min_value=0.0, max_value=0.5))
def test_kill_during_gc_repack(tmp_path_factory, delay) -> None:
    root = new_project(tmp_path_factory.mktemp("kill-gc") / "p")
    v1 = small_files(root, "d", N_FILES, "v1")
    cli_at(root, "add", "d", ok=True)
    v2 = {**v1, **small_files(root, "d", N_FILES, "v2", only=range(N_FILES // 4, N_FILES))}
    cli_at(root, "add", "d", ok=True)  # the first pack is now a quarter live: gc rewrites it
    killed(root, delay, "gc", "--keep-last", "1")
    fsck_ok(root, "--all")  # each snapshot still there has all its objects
    assert intact(root, v2.values())
    g = cli_at(root, "gc", "--keep-last", "1", "--json", ok=True).json()  # re-run completes
    fsck_ok(root, "--all")
    assert intact(root, v2.values())
    cache = Project(root).cache
    dead = [v1[f"d/f{i:05d}"] for i in range(N_FILES // 4, N_FILES, 97)]
    assert not any(hash_bytes(b) in cache.packs for b in dead)  # the repack did happen
    assert g["kept_snapshots"] == 1
