"""End to end through the real CLI: what runs, what is restored, and what is reported."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.conftest import run_cli, snapshot_tree, write

PIPE = """\
# my pipeline (this comment must survive repro rewriting the file)
seed: 7
stages:
  prep:
    cmd: echo prep >> "$COUNTER"; tr a-z A-Z < data/in.txt > mid.txt
    deps: [data/in.txt]
    params: [prep.mode]
    outs: [mid.txt]
  train:
    cmd: echo train >> "$COUNTER"; cat mid.txt > model.txt; echo "lr=$(cat lr)" >> model.txt
    deps: [mid.txt, lr]
    params: [train.lr]
    outs: [model.txt]
  report:
    cmd: echo report >> "$COUNTER"; wc -c model.txt > report.txt
    deps: [model.txt]
    outs: [report.txt]
"""


def setup_pipe(root: str) -> str:
    write(root, "repro.yaml", PIPE)
    write(root, "data/in.txt", "hello\n")
    write(root, "lr", "0.1\n")
    write(root, "params.yaml", "prep:\n  mode: upper\ntrain:\n  lr: 0.1\n  epochs: 3\n")
    counter = os.path.join(os.path.dirname(root), "counter")
    Path(counter).write_text("")
    return counter


def runs(counter: str) -> list[str]:
    return Path(counter).read_text().split()


def statuses(result) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result.json()["stages"]}


def test_first_noop_param_change_and_revert_restores_without_running(project, cli) -> None:
    counter = setup_pipe(project.root)
    env = {"COUNTER": counter}
    r = cli("run", "--json", env=env, ok=True)
    assert statuses(r) == {"prep": "ran", "train": "ran", "report": "ran"}
    assert runs(counter) == ["prep", "train", "report"]
    doc = r.json()
    assert set(doc) >= {"snapshot", "run_id", "stages"}
    assert all(len(s["signature"]) == 32 for s in doc["stages"])
    first_model = Path(project.root, "model.txt").read_bytes()

    r = cli("run", "--json", env=env, ok=True)
    assert set(statuses(r).values()) == {"up-to-date"}
    assert runs(counter) == ["prep", "train", "report"]

    # epochs is in params.yaml but no stage names it: nothing is stale.
    write(project.root, "params.yaml", "prep:\n  mode: upper\ntrain:\n  lr: 0.1\n  epochs: 9\n")
    assert cli("status", "--exit-code", env=env).code == 0

    write(project.root, "params.yaml", "prep:\n  mode: upper\ntrain:\n  lr: 0.5\n  epochs: 9\n")
    st = cli("status", "--json", env=env, ok=True).json()
    by = {s["name"]: s for s in st["stages"]}
    assert by["prep"]["state"] == "up-to-date"
    assert {"kind": "params", "target": "params.yaml:train.lr"} in by["train"]["reasons"]
    assert by["report"]["reasons"] == [{"kind": "upstream", "target": "train"}]
    assert cli("status", "--exit-code", env=env).code == 1
    write(project.root, "lr", "0.5\n")
    r = cli("run", "--json", env=env, ok=True)
    assert statuses(r) == {"prep": "up-to-date", "train": "ran", "report": "ran"}
    assert runs(counter) == ["prep", "train", "report", "train", "report"]

    # Revert both inputs: the run cache has the old result; nothing executes.
    write(project.root, "params.yaml", "prep:\n  mode: upper\ntrain:\n  lr: 0.1\n  epochs: 9\n")
    write(project.root, "lr", "0.1\n")
    r = cli("run", "--json", env=env, ok=True)
    assert statuses(r) == {"prep": "up-to-date", "train": "restored", "report": "restored"}
    assert runs(counter) == ["prep", "train", "report", "train", "report"]
    assert Path(project.root, "model.txt").read_bytes() == first_model
    assert "# my pipeline" in Path(project.root, "repro.yaml").read_text()


def test_deleted_output_is_restored_and_force_reruns(project, cli) -> None:
    counter = setup_pipe(project.root)
    env = {"COUNTER": counter}
    cli("run", env=env, ok=True)
    before = snapshot_tree(project.root, skip=(".repro", ".git"))
    os.unlink(os.path.join(project.root, "model.txt"))
    st = cli("status", "--json", env=env, ok=True).json()
    train = next(s for s in st["stages"] if s["name"] == "train")
    assert {"kind": "outs", "target": "model.txt"} in train["reasons"]
    r = cli("run", "--json", env=env, ok=True)
    assert statuses(r)["train"] == "restored"
    assert snapshot_tree(project.root, skip=(".repro", ".git")) == before
    assert len(runs(counter)) == 3
    r = cli("run", "--force", "train", "--json", env=env, ok=True)
    assert statuses(r) == {"prep": "ran", "train": "ran"}
    assert "/model.txt" in Path(project.root, ".gitignore").read_text()


def test_failing_stage_records_nothing_and_skips_downstream(project, cli) -> None:
    counter = setup_pipe(project.root)
    env = {"COUNTER": counter}
    cli("run", env=env, ok=True)
    lock_before = Path(project.root, "repro.lock").read_text()
    old_model = Path(project.root, "model.txt").read_bytes()
    spec = PIPE.replace("cat mid.txt > model.txt;", "echo partial > model.txt; exit 3;")
    write(project.root, "repro.yaml", spec)
    r = cli("run", "--json", env=env)
    assert r.code == 1
    assert statuses(r) == {"prep": "up-to-date", "train": "failed", "report": "skipped"}
    assert "exited with code 3" in r.err
    assert Path(project.root, "repro.lock").read_text() == lock_before
    # The old output was in the cache before the failed run replaced it: checkout brings it back.
    cli("checkout", ok=True)
    assert Path(project.root, "model.txt").read_bytes() == old_model


def test_missing_declared_output_is_a_failure(project, cli) -> None:
    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: 'true'\n    outs: [never.txt]\n")
    r = cli("run")
    assert r.code == 1 and "did not produce its declared output 'never.txt'" in r.err


def test_seeds_reach_the_process(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        """\
seed: 11
stages:
  a:
    cmd: echo "$REPRO_SEED $PYTHONHASHSEED" > a.txt
    outs: [a.txt]
  b:
    cmd: echo "$REPRO_SEED" > b.txt
    seed: 1234
    outs: [b.txt]
