"""Issue 12's commands as a new user meets them: help with an example, numbers shown as people
read them, and errors that say what to do next — through the real CLI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.conftest import git, one_error, snapshot_tree, write

SPEC = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py]
    params: [lr]
    outs: [model.txt]
    metrics: [metrics.json]
"""

# loss is computed as a float sum, so it carries binary noise (0.1 + 0.2 = 0.30000000000000004)
TRAIN = """\
import json
lr = float(open("params.yaml").read().split(":")[1])
loss = 0.1 + 0.2 if lr < 0.5 else 0.1 + 0.7
json.dump({"loss": loss}, open("metrics.json", "w"))
open("model.txt", "w").write(str(lr))
"""


@pytest.fixture
def c(project, cli):
    cli.root = project.root
    write(project.root, "repro.yaml", SPEC)
    write(project.root, "train.py", TRAIN)
    write(project.root, "params.yaml", "lr: 0.1\n")
    return cli


NEW_COMMANDS = [
    ["tag"],
    ["tags"],
    ["rollback"],
    ["check"],
    ["diff"],
    ["install-hooks"],
    ["alerts", "pending"],
    ["alerts", "retry"],
    ["alerts", "test"],
]


@pytest.mark.parametrize("cmd", NEW_COMMANDS, ids=[" ".join(c) for c in NEW_COMMANDS])
def test_help_of_each_new_command_shows_an_example(cli, cmd):
    r = cli(*cmd, "--help", ok=True)
    assert "Example:" in r.out
    example = r.out.split("Example:", 1)[1].split("\n\n", 1)[0]
    # the example is a real command line of that very command, kept on its own lines
    assert f"repro {' '.join(cmd)}" in example, r.out
    assert all(len(line) <= 80 for line in r.out.splitlines()), r.out


def test_text_output_shows_floats_as_people_read_them_json_keeps_them_exact(c):
    c("run", ok=True)
    c("tag", "v1", ok=True)
    write(c.root, "params.yaml", "lr: 0.7\n")
    c("run", ok=True)
    c("tag", "v2", ok=True)

    text = c("diff", "v1", "v2", ok=True).out
    v1 = {t["name"]: t["sig"] for t in c("tags", "--json", ok=True).json()}["v1"]
    assert text.startswith(f"from v1 ({v1[:12]}) to v2 ("), text  # the names it was asked by
    assert "loss: 0.3 -> 0.8" in text, text
    assert "0.30000000000000004" not in text and "0.7999999999999999" not in text

    doc = c("diff", "v1", "v2", "--json", ok=True).json()
    (metrics_change,) = [
        ch for st in doc["stages"] for ch in st["changes"] if ch["target"] == "metrics.json"
    ]
    assert metrics_change["metrics"]["loss"]["old"] == 0.1 + 0.2  # exact, for scripts

    check = c("check", "--against", "v1", "--no-alerts")
    assert "metric metrics.json:loss 0.3 -> 0.8" in check.out, check.out
    assert "loss=0.8" in c("log", "-n", "1", ok=True).out


def test_a_failed_metric_check_shows_the_value_as_people_read_it(c):
    spec = SPEC + "    observe:\n      - {metric: 'metrics.json:loss', max: 0.25}\n"
    write(c.root, "repro.yaml", spec)
    r = c("run")
    assert r.code == 1
    assert "loss 0.3 > max 0.25" in one_error(r)
    assert "0.30000000000000004" not in r.out + r.err


def test_a_name_that_is_no_tag_sig_or_revision_says_where_to_look(c):
    c("run", ok=True)
    before = snapshot_tree(c.root)
    for args in (["diff", "v9"], ["rollback", "v9"], ["check", "--against", "v9"]):
        r = c(*args)
        assert r.code == 1, (args, r.out, r.err)
        msg = one_error(r)
        assert "'v9'" in msg and "tag" in msg and "repro tags" in msg, msg
    assert snapshot_tree(c.root) == before


