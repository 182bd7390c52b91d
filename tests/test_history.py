"""Snapshots, checkout by sig, run records, log, show and diff — through the real CLI."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import git, snapshot_tree, write

SPEC = """\
stages:
  prep:
    cmd: python3 -c "import sys; open('clean.csv','w').write(open('raw.csv').read().upper())"
    deps: [raw.csv]
    outs: [clean.csv]
  train:
    cmd: >-
      python3 -c "import json,yaml_free; " 2>/dev/null;
      echo "{\\"acc\\": $(cat acc.txt), \\"lr\\": $LR_FROM_PARAMS}" > metrics.json;
      cp clean.csv model.bin
    deps: [clean.csv, acc.txt, train.py]
    params: [lr]
    outs: [model.bin]
    metrics: [metrics.json]
"""


def state(root: str, lr: str, acc: str, raw: str) -> None:
    write(root, "params.yaml", f"lr: {lr}\n")
    write(root, "acc.txt", acc + "\n")
    write(root, "raw.csv", raw)


def setup(root: str) -> None:
    write(
        root,
        "repro.yaml",
        SPEC.replace("$LR_FROM_PARAMS", "$(grep lr params.yaml | cut -d' ' -f2)"),
    )
    write(root, "train.py", "# training code v1\n")


def workspace(root: str) -> dict[str, bytes]:
    return {
        k: v
        for k, v in snapshot_tree(root, skip=(".repro", ".git")).items()
        if k not in ("repro.lock", ".gitignore")
    }


def test_three_runs_checkout_each_by_full_sig_and_prefix(project, cli) -> None:
    root = project.root
    setup(root)
    sigs, views = [], []
    for lr, acc, raw in (
        ("0.1", "0.5", "a,b\n1,2\n"),
        ("0.2", "0.7", "a,b\n1,2\n"),
        ("0.2", "0.9", "a,b,c\n1,2,3\n"),
    ):
        state(root, lr, acc, raw)
        r = cli("run", "--json", ok=True).json()
        assert r["snapshot"] and len(r["snapshot"]) == 32
        sigs.append(r["snapshot"])
        views.append(workspace(root))
    assert len(set(sigs)) == 3
    # Running again changes nothing and adds no snapshot.
    assert cli("run", "--json", ok=True).json()["snapshot"] == sigs[2]
    for i, sig in enumerate([sigs[0], sigs[1][:7], sigs[2][:9], sigs[0][:8]]):
        j = [0, 1, 2, 0][i]
        cli("checkout", sig, ok=True)
        assert workspace(root) == views[j], f"checkout {sig} differs from run {j}"
        assert cli("status", "--exit-code").code == 0


def test_checkout_keeps_hand_edits_recoverable(project, cli) -> None:
    root = project.root
    setup(root)
    state(root, "0.1", "0.5", "x\n")
    first = cli("run", "--json", ok=True).json()["snapshot"]
    state(root, "0.3", "0.6", "y\n")
    cli("run", ok=True)
    write(root, "model.bin", "hand-tuned model, never stored")
    write(root, "train.py", "# my unsaved code\n")
    r = cli("checkout", first[:10], ok=True)
    assert "repro restore" in r.out
    assert Path(root, "train.py").read_text() == "# training code v1\n"
    import xxhash

    for path, content in (
        ("model.bin", b"hand-tuned model, never stored"),
        ("train.py", b"# my unsaved code\n"),
    ):
        h = xxhash.xxh3_128_hexdigest(content)
        assert h in r.out
        cli("restore", h, path + ".back", ok=True)
        assert Path(root, path + ".back").read_bytes() == content


def test_checkout_outs_only_leaves_code(project, cli) -> None:
    root = project.root
    setup(root)
    state(root, "0.1", "0.5", "x\n")
    first = cli("run", "--json", ok=True).json()["snapshot"]
    state(root, "0.2", "0.6", "y\n")
    cli("run", ok=True)
    cli("checkout", first, "--outs-only", ok=True)
    assert Path(root, "params.yaml").read_text() == "lr: 0.2\n"
    assert Path(root, "clean.csv").read_text() == "X\n"


def test_bad_sigs_are_clear(project, cli) -> None:
    setup(project.root)
    state(project.root, "0.1", "0.5", "x\n")
    cli("run", ok=True)
    for ref, needle in (("abc", "at least 7"), ("0000000", "no snapshot")):
        r = cli("checkout", ref)
        assert r.code == 1 and needle in r.err


def test_log_and_show_carry_the_audit_trail(project, cli) -> None:
    root = project.root
    setup(root)
    state(root, "0.1", "0.5", "x\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    head = git(root, "rev-parse", "HEAD").strip()
    env = {"GITHUB_SHA": "cafe" * 10, "GITHUB_RUN_ID": "4242", "CI": "true"}
    run = cli("run", "--json", env=env, ok=True).json()
    rows = cli("log", "--json", ok=True).json()
    assert rows[0]["run_id"] == run["run_id"] and rows[0]["snapshot"] == run["snapshot"]
    assert {"run_id", "snapshot", "started", "user", "host", "git_commit", "status"} <= set(rows[0])
    assert rows[0]["git_commit"] == head and rows[0]["status"] == "ok"
    rec = cli("show", run["run_id"], "--json", ok=True).json()
    assert rec["ci"]["GITHUB_SHA"] == "cafe" * 10 and rec["ci"]["GITHUB_RUN_ID"] == "4242"
    assert rec["git_dirty"] is False  # no tracked file changed since the commit
    assert rec["python"] and rec["platform"] and rec["started"].endswith("Z")
    st = {s["name"]: s for s in rec["stages"]}
    assert st["train"]["status"] == "ran" and st["train"]["exit_code"] == 0
    assert st["train"]["signature"] and st["train"]["seconds"] >= 0
    assert rec["metrics"]["metrics.json"]["acc"] == 0.5
    snap = cli("show", run["snapshot"][:8], "--json", ok=True).json()
    assert snap["type"] == "snapshot"
    train = snap["stages"]["train"]
    assert train["params"] == {"params.yaml:lr": 0.1}
    assert set(train["deps"]) == {"clean.csv", "acc.txt", "train.py"}
    assert train["seed"] > 0 and "train.py" in snap["files"]
    assert snap["runs"][0]["run_id"] == run["run_id"]
    # A failed run is recorded too.
    write(root, "acc.txt", "oops\n")
    spec = Path(root, "repro.yaml").read_text().replace("cp clean.csv model.bin", "exit 5")
    write(root, "repro.yaml", spec)
    assert cli("run").code == 1
    rows = cli("log", "--json", ok=True).json()
    assert rows[0]["status"] == "failed" and rows[0]["snapshot"] is None
    failed = cli("show", rows[0]["run_id"], "--json", ok=True).json()
    assert {s["name"]: s["exit_code"] for s in failed["stages"]}["train"] == 5
    assert failed["git_dirty"] is True  # repro.yaml, a tracked file, was edited
    assert len(cli("log", "-n", "1", "--json", ok=True).json()) == 1


def test_show_logs_of_a_stage(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  talk:\n    cmd: echo said-out; echo said-err >&2; echo x > o\n    outs: [o]\n",
    )
    run = cli("run", "--json", ok=True).json()
    r = cli("show", run["run_id"], "--logs", "talk", ok=True)
    assert r.out == "said-out\n" and r.err == "said-err\n"
    r = cli("show", run["snapshot"], "--logs", "talk", ok=True)
    assert r.out == "said-out\n"


def test_diff_names_exactly_the_changed_inputs_with_severity(project, cli) -> None:
    root = project.root
    setup(root)
    state(root, "0.1", "0.5", "a,b\n1,2\n")
    a = cli("run", "--json", ok=True).json()["snapshot"]
    write(root, "params.yaml", "lr: 0.2\n")
    write(root, "acc.txt", "0.9\n")
    b = cli("run", "--json", ok=True).json()["snapshot"]
    d = cli("diff", a, b, "--json", ok=True).json()
    assert d["from"] == a and d["to"] == b
    by = {s["name"]: s["changes"] for s in d["stages"]}
    assert "prep" not in by  # prep's inputs did not change
    ch = {(c["kind"], c["target"]): c for c in by["train"]}
    assert ch[("params", "params.yaml:lr")]["old"] == 0.1
    assert ch[("params", "params.yaml:lr")]["new"] == 0.2
    assert ch[("params", "params.yaml:lr")]["severity"] == "minor"
    assert ch[("data", "acc.txt")]["severity"] == "minor"
    m = ch[("outs", "metrics.json")]
    assert m["metrics"]["acc"]["old"] == 0.5 and m["metrics"]["acc"]["new"] == 0.9
    assert abs(m["metrics"]["acc"]["delta"] - 0.4) < 1e-9 and m["severity"] == "major"
    assert set(ch) == {
        ("params", "params.yaml:lr"),
        ("data", "acc.txt"),
        ("outs", "metrics.json"),
        ("outs", "model.bin"),
    } - {("outs", "model.bin")}
    # Code change against the workspace: major.
    write(root, "train.py", "# training code v2\n")
    d = cli("diff", "--json", ok=True).json()
    train = {(c["kind"], c["target"]): c for c in d["stages"][0]["changes"]}
    assert train[("code", "train.py")]["severity"] == "major"
    # The policy is the user's.
    cfg = Path(root, ".repro", "config.toml")
    cfg.write_text(cfg.read_text() + '\n[diff.severity]\ncode = "minor"\n')
    d = cli("diff", "--json", ok=True).json()
    assert d["stages"][0]["changes"][0]["severity"] == "minor"


def test_diff_tells_schema_change_from_value_change(project, cli) -> None:
    root = project.root
    write(root, "table.csv", "id,score\n1,0.5\n2,0.7\n")
    s1 = cli("add", "table.csv", "--json", ok=True).json()["snapshot"]
    write(root, "table.csv", "id,score\n1,0.6\n2,0.7\n")
    s2 = cli("add", "table.csv", "--json", ok=True).json()["snapshot"]
    write(root, "table.csv", "id,score,label\n1,0.6,a\n2,0.7,b\n")
    s3 = cli("add", "table.csv", "--json", ok=True).json()["snapshot"]
    values = cli("diff", s1, s2, "--json", ok=True).json()["data"]
    schema = cli("diff", s2, s3, "--json", ok=True).json()["data"]
    assert values[0]["target"] == "table.csv" and values[0]["note"] == "values changed"
    assert schema[0]["note"] == "schema changed"
    write(root, "table.csv", "id,score,label\n1,x,a\n")  # a type change is a schema change
    s4 = cli("add", "table.csv", "--json", ok=True).json()["snapshot"]
    assert cli("diff", s3, s4, "--json", ok=True).json()["data"][0]["note"] == "schema changed"


def test_folder_diff_lists_files(project, cli) -> None:
    root = project.root
    write(root, "d/a.txt", "1")
    write(root, "d/b.txt", "2")
    s1 = cli("add", "d", "--json", ok=True).json()["snapshot"]
    os.chmod(os.path.join(root, "d", "a.txt"), 0o644)
    write(root, "d/a.txt", "changed")
    os.unlink(os.path.join(root, "d", "b.txt"))
    write(root, "d/c.txt", "3")
    s2 = cli("add", "d", "--json", ok=True).json()["snapshot"]
    files = cli("diff", s1, s2, "--json", ok=True).json()["data"][0]["files"]
    assert files == {"added": ["c.txt"], "removed": ["b.txt"], "changed": ["a.txt"]}


def test_checkout_says_when_commit_differs(project, cli) -> None:
    root = project.root
    setup(root)
    state(root, "0.1", "0.5", "x\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    first = cli("run", "--json", ok=True).json()["snapshot"]
    write(root, "train.py", "# v2\n")
    git(root, "commit", "-qam", "two")
    cli("run", ok=True)
    r = cli("checkout", first, ok=True)
    assert "was made at git commit" in r.out