""",
    )
    cli("run", ok=True)
    a = Path(project.root, "a.txt").read_text().split()
    assert a[0] == a[1] and a[0].isdigit()
    assert Path(project.root, "b.txt").read_text().strip() == "1234"
    from repro.pipeline.spec import derive_seed

    assert int(a[0]) == derive_seed(11, "a")
    # Changing the pipeline seed changes a's seed (stale, kind seed) but not b's.
    spec = Path(project.root, "repro.yaml").read_text().replace("seed: 11", "seed: 12")
    write(project.root, "repro.yaml", spec)
    st = {s["name"]: s for s in cli("status", "--json", ok=True).json()["stages"]}
    assert {"kind": "seed", "target": "a"} in st["a"]["reasons"]
    assert st["b"]["state"] == "up-to-date"


def test_parallel_jobs_overlap(project, cli) -> None:
    stages = "".join(
        f"  s{i}:\n    cmd: date +%s.%N > s{i}.start; sleep 1; date +%s.%N > s{i}.end\n"
        f"    outs: [s{i}.start, s{i}.end]\n"
        for i in range(2)
    )
    write(
        project.root,
        "repro.yaml",
        "stages:\n"
        + stages
        + (
            "  join:\n    cmd: cat s0.end s1.end > joined\n    deps: [s0.end, s1.end]\n"
            "    outs: [joined]\n"
        ),
    )
    t0 = time.monotonic()
    r = cli("run", "-j", "2", "--json", ok=True)
    assert time.monotonic() - t0 < 4
    assert statuses(r) == {"s0": "ran", "s1": "ran", "join": "ran"}
    read = lambda n: float(Path(project.root, n).read_text())  # noqa: E731
    assert read("s0.start") < read("s1.end") and read("s1.start") < read("s0.end")


def every_file(root: str) -> dict[str, tuple[bytes, int, int]]:
    """Bytes, mtime and mode of every file and folder under `root` but `.git` and the stat
    cache (`.repro/state*.db*`, which a dry run may fill: it only remembers hashes)."""
    out: dict[str, tuple[bytes, int, int]] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        rel_dir = os.path.relpath(dirpath, root)
        for name in files + dirs:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel.startswith(os.path.join(".repro", "state")):
                continue
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = Path(p).read_bytes() if name in files else b""
            out[rel] = (data, st.st_mtime_ns, st.st_mode)
    return out


def test_dry_run_changes_nothing(project, cli) -> None:
    counter = setup_pipe(project.root)
    cli("status")  # parses repro.yaml once (its parse is cached under .repro/tmp)
    before = every_file(project.root)
    r = cli("run", "--dry-run", "--json", env={"COUNTER": counter}, ok=True)
    assert statuses(r) == {"prep": "ran", "train": "ran", "report": "ran"}
    assert r.json().get("dry_run") is True
    assert runs(counter) == []
    assert every_file(project.root) == before


def test_targets_run_only_what_they_need(project, cli) -> None:
    counter = setup_pipe(project.root)
    r = cli("run", "train", "--json", env={"COUNTER": counter}, ok=True)
    assert statuses(r) == {"prep": "ran", "train": "ran"}
    assert not Path(project.root, "report.txt").exists()
    r = cli("run", "prep", "--downstream", "--json", env={"COUNTER": counter}, ok=True)
    assert statuses(r) == {"prep": "up-to-date", "train": "up-to-date", "report": "ran"}


def test_foreach_and_matrix(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        """\
stages:
  greet:
    foreach: [en, fr]
    do:
      cmd: echo ${item} > greet-${item}.txt
      outs: ["greet-${item}.txt"]
  grid:
    matrix:
      model: [a, b]
      lr: [1, 2]
    cmd: echo ${item.model} ${lr} > grid-${model}-${lr}.txt
    outs: ["grid-${model}-${lr}.txt"]
