"""Progress on the long operations that lacked it (issue 13): caching a stage's outputs after
`repro run`, `repro checkout SIG`, and `repro pull`'s download, each with known totals, seen
under a real pseudo-terminal; nothing at all when piped, under CI, or (for the run) with -j 2."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tests.conftest import run_cli, write
from tests.test_terminal import ANSI, tty

# A stage that says something, then makes 12 files of 256 KiB (3.0 MiB) in one folder.
SPEC = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    outs: [out]
"""
MAKE = """import os
os.makedirs('out', exist_ok=True)
print('making twelve files', flush=True)
for i in range(12):
    open(f'out/f{i:02d}.bin', 'wb').write(os.urandom(256 * 1024))
print('made them all', flush=True)
"""


def shown(err: str, pattern: str) -> bool:
    """Whether some state the display drew (each redraw starts at a carriage return) matches
    `pattern`, e.g. a phase at its end with its totals."""
    states = re.split(r"[\r\n]", ANSI.sub("", err))
    return any(re.search(pattern, s) for s in states)


def made(root) -> None:
    write(root, "repro.yaml", SPEC)
    write(root, "make.py", MAKE)


def test_run_shows_hash_then_store_after_the_stage_output(project):
    root = project.root
    made(root)
    out, err = tty(root, "run", pipe_stdout=True)
    assert "making twelve files\nmade them all\n" in out and "\x1b[" not in out, out
    assert "caching make: hash" in err and "caching make: store" in err, err
    assert err.index("caching make: hash") < err.index("caching make: store")
    assert shown(err, r"caching make: hash .* 12 files 3\.0/3\.0 MiB"), err
    assert shown(err, r"caching make: store .* 12/12 files 3\.0/3\.0 MiB"), err
    # Both streams on one terminal: the stage's lines come whole, and before the display.
    write(root, "make.py", MAKE + "# again\n")
    term, _ = tty(root, "run")
    plain = ANSI.sub("", term)
    assert "\nmade them all\n" in plain, plain
    assert plain.index("made them all") < plain.index("caching make: hash"), plain
    assert len(os.listdir(Path(root, "out"))) == 12


def test_run_shows_nothing_with_two_jobs_under_ci_or_piped(project):
    root = project.root
    made(root)
    _, err = tty(root, "run", "-j", "2", pipe_stdout=True)
    assert "caching" not in err and "made them all" not in err, err
    write(root, "make.py", MAKE + "# ci\n")
    _, err = tty(root, "run", env={"CI": "1"}, pipe_stdout=True)
    assert "caching" not in err, err
    write(root, "make.py", MAKE + "# piped\n")
    r = run_cli(["run"], root, env={"CI": ""}, check=True)
    assert r.err == "" and "made them all" in r.out and "\x1b[" not in r.out, (r.out, r.err)


def test_checkout_of_a_snapshot_shows_its_place_phase_with_totals(project):
    root = project.root
    for i in range(8):
        write(root, f"data/f{i}.bin", os.urandom(128 * 1024))
    run_cli(["add", "data"], root, check=True)
    sig = run_cli(["log", "--json"], root, check=True).json()[0]["snapshot"]
    shutil.rmtree(Path(root, "data"))
    out, err = tty(root, "checkout", sig[:10], pipe_stdout=True)
    assert "8 files placed" in out and "\x1b[" not in out, out
    # The snapshot's 9 paths: the 8 files of data/ and repro.yaml (already as recorded).
    assert shown(err, r"checking out: place .* 9/9 files 1\.0/1\.0 MiB"), err
    assert len(os.listdir(Path(root, "data"))) == 8
    shutil.rmtree(Path(root, "data"))
    r = run_cli(["checkout", sig[:10]], root, env={"CI": ""}, check=True)
    assert r.err == "" and "8 files placed" in r.out
    shutil.rmtree(Path(root, "data"))
    _, err = tty(root, "checkout", sig[:10], env={"CI": "true"}, pipe_stdout=True)
    assert "checking out" not in err, err


def test_pull_shows_download_with_known_totals_then_place(project, tmp_path):
    root = project.root
    for i in range(6):
        write(root, f"data/f{i}.bin", os.urandom(64 * 1024))
    write(root, "one.bin", os.urandom(32 * 1024))
    run_cli(["add", "data", "one.bin"], root, check=True)
    run_cli(["remote", "add", "origin", str(tmp_path / "remote"), "--default"], root, check=True)
    run_cli(["push"], root, check=True)

    def lose_everything() -> None:
        shutil.rmtree(Path(root, "data"))
        os.unlink(Path(root, "one.bin"))
        for p in Path(root, ".repro", "cache", "objects").iterdir():
            shutil.rmtree(p)

    lose_everything()
    out, err = tty(root, "pull", pipe_stdout=True)
    assert "pulled 8 objects" in out and "\x1b[" not in out, out  # 7 files and data/'s tree
    # 6 x 64 KiB + 32 KiB: totals known before the first byte, then all of it moved.
    assert shown(err, r"pulling: download .* 7 files 0\.0/416\.0 KiB"), err
    assert shown(err, r"pulling: download .* 7/7 files 416\.0/416\.0 KiB"), err
    assert err.index("pulling: download") < err.index("pulling: place"), err
    assert len(os.listdir(Path(root, "data"))) == 6 and Path(root, "one.bin").exists()
    lose_everything()
    r = run_cli(["pull"], root, env={"CI": ""}, check=True)
    assert r.err == "" and "\x1b[" not in r.out
    assert len(os.listdir(Path(root, "data"))) == 6
