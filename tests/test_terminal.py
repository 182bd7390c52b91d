"""Terminal output as a person sees it: the CLI run under a real pseudo-terminal at 80 and 120
columns (tables fit, columns hold, no-op runs fold, colours), and piped (plain, no escapes)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.conftest import run_cli, write

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SPEC = """stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [lr]
    outs: [model.txt]
    metrics: [metrics.json]
"""
TRAIN = """import json
lr = float(open('params.yaml').read().split(':')[1])
json.dump({'loss': 0.1 + 0.2 + lr, 'accuracy': 0.912345678, 'n': 100}, open('metrics.json', 'w'))
open('model.txt', 'w').write(str(lr))
"""


def tty(
    root, *args: str, cols: int = 80, env: dict | None = None, pipe_stdout: bool = False
) -> tuple[str, str]:
    """Run `repro ARGS` with stdout and stderr on a pseudo-terminal `cols` wide (or stdout to a
    file when `pipe_stdout`); returns (stdout, stderr) as the terminal got them ('\\r\\n' as
    '\\n'); with both on the terminal, stderr is ''."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    full = {**os.environ, "COLUMNS": str(cols), "TERM": "xterm-256color", **(env or {})}
    for k in ("CI", "NO_COLOR", "FORCE_COLOR"):
        if k not in (env or {}):
            full.pop(k, None)
    out_path = Path(root, "..", "stdout.txt").resolve()
    with open(out_path, "wb") as out_file:
        p = subprocess.Popen(
            [sys.executable, "-m", "repro.cli", *args],
            cwd=root,
            env=full,
            stdin=slave,
            stdout=out_file if pipe_stdout else slave,
            stderr=slave,
        )
        os.close(slave)
        got = bytearray()
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                p.kill()
                raise AssertionError("the command hung")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            got += chunk
        os.close(master)
        assert p.wait(timeout=60) == 0, got.decode(errors="replace")
    term = got.decode(errors="replace").replace("\r\n", "\n")
    if pipe_stdout:
        return out_path.read_text(), term
    return term, ""


@pytest.fixture
def trained(project):
    """Three runs (two of them no-ops), a tag, a change and a rollback."""
    root = project.root
    write(root, "repro.yaml", SPEC)
    write(root, "train.py", TRAIN)
    write(root, "params.yaml", "lr: 0.1\n")
    for _ in range(3):
        run_cli(["run"], root, check=True)
    run_cli(["tag", "v1"], root, check=True)
    write(root, "params.yaml", "lr: 0.5\n")
    run_cli(["run"], root, check=True)
    run_cli(["rollback"], root, check=True)
    return root


def rows_of(text: str) -> list[str]:
    return [ln for ln in ANSI.sub("", text).splitlines() if ln.strip()]


@pytest.mark.parametrize("cols", [80, 120])
def test_log_table_fits_holds_its_columns_and_folds_no_op_runs(trained, cols):
    out, _ = tty(trained, "log", cols=cols)
    assert "\x1b[" in out  # a terminal gets colour
    lines = rows_of(out)
    assert all(len(ln) <= cols for ln in lines), "\n".join(lines)
    assert lines[0].split()[:2] == ["Run", "Snapshot"], lines  # headers
    rollback = next(ln for ln in lines if " rollback " in ln)
    ran = [ln for ln in lines if " run " in ln]
    assert ran and all(ln.index(" ok") == rollback.index(" ok") for ln in ran), lines
    # runs 2 and 3 changed nothing: one line says so instead of a row each
    assert sum("2 no-op runs" in ln for ln in lines) == 1, lines
    assert len([ln for ln in lines if re.match(r"\d{8}T", ln)]) == 3, lines
    assert "accuracy=0.9123" in out and "0.912345678" not in out
    wide = [c for c in ("Started", "Commit") if c in lines[0]]
    assert wide == (["Started", "Commit"] if cols == 120 else []), lines[0]


def test_piped_log_is_plain_with_the_same_columns_and_json_keeps_its_shape(trained):
    r = run_cli(["log"], trained, check=True)
    assert not ANSI.search(r.out)
    lines = r.out.splitlines()
    assert len(lines) == 4 and "… 2 no-op runs …" in lines[2], lines
    assert " rollback " in lines[0] and lines[0].index(" ok") == lines[1].index(" ok")
    rows = run_cli(["log", "--json"], trained, check=True).json()
    assert len(rows) == 5 and rows[0]["kind"] == "rollback"
    assert set(rows[0]) >= {"run_id", "snapshot", "started", "user", "host", "git_commit"}
    assert run_cli(["log", "-n", "1", "--json"], trained, check=True).json() == rows[:1]


