"""Fault injection: kill `run`, `add`, `checkout`, `push`, `pull` and `gc` at random moments
(SIGKILL, SIGTERM, SIGHUP; hypothesis picks the command, the signal and the delay), then check
that nothing was lost or mixed up (issue 9, "Done when"):

- `fsck` finds nothing corrupt, and no object a snapshot needs is missing that was there before;
- `repro.lock` parses;
- every earlier snapshot still present checks out byte-identical to what it recorded;
- no process of the stage is still alive;
- every run-cache entry (local and remote) maps its signature to what a clean run makes.

The killed command is the real CLI in a subprocess; the checks use the Python API (fast). Each
example works on a fresh copy of one project built once for the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.conftest import alive, git, run_cli, write  # noqa: E402

CHUNKS, CHUNK = 8, 32 * 1024
TMP_NAME = re.compile(r"^\d+-[0-9a-f]{8}-\d+-\d+$")  # store.backend.unique_name()
BESIDE = re.compile(r"^\..+\.\d+-[0-9a-f]{8}-\d+-\d+$")  # store.links._tmp_beside()
# How long each command takes here, uninterrupted (seconds, start-up included): a kill lands at
# a fraction of it (hypothesis picks the fraction), so most kills land mid-work.
DURATION = {"run": 0.85, "add": 0.3, "checkout": 0.25, "push": 0.32, "pull": 0.3, "gc": 0.15}

WRITER = f"""
import hashlib, os, sys, time
version = open("params.yaml").read().split(":")[1].strip()
with open("pids.txt", "a") as f:
    f.write(f"{{os.getpid()}}\\n")
