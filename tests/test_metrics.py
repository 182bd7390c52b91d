"""`repro metrics show|diff` and `repro params diff` through the real CLI: across runs, a tag,
a git revision; the JSON shapes, the Markdown and plain tables, and a missing ref."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, one_error, write

SPEC = """stages:
  train:
    cmd: python train.py
    deps: [train.py, data.txt]
    params: [train.lr, train.epochs]
    metrics: [metrics.json]
"""
TRAIN = """import json
acc, loss = (float(x) for x in open("data.txt").read().split())
json.dump({"acc": acc, "eval": {"loss": loss, "n": 120}}, open("metrics.json", "w"))
"""


def commit_all(root: str, msg: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-qm", msg)


def train(c, acc: float, loss: float, lr: float) -> str:
    write(c.root, "data.txt", f"{acc} {loss}\n")
    write(c.root, "params.yaml", f"train:\n  lr: {lr}\n  epochs: 3\n")
    return c("run", "--json", ok=True).json()["snapshot"]


@pytest.fixture
def two(project, cli):
    """Two runs: v1 (tagged, committed as HEAD~1) and v2 (HEAD); the workspace holds v2."""
    cli.root = project.root
    write(project.root, "repro.yaml", SPEC)
    write(project.root, "train.py", TRAIN)
    cfg = Path(project.root, ".repro", "config.toml")
    cfg.write_text(cfg.read_text() + '\n[diff.metrics]\nacc = { drop = "10%" }\n')
    cli.v1 = train(cli, 0.9, 0.4, 0.1)
    cli("tag", "v1", cli.v1, ok=True)
    commit_all(project.root, "v1")
    cli.v2 = train(cli, 0.8567891, 0.3, 0.2)
    commit_all(project.root, "v2")
    return cli


def test_show_workspace_refs_and_all(two) -> None:
    c = two
    ws = {"metrics.json": {"acc": 0.8567891, "eval.loss": 0.3, "eval.n": 120}}
    assert c("metrics", "show", "--json", ok=True).json() == {"workspace": ws}
    # A tag and a git revision name stored states: keyed by their full sigs, in the order asked.
    doc = c("metrics", "show", "v1", "HEAD", "--json", ok=True).json()
    assert list(doc) == [c.v1, c.v2]
    assert doc[c.v1] == {"metrics.json": {"acc": 0.9, "eval.loss": 0.4, "eval.n": 120}}
    assert doc[c.v2] == ws
    assert c("metrics", "show", "HEAD~1", "--json", ok=True).json() == {c.v1: doc[c.v1]}
    # --all: the workspace, then every snapshot newest first.
    assert list(c("metrics", "show", "--all", "--json", ok=True).json()) == [
        "workspace",
        c.v2,
        c.v1,
    ]


def test_show_tables_round_and_fit(two) -> None:
    c = two
    out = c("metrics", "show", ok=True).out.splitlines()
    assert out[0].split() == ["Path", "acc", "eval.loss", "eval.n"]
    assert out[1].split() == ["metrics.json", "0.8568", "0.3", "120"]  # 4 significant digits
    text = c("metrics", "show", "v1", ok=True).out
    assert f"{c.v1[:12]} (v1)" in text  # a sig shortened, its tag beside it
    md = c("metrics", "show", "--all", "--md", ok=True).out.splitlines()
    assert md[0] == "| State | Path | acc | eval.loss | eval.n |"
    assert md[1] == "|---|---|---:|---:|---:|"
    assert md[2].startswith("| workspace | metrics.json | 0.8568 |") and len(md) == 5
    # Too many metric columns for the width: one metric a row instead, within 80 columns.
    narrow = c("metrics", "show", "--all", env={"COLUMNS": "40"}, ok=True).out.splitlines()
    assert narrow[0].split() == ["State", "Path", "Metric", "Value"]
    assert len(narrow) == 1 + 3 * 3
    wide = c("metrics", "show", "--all", env={"COLUMNS": "80"}, ok=True).out.splitlines()
    assert len(wide) == 4 and all(len(line) <= 80 for line in wide)


def test_diff_old_new_delta_pct_and_policy_severity(two) -> None:
    c = two
    doc = c("metrics", "diff", "v1", c.v2[:10], "--json", ok=True).json()
    assert doc["from"] == c.v1 and doc["to"] == c.v2
    m = doc["metrics"]["metrics.json"]
    assert set(m) == {"acc", "eval.loss"}  # eval.n did not move
    acc = m["acc"]
    assert acc["old"] == 0.9 and acc["new"] == 0.8567891
    assert acc["delta"] == pytest.approx(-0.0432109)
    assert acc["pct"] == pytest.approx(-4.80121, rel=1e-4)
    assert acc["severity"] == "minor" and acc["rule"] == "drop 10%"  # within the rule
    assert m["eval.loss"]["severity"] == "major"  # no rule: beyond metric_threshold 0.01
    # Default: repro.lock against the workspace; nothing moved yet.
    assert c("metrics", "diff", "--json", ok=True).json()["metrics"] == {}
    write(c.root, "metrics.json", '{"acc": 0.5, "eval": {"loss": 0.3, "n": 120}}')
    doc = c("metrics", "diff", "--json", ok=True).json()
    assert doc["from"] == c.v2 and doc["to"] == "workspace"
    assert doc["metrics"]["metrics.json"]["acc"]["severity"] == "major"  # -41%: beyond 10%
    text = c("metrics", "diff", ok=True).out.splitlines()
    assert text[0] == f"metrics from {c.v2[:12]} to workspace"
    assert text[1].split() == ["Path", "Metric", "Old", "New", "Change", "%", "Severity"]
    assert text[2].split() == ["metrics.json", "acc", "0.8568", "0.5", "-0.3568", "-41.6%", "major"]
    every = c("metrics", "diff", "--all", "--md", ok=True).out.splitlines()
    assert every[1] == "| Path | Metric | Old | New | Change | % | Severity |"
    assert any(line.startswith("| metrics.json | eval.n | 120 | 120 | +0 |") for line in every)


def test_params_diff_across_a_git_revision(two) -> None:
    c = two
    doc = c("params", "diff", "HEAD~1", "HEAD", "--json", ok=True).json()
    assert doc == {
        "from": c.v1,
        "to": c.v2,
        "params": {"params.yaml": {"train.lr": {"old": 0.1, "new": 0.2}}},
    }
    doc = c("params", "diff", "v1", "--all", "--json", ok=True).json()
    assert doc["to"] == "workspace"
    assert doc["params"]["params.yaml"]["train.epochs"] == {"old": 3, "new": 3}
    write(c.root, "params.yaml", "train:\n  lr: 0.3\n  epochs: [1, 2]\n")
    out = c("params", "diff", ok=True).out.splitlines()
    assert out[0] == f"params from {c.v2[:12]} to workspace"
    assert [line.split() for line in out[1:]] == [
        ["Path", "Param", "Old", "New"],
        ["params.yaml", "train.epochs", "3", "[1,", "2]"],
        ["params.yaml", "train.lr", "0.2", "0.3"],
    ]
    assert c("params", "diff", "HEAD", "HEAD", ok=True).out.startswith("no param changed")


def test_a_missing_ref_is_one_sentence(two) -> None:
    for args in (
        ["metrics", "show", "nope"],
        ["metrics", "diff", "v1", "nope"],
        ["params", "diff", "nope", "--json"],
    ):
        r = two(*args)
        assert "'nope'" in one_error(r) and r.out == ""


def test_no_metrics_declared(project, cli) -> None:
    r = cli("metrics", "show", ok=True)
    assert r.out.startswith("no metrics")
    assert cli("metrics", "show", "--json", ok=True).json() == {"workspace": {}}