def test_tags_json_and_table_agree(c):
    c("run", ok=True)
    c("tag", "v1", "-m", "first cut\nsecond line", ok=True)
    rows = c("tags", "--json", ok=True).json()
    assert [r["name"] for r in rows] == ["v1"]
    line = c("tags", ok=True).out.strip()
    assert line.startswith("v1 ") and rows[0]["sig"][:12] in line and "first cut" in line
    assert "second line" not in line and len(line) <= 80
    assert json.loads(c("tag", "-d", "v1", "--json", ok=True).out) == {"deleted": "v1"}


def test_a_one_line_code_change_reads_as_one_line(c):
    c("run", ok=True)
    git(c.root, "add", "-A")
    git(c.root, "commit", "-qm", "first")
    write(c.root, "train.py", TRAIN + "# tuned\n")
    out = c("diff", ok=True).out
    assert "(1 line changed)" in out, out
    check = c("check", "--no-alerts")
    assert "train: code train.py: 1 line changed" in check.out, check.out


def test_alerts_test_without_entries_says_how_to_add_one(c):
    msg = one_error(c("alerts", "test"))
    assert "no [[alerts]] entry" in msg and "docs/observe.md" in msg, msg


def test_an_unreachable_mlflow_server_is_one_warning_naming_the_cause(c):
    pytest.importorskip("mlflow", reason="the MLflow observer needs the 'mlflow' extra")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = Path(c.root, ".repro", "config.toml")
    table = f'[observe.mlflow]\ntracking_uri = "http://127.0.0.1:{port}"\n'
    cfg.write_text(cfg.read_text() + '\n[observe]\nuse = ["mlflow"]\n' + table)
    r = c("run", "--json")
    assert r.code == 0, r.err
    json.loads(r.out)  # stdout stays one JSON document
    (line,) = [ln for ln in r.err.splitlines() if "observer 'mlflow'" in ln]
    assert line.startswith("warning: ") and "Connection refused" in line, line
    assert len(line) < 200, line


def test_log_keeps_its_columns_for_a_rollback(c):
    c("run", ok=True)
    c("tag", "v1", ok=True)
    write(c.root, "params.yaml", "lr: 0.7\n")
    c("run", ok=True)
    c("rollback", ok=True)
    lines = c("log", ok=True).out.splitlines()
    assert " rollback " in lines[0] and " run " in lines[1], lines
    # the status column (ok) starts at the same place whatever the kind
    assert lines[0].index(" ok") == lines[1].index(" ok"), lines


def test_pending_alerts_read_one_per_line_pair_and_say_what_to_do(c):
    cfg = Path(c.root, ".repro", "config.toml")
    cfg.write_text(
        cfg.read_text() + '\n[[alerts]]\non = "any"\nkind = "webhook"\n'
        'url = "http://127.0.0.1:9/hook"\nsecret_env = "REPRO_USAGE_TEST_KEY"\n'
    )
    c("run", ok=True)
    write(c.root, "params.yaml", "lr: 0.7\n")
    r = c("run", env={"REPRO_USAGE_TEST_KEY": ""})
    assert r.code == 0 and "repro alerts retry" in r.err, r.err
    (pid,) = [p["id"] for p in c("alerts", "pending", "--json", ok=True).json()]
    lines = c("alerts", "pending", ok=True).out.splitlines()
    assert lines[0].startswith(pid) and len(lines[0]) <= 80, lines
    assert lines[1].startswith("    last error: ") and "REPRO_USAGE_TEST_KEY" in lines[1], lines
    assert lines[-1] == "1 pending: 'repro alerts retry' re-sends them once the cause is fixed"


def test_post_checkout_hook_is_quiet_when_head_does_not_move(project, cli):
    from tests.test_hooks import git_run
    from tests.test_tags import two_states

    two_states(project, cli)
    cli("install-hooks", ok=True)
    same = git_run(project.root, "checkout", "-b", "feature")  # a new branch, the same commit
    assert "files placed" not in same.stdout + same.stderr, same.stdout + same.stderr
    moved = git_run(project.root, "checkout", "-q", "HEAD~1")
    assert "files placed" in moved.stdout + moved.stderr  # a real move still checks out
    assert Path(project.root, "model.txt").read_text() == "v1"