""",
    )
    r = cli("run", "--json", ok=True)
    names = set(statuses(r))
    assert names == {"greet@en", "greet@fr", "grid@a-1", "grid@a-2", "grid@b-1", "grid@b-2"}
    assert Path(project.root, "grid-b-2.txt").read_text().strip() == "b 2"


def test_stage_add_keeps_comments_and_validates(project, cli) -> None:
    write(project.root, "repro.yaml", "# keep me\nstages: {}  # and me\n")
    write(project.root, "in.txt", "x")
    cli(
        "stage",
        "add",
        "one",
        "--cmd",
        "cp in.txt out.txt",
        "-d",
        "in.txt",
        "-o",
        "out.txt",
        ok=True,
    )
    text = Path(project.root, "repro.yaml").read_text()
    assert "# keep me" in text and "cmd: cp in.txt out.txt" in text
    r = cli("stage", "add", "two", "--cmd", "x", "-o", "out.txt")
    assert r.code != 0 and "also an output of stage 'one'" in r.err
    assert Path(project.root, "repro.yaml").read_text() == text
    cli("run", ok=True)
    assert Path(project.root, "out.txt").read_text() == "x"


def test_verify_reports_nondeterminism(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        """\
stages:
  det:
    cmd: echo $REPRO_SEED > det.txt
    outs: [det.txt]
  rand:
    cmd: head -c 16 /dev/urandom > rand.bin
    outs: [rand.bin]
""",
    )
    cli("run", ok=True)
    recorded = Path(project.root, "rand.bin").read_bytes()
    ok = cli("run", "--verify", "det", "--json", ok=True).json()
    assert ok["stages"][0]["verified"] is True
    bad = cli("run", "--verify", "rand", "--json")
    assert bad.code == 1 and bad.json()["stages"][0]["verified"] is False
    assert "not deterministic" in bad.err
    assert Path(project.root, "rand.bin").read_bytes() == recorded


def test_signatures_do_not_depend_on_clone_directory(project, cli, tmp_path) -> None:
    counter = setup_pipe(project.root)
    a = cli("run", "--json", env={"COUNTER": counter}, ok=True).json()
    other = tmp_path / "elsewhere" / "clone"
    shutil.copytree(project.root, other, symlinks=True)
    b = run_cli(["run", "--json", "--dry-run"], other, env={"COUNTER": counter}, check=True)
    assert {s["signature"] for s in a["stages"]} == {s["signature"] for s in b.json()["stages"]}
    assert set(statuses(b).values()) == {"up-to-date"}


def test_environment_fingerprint_makes_stage_stale(project, cli) -> None:
    write(project.root, "requirements.txt", "numpy==1.0\n")
    write(
        project.root,
        "repro.yaml",
        """\
stages:
  s:
    cmd: echo hi > o.txt
    outs: [o.txt]
    environment:
      python: true
      packages: [xxhash, msgpack]
      lockfiles: [requirements.txt]
""",
    )
    cli("run", ok=True)
    write(project.root, "requirements.txt", "numpy==2.0\n")
    st = cli("status", "--json", ok=True).json()["stages"][0]
    assert {"kind": "env", "target": "requirements.txt"} in st["reasons"]


def test_env_vars_count(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo $MODE > o.txt\n    outs: [o.txt]\n    env: [MODE]\n",
    )
    cli("run", env={"MODE": "a"}, ok=True)
    assert cli("status", "--exit-code", env={"MODE": "a"}).code == 0
    st = cli("status", "--json", env={"MODE": "b"}, ok=True).json()["stages"][0]
    assert st["reasons"] == [{"kind": "env", "target": "MODE"}]


def test_run_lock_says_who_holds_it(project, cli) -> None:
    import subprocess
    import sys

    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: sleep 3; echo > o\n    outs: [o]\n")
    p = subprocess.Popen(
        [sys.executable, "-m", "repro.cli", "run"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        lockfile = Path(project.root, ".repro", "run.lock")
        while time.time() < deadline and not (lockfile.exists() and lockfile.read_text()):
            time.sleep(0.05)
        r = cli("run")
        assert r.code == 1 and "holds the project lock" in r.err and f"pid {p.pid}" in r.err
    finally:
        p.wait(timeout=30)
    assert cli("run", "--json", ok=True).json()["stages"][0]["status"] == "up-to-date"