def test_no_color_means_no_escape_codes(trained):
    for args in (["log"], ["status"], ["show", "v1"], ["metrics", "show", "-A"]):
        out, _ = tty(trained, *args, env={"NO_COLOR": "1"})
        assert "\x1b[" not in out, (args, out)
        assert all(len(ln) <= 80 for ln in out.splitlines()), out
    assert out.splitlines()[0].split() == ["State", "Path", "loss", "accuracy", "n"], out
    out, _ = tty(trained, "log", env={"NO_COLOR": ""})  # any value, even empty
    assert "\x1b[" not in out and "Snapshot" in out


def test_status_groups_by_stage_colours_reasons_and_sums_up(trained):
    write(trained, "params.yaml", "lr: 0.7\n")
    write(trained, "train.py", TRAIN + "# tuned\n")
    out, _ = tty(trained, "status")
    plain = rows_of(out)
    assert plain[0].split() == ["train", "stale"], plain
    assert plain[1].split() == ["code", "train.py"] and plain[2].split()[0] == "params", plain
    assert "\x1b[35mcode" in out and "\x1b[36mparams" in out  # kinds in their colours
    assert plain[-1].startswith("1 of 1 stage stale"), plain
    piped = run_cli(["status"], trained).out
    assert not ANSI.search(piped)
    assert piped.splitlines()[0] == "train: stale (code: train.py; params: params.yaml:lr)"


def test_diff_colours_severity_and_keeps_its_text(trained):
    v1 = run_cli(["tags", "--json"], trained, check=True).json()[0]["sig"]
    newest = run_cli(["log", "--json"], trained, check=True).json()[1]["snapshot"]
    out, _ = tty(trained, "diff", v1, newest)
    assert "\x1b[1;31m[major]\x1b[0m" in out and "\x1b[33m[minor]\x1b[0m" in out, out
    piped = run_cli(["diff", v1, newest], trained, check=True).out
    assert ANSI.sub("", out).split() == piped.split()
    assert "[minor] params params.yaml:lr: 0.1 -> 0.5" in piped


def test_show_prints_sections_not_yaml(trained):
    rows = run_cli(["log", "--json"], trained, check=True).json()
    run = run_cli(["show", rows[1]["run_id"]], trained, check=True).out
    heads = [ln.split()[0] for ln in run.splitlines() if not ln.startswith(" ")]
    assert heads == ["Run", "Stages", "Metrics"], run
    assert "train  ran" in run and "because params params.yaml:lr" in run
    snap = run_cli(["show", "v1"], trained, check=True).out
    heads = [ln.split()[0] for ln in snap.splitlines() if not ln.startswith(" ")]
    assert heads == ["Snapshot", "Stages", "Params", "Runs"], snap
    assert "params.yaml:lr  0.1" in snap and "cmd   python train.py" in snap
    assert run_cli(["show", "v1", "--json"], trained, check=True).json()["type"] == "snapshot"


def test_add_shows_two_phases_with_totals_on_a_terminal_and_nothing_when_piped(project):
    root = project.root
    for i in range(12):
        write(root, f"data/f{i:02d}.bin", os.urandom(256 * 1024))
    out, err = tty(root, "add", "data", pipe_stdout=True)
    assert "added data (12 files, 3.0 MiB)" in out and "\x1b[" not in out  # stdout untouched
    assert "adding: hash" in err and "adding: store" in err, err
    assert "12 files" in err and "3.0 MiB" in err and "12/12 files" in err, err
    shutil.rmtree(Path(root, "data"))
    out, err = tty(root, "checkout", pipe_stdout=True)
    assert "12 files placed" in out and "checking out: place" in err, err
    assert "12/12 files" in err and "3.0/3.0 MiB" in err, err
    write(root, "more/x.bin", os.urandom(1024))
    r = run_cli(["add", "more"], root, env={"CI": ""}, check=True)
    assert r.err == "" and "added more" in r.out  # piped: no progress at all
    out, err = tty(root, "add", "more", env={"CI": "1"}, pipe_stdout=True)
    assert "adding" not in err  # under CI: none either


def test_push_and_pull_show_their_phases_with_totals(project, tmp_path):
    root = project.root
    for i in range(5):
        write(root, f"data/f{i}.bin", os.urandom(64 * 1024))
    run_cli(["add", "data"], root, check=True)
    run_cli(["remote", "add", "origin", str(tmp_path / "remote"), "--default"], root, check=True)
    out, err = tty(root, "push", pipe_stdout=True)
    assert "pushing: upload" in err and "KiB" in err, err
    assert re.search(r"\b(\d+)/\1 files", err), err  # a known total of objects, all sent
    assert "\x1b[" not in out
    shutil.rmtree(Path(root, "data"))
    for p in Path(root, ".repro", "cache", "objects").iterdir():
        shutil.rmtree(p)
    out, err = tty(root, "pull", pipe_stdout=True)
    assert "pulling: place" in err and "5/5 files" in err and "320.0/320.0 KiB" in err, err
    assert len(list(Path(root, "data").iterdir())) == 5
