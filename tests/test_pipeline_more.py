"""The rest of the stage keys, params formats, the graph drawing and the seed helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write


def statuses(r) -> dict[str, str]:
    return {s["name"]: s["status"] for s in r.json()["stages"]}


def test_params_from_json_and_toml_with_dotted_keys(project, cli) -> None:
    write(project.root, "conf.json", json.dumps({"model": {"depth": 3, "width": 8}}))
    write(project.root, "conf.toml", "[opt]\nlr = 0.1\nmomentum = 0.9\n")
    write(
        project.root,
        "repro.yaml",
        """\
stages:
  s:
    cmd: echo ok > o
    outs: [o]
    params:
      - conf.json:model.depth
      - conf.toml: [opt.lr]
""",
    )
    cli("run", ok=True)
    write(project.root, "conf.json", json.dumps({"model": {"depth": 3, "width": 16}}))
    write(project.root, "conf.toml", "[opt]\nlr = 0.1\nmomentum = 0.5\n")
    assert cli("status", "--exit-code").code == 0  # keys the stage does not name
    write(project.root, "conf.toml", "[opt]\nlr = 0.2\nmomentum = 0.5\n")
    st = cli("status", "--json", ok=True).json()["stages"][0]
    assert st["reasons"] == [{"kind": "params", "target": "conf.toml:opt.lr"}]


def test_always_changed_frozen_persist_and_uncached_outputs(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        """\
stages:
  tick:
    cmd: date +%s%N > tick.txt
    outs: [tick.txt]
    always_changed: true
  frozen:
    cmd: echo frozen >> frozen.txt
    outs: [frozen.txt]
    frozen: true
  grow:
    cmd: echo line >> log.txt
    outs:
      - log.txt: {persist: true, cache: false}
""",
    )
    first = cli("run", "--json", ok=True)
    # A frozen stage that never ran has no result to keep: it runs once (issue 10).
    assert statuses(first) == {"tick": "ran", "frozen": "ran", "grow": "ran"}
    assert Path(project.root, "frozen.txt").read_text() == "frozen\n"
    assert "/log.txt" not in Path(project.root, ".gitignore").read_text()  # not cached: in git
    write(
        project.root,
        "repro.yaml",
        Path(project.root, "repro.yaml").read_text().replace("echo line", "echo more"),
    )
    again = cli("run", "--json", ok=True)
    assert statuses(again)["tick"] == "ran"  # always_changed
    assert statuses(again)["frozen"] == "up-to-date"  # frozen: kept, not run again
    assert Path(project.root, "frozen.txt").read_text() == "frozen\n"
    assert Path(project.root, "log.txt").read_text() == "line\nmore\n"  # persisted, appended
    forced = cli("run", "frozen", "--force", "--json", ok=True)
    assert statuses(forced)["frozen"] == "ran"


def test_dag_text_mermaid_dot(project, cli) -> None:
    write(project.root, "in.txt", "x")
    write(
        project.root,
        "repro.yaml",
        """\
stages:
  a:
    cmd: cp in.txt a.txt
    deps: [in.txt]
    outs: [a.txt]
  b:
    cmd: cp a.txt b.txt
    deps: [a.txt]
    outs: [b.txt]
  c:
    cmd: cat a.txt b.txt > c.txt
    deps: [a.txt, b.txt]
    outs: [c.txt]
""",
    )
    text = cli("dag", ok=True).out
    # networkx's network text: c drawn under b, its other parent a named beside it.
    assert text.splitlines()[:3] == ["╙── a", "    ├─╼ b", "    │   └─╼ c ╾ a"]
    assert "s0 --> s1" in cli("dag", "--mermaid", ok=True).out
    assert '"b" -> "c";' in cli("dag", "--dot", ok=True).out
    doc = json.loads(cli("dag", "--json", ok=True).out)
    assert doc["nodes"] == ["a", "b", "c"] and ["a", "c"] in doc["edges"]


def test_seed_everything_seeds_random_and_numpy(tmp_path) -> None:
    code = (
        "import random, repro; s = repro.seed_everything(); import numpy as np;"
        "print(s, random.random(), np.random.rand())"
    )

    def run(seed):
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "REPRO_SEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    pytest.importorskip("numpy")
    assert run("5") == run("5") and run("5") != run("6")
    assert run("5").split()[0] == "5"


def test_log_by_stage_and_run_push(project, cli, tmp_path) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: echo > a\n    outs: [a]\n"
        "  b:\n    cmd: echo $X > b\n    outs: [b]\n    env: [X]\n",
    )
    cli("remote", "add", "r", str(tmp_path / "remote"), ok=True)
    cli("run", env={"X": "1"}, ok=True)
    r = cli("run", "--push", "--json", env={"X": "2"}, ok=True).json()
    assert cli("log", "--stage", "a", "--json", ok=True).json()[0]["run_id"] != r["run_id"]
    assert cli("log", "--stage", "b", "--json", ok=True).json()[0]["run_id"] == r["run_id"]
    assert (tmp_path / "remote" / "records" / r["run_id"]).exists()


def test_parquet_schema_change(project, cli) -> None:
    pa = pytest.importorskip("pyarrow", reason="needs the 'parquet' extra")
    import pyarrow.parquet as pq

    path = os.path.join(project.root, "t.parquet")
    pq.write_table(pa.table({"a": [1, 2]}), path)
    s1 = cli("add", "t.parquet", "--json", ok=True).json()["snapshot"]
    os.chmod(path, 0o644)
    os.unlink(path)
    pq.write_table(pa.table({"a": [1.5, 2.5]}), path)  # int64 -> double
    s2 = cli("add", "t.parquet", "--json", ok=True).json()["snapshot"]
    d = cli("diff", s1, s2, "--json", ok=True).json()
    assert d["data"][0]["note"] == "schema changed"


def test_interrupted_run_stops_the_stage_and_changes_no_lock(project, cli) -> None:
    import signal
    import time

    write(
        project.root, "repro.yaml", "stages:\n  a:\n    cmd: echo v1 > a.txt\n    outs: [a.txt]\n"
    )
    cli("run", ok=True)
    lock_before = Path(project.root, "repro.lock").read_text()
    write(
        project.root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: touch started; sleep 5; "
        "touch finished; echo v2 > a.txt\n    outs: [a.txt]\n",
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "repro.cli", "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = Path(project.root, "started")
    deadline = time.time() + 20
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists()
    p.send_signal(signal.SIGINT)  # Ctrl-C
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    time.sleep(5.5)
    assert not Path(project.root, "finished").exists()  # the stage's process group was stopped
    assert Path(project.root, "repro.lock").read_text() == lock_before
    # The old output was saved before the stage began; checkout brings it back.
    cli("checkout", ok=True)
    assert Path(project.root, "a.txt").read_text() == "v1\n"