with open("out.bin", "wb") as f:
    for i in range({CHUNKS}):
        seed = hashlib.sha256(f"{{version}}-{{i}}".encode()).digest()
        f.write(seed * ({CHUNK} // 32))
        f.flush()
        time.sleep(0.06)
"""

SPEC = """data: [data]
stages:
  w:
    cmd: echo $$ >> pids.txt; python3 writer.py
    deps: [writer.py]
    params: [version]
    outs: [out.bin]
"""


def expected_out(version: str) -> bytes:
    return b"".join(
        hashlib.sha256(f"{version}-{i}".encode()).digest() * (CHUNK // 32) for i in range(CHUNKS)
    )


def write_data(root: str, version: str, n: int = 80) -> None:
    shutil.rmtree(os.path.join(root, "data"), ignore_errors=True)
    for i in range(n):
        write(root, f"data/f{i:03d}.txt", f"{version} file {i}\n" * (40 + i))


def tracked(root: str) -> dict[str, bytes]:
    """The bytes of every path a snapshot records here (data, output, params, code)."""
    out = {}
    for rel in ("out.bin", "params.yaml", "writer.py"):
        p = Path(root, rel)
        out[rel] = p.read_bytes() if p.exists() else b""
    for p in sorted(Path(root, "data").glob("*")):
        out[f"data/{p.name}"] = p.read_bytes()
    return out


def listing(folder: str) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, f), folder)
        for d, _, fs in os.walk(folder)
        for f in fs
        if "tmp" not in os.path.relpath(d, folder).split(os.sep)
    }


class Base:
    """One project with two runs and a file remote; what each snapshot holds."""

    def __init__(self, top: Path) -> None:
        self.top = top
        root = top / "proj"
        root.mkdir()
        self.root = str(root)
        self.remote = str(top / "remote")
        git(root, "init", "-q")
        run_cli(["init"], root, check=True)
        write(root, "writer.py", WRITER)
        write(root, "repro.yaml", SPEC)
        write(root, ".gitignore", "pids.txt\n")
        run_cli(["remote", "add", "origin", f"file://{self.remote}", "--default"], root, check=True)
        self.snapshots: dict[str, dict[str, bytes]] = {}
        cache = os.path.join(self.root, ".repro", "cache")
        for version in ("1", "2"):
            write_data(self.root, version)
            write(root, "params.yaml", f"version: {version}\n")
            sig = run_cli(["add", "data", "--json"], root, check=True).json()["snapshot"]
            self.snapshots[sig] = tracked(self.root)
            sig = run_cli(["run", "--json"], root, check=True).json()["snapshot"]
            self.snapshots[sig] = tracked(self.root)
            self.run_sig = sig
            if version == "1":
                self.cache_v1 = listing(cache)
                run_cli(["push"], root, check=True)
                self.remote_v1 = listing(self.remote)
        run_cli(["push"], root, check=True)
        self.cache_v2 = listing(cache)
        self.remote_v2 = listing(self.remote)
        self.outs = {}
        for v in ("1", "2", "3"):
            self.outs[v] = _hash(expected_out(v))


def _hash(data: bytes) -> str:
    from repro.hashing.filehash import hash_file

    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return hash_file(f.name)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    return Base(tmp_path_factory.mktemp("fault-base"))


def prepare(base: Base, work: Path, command: str) -> tuple[list[str], set[str]]:
    """A fresh copy of the base project, made ready for `command`; returns the CLI args and
    the objects the copy's snapshots need but its cache lacks (on purpose: pull fetches them)."""
    root, remote = str(work / "proj"), str(work / "remote")
    shutil.copytree(base.root, root, symlinks=True)
    shutil.copytree(base.remote, remote, symlinks=True)
    with open(os.path.join(root, ".repro", "config.toml")) as f:
        config = f.read().replace(base.remote, remote)
    with open(os.path.join(root, ".repro", "config.toml"), "w") as f:
        f.write(config)
    sigs = list(base.snapshots)
    if command == "run":
        write(root, "params.yaml", "version: 3\n")
        return ["run"], set()
    if command == "add":
        write_data(root, "3", n=100)
        return ["add", "data"], set()
    if command == "checkout":
        return ["checkout", sigs[1]], set()  # the first run: other data, other output
    if command == "push":
        for key in base.remote_v2 - base.remote_v1:
            os.unlink(os.path.join(remote, key))
        return ["push"], set()
    if command == "pull":
        cache = os.path.join(root, ".repro", "cache")
        gone = set()
        for key in base.cache_v2 - base.cache_v1:
            if key.startswith(("objects/", "runs/")):
                os.unlink(os.path.join(cache, key))
                if key.startswith("objects/"):
                    gone.add(key[len("objects/") :].replace("/", ""))
        shutil.rmtree(os.path.join(root, "data"))
        return ["pull"], gone
    if command == "gc":
        return ["gc", "--keep-last", "1"], set()
    raise AssertionError(command)


def missing_now(root: str) -> tuple[list[str], list[str]]:
    from repro.maintenance import fsck
    from repro.project import Project

    report = fsck(Project(root), all_states=True)  # every kept snapshot, not only the lock
    return report.corrupt, report.missing


def check_invariants(base: Base, root: str, remote: str, missing_before: set[str]) -> None:
    from repro.lockfile import load_lock
    from repro.pipeline.runcache import RunCacheEntry
    from repro.project import Project
    from repro.snapshots import checkout_snapshot, list_snapshots, load_snapshot

    # No process of the stage is alive (the watchdog needs a moment after a SIGKILL).
    pids_file = Path(root, "pids.txt")
    pids = [int(x) for x in pids_file.read_text().split()] if pids_file.exists() else []
    deadline = time.time() + 5
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], "a stage process outlived the killed command"
    load_lock(os.path.join(root, "repro.lock"))  # parses
    corrupt, missing = missing_now(root)
    assert not corrupt, corrupt
    assert set(missing) <= missing_before, sorted(set(missing) - missing_before)
    # The run cache holds no mixed result, here or on the remote.
    allowed = set(base.outs.values())
    for runs in (os.path.join(root, ".repro", "cache", "runs"), os.path.join(remote, "runs")):
        for name in os.listdir(runs) if os.path.isdir(runs) else []:
            entry = RunCacheEntry.decode(Path(runs, name).read_bytes(), name)
            assert entry.outs["out.bin"].hash in allowed, f"mixed run-cache entry {name}"
    # Every earlier snapshot still present checks out byte-identical.
    project = Project(root)
    present = set(list_snapshots(project.cache.backend))
    for sig, files in base.snapshots.items():
        if sig not in present:
            continue
        checkout_snapshot(project, sig, force=True, wait=10)
        recorded = load_snapshot(project.cache.backend, sig).files  # code and params it keeps
        keep = [k for k in files if k.startswith("data/") or k == "out.bin" or k in recorded]
        now = tracked(root)
        assert {k: now.get(k) for k in keep} == {k: files[k] for k in keep}, (
            f"snapshot {sig[:12]} does not check out as recorded"
        )
        assert sorted(k for k in now if k.startswith("data/")) == sorted(
            k for k in files if k.startswith("data/")
        )
    # The killed command's temporary files are gone (the checkouts above held the lock).
    tmp = Path(root, ".repro", "tmp")
    left = [n for n in os.listdir(tmp) if TMP_NAME.match(n) or n.startswith("beside-")]
    assert not left, left
    beside = [n for _, _, fs in os.walk(Path(root, "data")) for n in fs if BESIDE.match(n)]
    assert not beside + [n for n in os.listdir(root) if BESIDE.match(n)]


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(["run", "add", "checkout", "push", "pull", "gc"]),
    sig=st.sampled_from([signal.SIGKILL, signal.SIGTERM, signal.SIGHUP]),
    when=st.floats(0.0, 1.1),
)
@example(command="run", sig=signal.SIGKILL, when=0.7)
@example(command="add", sig=signal.SIGTERM, when=0.7)
@example(command="checkout", sig=signal.SIGHUP, when=0.7)
@example(command="push", sig=signal.SIGKILL, when=0.8)
@example(command="pull", sig=signal.SIGTERM, when=0.8)
@example(command="gc", sig=signal.SIGKILL, when=0.9)
def test_a_command_killed_at_any_moment_loses_and_mixes_nothing(
    base: Base, command: str, sig: signal.Signals, when: float
) -> None:
    with tempfile.TemporaryDirectory(dir=base.top) as tmp:
        work = Path(tmp)
        args, missing_before = prepare(base, work, command)
        root, remote = str(work / "proj"), str(work / "remote")
        p = subprocess.Popen(
            [sys.executable, "-m", "repro.cli", *args],
            cwd=root,
            env={**os.environ, "CI": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(when * DURATION[command])
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        assert "Traceback" not in err, err
        if p.returncode < 0:
            assert p.returncode == -sig  # killed outright (or before repro set its handlers)
        elif p.returncode != 0:
            assert p.returncode == 128 + sig, (p.returncode, err)
            assert err.strip().splitlines()[-1] == f"stopped by {signal.Signals(sig).name}."
        check_invariants(base, root, remote, missing_before)


def _strace_works() -> bool:
    if not shutil.which("strace"):
        return False
    try:
        r = subprocess.run(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="needs strace (and ptrace) to kill at a syscall")
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(["gc", "add", "checkout", "pull", "push", "run"]),
    syscall=st.sampled_from(["unlink", "rename"]),
    nth=st.integers(1, 130),
)
@example(command="gc", syscall="unlink", nth=10)  # mid-way through the objects
@example(command="gc", syscall="unlink", nth=2)  # among the snapshots
@example(command="add", syscall="rename", nth=60)
@example(command="pull", syscall="rename", nth=40)
def test_a_command_killed_at_its_nth_delete_or_rename_loses_nothing(
    base: Base, command: str, syscall: str, nth: int
) -> None:
    """SIGKILL exactly at the n-th unlink or rename a command makes (strace injects it): the
    moments a timer rarely hits, such as gc between deleting a snapshot and its objects."""
    with tempfile.TemporaryDirectory(dir=base.top) as tmp:
        work = Path(tmp)
        args, missing_before = prepare(base, work, command)
        root, remote = str(work / "proj"), str(work / "remote")
        r = subprocess.run(
            [
                *("strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}"),
                *("-e", f"inject={syscall}:signal=KILL:when={nth}"),
                *(sys.executable, "-m", "repro.cli", *args),
            ],
            cwd=root,
            env={**os.environ, "CI": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode in (0, -signal.SIGKILL, 128 + signal.SIGKILL), r.stderr
        check_invariants(base, root, remote, missing_before)


def test_the_base_project_is_sane(base: Base) -> None:
    """The checks above can fail: a snapshot whose bytes differ is caught."""
    assert len(base.snapshots) == 4
    assert len(set(base.outs.values())) == 3
    doc = json.loads(Path(base.root, "repro.lock").read_text())
    assert doc["stages"]["w"]["outs"]["out.bin"]["hash"] == base.outs["2"]
