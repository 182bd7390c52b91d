"""`repro exp`: runs with params overridden in temporary workspaces, through the real CLI.

The pipeline: `prep` (reads `prep.n`) feeds `train` (reads `train.lr`, `train.depth`, writes
metrics). Each stage appends its name to a counter file outside the project (an absolute path
given in the environment), so the tests count real executions: a sweep of `train.lr` must run
`train` once per value and never `prep` again (the run cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git, run_cli, snapshot_tree, write

PARAMS = """\
# the knobs
prep:
  n: 3
train:
  lr: 0.1   # learning rate
  depth: 2
"""

TRAIN = """\
import json, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
data = open("prepared.txt").read()
json.dump({"acc": round(p["lr"] * p["depth"], 6), "rows": len(data)}, open("metrics.json", "w"))
"""


def spec(python: str) -> str:
    return f"""\
stages:
  prep:
    cmd: echo prep >> "$EXP_COUNTER"; echo rows > prepared.txt
    params: [prep.n]
    outs: [prepared.txt]
  train:
    cmd: echo train >> "$EXP_COUNTER"; {python} train.py
    deps: [prepared.txt, train.py]
    params: [train.lr, train.depth]
    metrics: [metrics.json]
"""


@pytest.fixture
def exp_project(project, tmp_path):
    """A committed project that has been run once; returns (cli, counter path)."""
    counter = tmp_path / "counter.txt"
    env = {"EXP_COUNTER": str(counter)}
    root = project.root
    write(root, "params.yaml", PARAMS)
    write(root, "train.py", TRAIN)
    write(root, "repro.yaml", spec(sys.executable))

    def cli(*args: str, ok: bool | None = None, at: str = root):
        return run_cli(list(args), at, env=env, check=ok)

    cli("run", ok=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pipeline")
    counter.unlink()
    return cli, counter


def counts(counter: Path) -> dict[str, int]:
    lines = counter.read_text().split() if counter.exists() else []
    return {name: lines.count(name) for name in ("prep", "train")}


def shown(cli) -> dict[str, dict]:
    return {r["name"]: r for r in cli("exp", "show", "--json", ok=True).json()}


def test_run_leaves_workspace_and_git_alone_and_show_lists_it(project, exp_project) -> None:
    cli, counter = exp_project
    before = snapshot_tree(project.root)
    r = cli("exp", "run", "-S", "train.lr=0.5", "--name", "fast", ok=True)
    assert "fast: done" in r.out
    assert snapshot_tree(project.root) == before  # params.yaml, outputs, repro.lock untouched
    assert git(project.root, "status", "--porcelain") == ""
    assert counts(counter) == {"prep": 0, "train": 1}  # prep came from the run cache
    row = shown(cli)["fast"]
    assert row["state"] == "done"
    assert row["params"] == {"params.yaml:train.lr": 0.5}
    assert row["metrics"] == {"metrics.json": {"acc": 1.0, "rows": 5}}
    assert len(row["snapshot"]) >= 7
    table = cli("exp", "show", ok=True).out
    assert "fast" in table and "train.lr" in table and "acc" in table
    assert not (Path(project.root) / ".repro/tmp/exps/fast").exists()  # cleaned up
    # Other params files, a YAML scalar value, a generated name safe as a file name.
    write(project.root, "other.yaml", "model:\n  kind: tree\n")
    r = cli("exp", "run", "-S", "other.yaml:model.kind=forest", "--json", ok=True)
    (doc,) = r.json()
    assert doc["name"].startswith("exp-") and len(doc["name"]) == 10
    assert doc["params"] == {"other.yaml:model.kind": "forest"}


def test_sweep_queues_and_run_all_reruns_only_dependent_stages(project, exp_project) -> None:
    cli, counter = exp_project
    r = cli("exp", "run", "-S", "train.lr=range(0.2,0.7,0.1)", "--json", ok=True)
    queued = r.json()
    assert [e["params"]["params.yaml:train.lr"] for e in queued] == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert {e["state"] for e in queued} == {"queued"}
    assert counts(counter) == {"prep": 0, "train": 0}  # queued: nothing ran yet
    assert {r["state"] for r in shown(cli).values()} == {"queued"}
    r = cli("exp", "run", "--run-all", "-j", "2", "--json", ok=True)
    assert {e["state"] for e in r.json()} == {"done"}
    assert counts(counter) == {"prep": 0, "train": 5}  # counted: only the stage reading lr
    rows = shown(cli)
    assert sorted(r["metrics"]["metrics.json"]["acc"] for r in rows.values()) == [
        0.4,
        0.6,
        0.8,
        1.0,
        1.2,
    ]
    top = cli("exp", "show", "--sort-by", "acc", "--sort-order", "desc", "--csv", ok=True).out
    lines = top.splitlines()
    assert lines[0].startswith("name,sig,state") and lines[1].endswith(",0.6,1.2,5")
    md = cli("exp", "show", "--md", ok=True).out
    assert md.splitlines()[1].startswith("|---|")
    # A grid: 2 x 2 combinations of two -S, --name numbered.
    r = cli("exp", "run", "-S", "train.lr=0.1,0.2", "-S", "train.depth=3,4", "-n", "g", ok=True)
    assert sorted(n for n in shown(cli) if n.startswith("g-")) == ["g-1", "g-2", "g-3", "g-4"]
    assert git(project.root, "status", "--porcelain") == ""


def test_queue_then_apply_diff_remove(project, exp_project) -> None:
    cli, counter = exp_project
    cli("exp", "run", "-S", "train.depth=5", "--name", "deep", "--queue", ok=True)
    assert shown(cli)["deep"]["state"] == "queued"
    assert counts(counter)["train"] == 0
    cli("exp", "run", "-S", "train.lr=0.3", "--name", "mid", ok=True)
    cli("exp", "run", "--run-all", ok=True)
    assert shown(cli)["deep"]["state"] == "done"

    d = cli("exp", "diff", "mid", "deep", "--json", ok=True).json()
    assert d["params"]["params.yaml"]["train.lr"] == {"old": 0.3, "new": 0.1}
    assert d["params"]["params.yaml"]["train.depth"] == {"old": 2, "new": 5}
    assert d["metrics"]["metrics.json"]["acc"]["old"] == 0.6
    assert d["metrics"]["metrics.json"]["acc"]["new"] == 0.5
    assert "train.depth" in cli("exp", "diff", "mid", "deep", ok=True).out

    cli("exp", "apply", "mid", ok=True)
    params = Path(project.root, "params.yaml").read_text()
    assert "lr: 0.3" in params and "# learning rate" in params  # comments kept
    assert json.loads(Path(project.root, "metrics.json").read_text())["acc"] == 0.6
    st = cli("status", "--json", ok=True).json()
    assert {s["state"] for s in st["stages"]} == {"up-to-date"}
    before = counts(counter)
    cli("run", ok=True)
    assert counts(counter) == before  # applied outputs are the pipeline's result

    r = cli("exp", "remove", "mid", "nosuch")
    assert r.code != 0 and r.err.count("\n") == 1 and "nosuch" in r.err
    assert "mid" in shown(cli)  # nothing removed
    cli("exp", "remove", "mid", ok=True)
    assert "mid" not in shown(cli) and "deep" in shown(cli)
    r = cli("exp", "apply", "mid")
    assert r.code != 0 and "no experiment named 'mid'" in r.err


BAD_SETS = [
    ("train.lrr=0.1", "train.lrr"),
    ("nothere.yaml:a=1", "nothere.yaml"),
    ("train.lr", "KEY=VALUE"),
    ("train.lr=range(1,1,1)", "empty"),
]


def test_bad_set_is_one_sentence_and_changes_nothing(project, exp_project) -> None:
    cli, counter = exp_project
    before = snapshot_tree(project.root, skip=(".git",))
    for bad, named in BAD_SETS:
        r = cli("exp", "run", "-S", "train.depth=3,4", "-S", bad)
        assert r.code not in (0, 70), bad
        assert r.err.count("\n") == 1 and named in r.err and "Traceback" not in r.err, r.err
        assert snapshot_tree(project.root, skip=(".git",)) == before  # no record, no workspace
    assert not counter.exists()
    r = cli("exp", "run", "--name", "a/b")
    assert r.code == 2 and "a/b" in r.err
    assert snapshot_tree(project.root, skip=(".git",)) == before


def test_push_pull_through_a_folder_remote_to_a_fresh_clone(project, exp_project, tmp_path):
    cli, _ = exp_project
    remote = tmp_path / "remote"
    remote.mkdir()
    cli("remote", "add", "origin", str(remote), "--default", ok=True)
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "remote")
    cli("exp", "run", "-S", "train.lr=0.4", "--name", "shared", ok=True)
    cli("exp", "run", "-S", "train.lr=0.2", "--name", "mine", ok=True)
    cli("exp", "push", "shared", ok=True)

    clone = str(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", project.root, clone], check=True)
    assert cli("exp", "show", "--json", at=clone, ok=True).json() == []
    r = cli("exp", "pull", at=clone, ok=True)
    assert "pulled 1" in r.out
    (row,) = cli("exp", "show", "--json", at=clone, ok=True).json()
    assert row["name"] == "shared" and row["state"] == "done"
    assert row["metrics"]["metrics.json"]["acc"] == 0.8  # the metrics' objects came along
    cli("exp", "apply", "shared", at=clone, ok=True)
    assert "lr: 0.4" in Path(clone, "params.yaml").read_text()
    r = cli("exp", "pull", "nosuch", at=clone)
    assert r.code != 0 and "nosuch" in r.err


def test_every_exp_help_has_an_example(project) -> None:
    for sub in ([], ["run"], ["show"], ["diff"], ["apply"], ["remove"], ["push"], ["pull"]):
        out = run_cli(["exp", *sub, "--help"], project.root, check=True).out
        assert "Example:" in out, sub


def test_gc_keep_last_keeps_experiment_results(project, cli) -> None:
    """An experiment's snapshot is a root for gc, as a tagged one is: `exp apply` needs it."""
    root = project.root
    write(root, "params.yaml", "lr: 1\n")
    write(
        root,
        "repro.yaml",
        "stages:\n  t:\n    cmd: cat params.yaml > out.txt\n    params: [lr]\n"
        "    outs: [out.txt]\n",
    )
    cli("run", ok=True)
    cli("exp", "run", "-S", "lr=7", "--name", "seven", ok=True)
    for n in (2, 3):
        write(root, "params.yaml", f"lr: {n}\n")
        cli("run", ok=True)
    cli("gc", "--keep-last", "1", ok=True)
    cli("exp", "apply", "seven", ok=True)
    assert Path(root, "out.txt").read_text() == "lr: 7\n"
