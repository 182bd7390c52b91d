"""Change policy and CI gates: metric rules, failure rate, code-change size from git,
`repro diff --fail-on` and `repro check` — through the real CLI, with real git commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, one_error, snapshot_tree, write

SPEC = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py, data.txt]
    params: [lr]
    outs: [model.txt]
    metrics: [metrics.json]
"""

# data.txt holds "accuracy loss"; the word "fail" makes the stage fail.
TRAIN = """\
import json, sys
words = open("data.txt").read().split()
if words[0] == "fail":
    sys.exit(3)
open("metrics.json", "w").write(json.dumps({"accuracy": float(words[0]), "loss": float(words[1])}))
open("model.txt", "w").write(" ".join(words))
"""


def setup(root: str, config: str = "") -> None:
    write(root, "repro.yaml", SPEC)
    write(root, "train.py", TRAIN)
    write(root, "params.yaml", "lr: 0.1\n")
    write(root, "data.txt", "0.90 0.50\n")
    if config:
        cfg = Path(root, ".repro", "config.toml")
        cfg.write_text(cfg.read_text() + "\n" + config)


def run(cli, data: str | None = None) -> str:
    if data is not None:
        write(cli.root, "data.txt", data + "\n")
    return cli("run", "--json", ok=True).json()["snapshot"]


@pytest.fixture
def c(project, cli):
    cli.root = project.root
    return cli


def metric(doc: dict, key: str) -> tuple[str, dict]:
    """(the metrics file change's severity, the metric's entry) in a diff document."""
    for st in doc["stages"]:
        for ch in st["changes"]:
            if ch["kind"] == "outs" and ch["target"] == "metrics.json":
                return ch["severity"], ch["metrics"][key]
    raise AssertionError(f"no metrics change in {doc}")


def commit_all(root: str, msg: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", msg)


# -- metric rules -----------------------------------------------------------------------------
def test_metric_drop_absolute_rule(c) -> None:
    setup(c.root, "[diff.metrics]\naccuracy = { drop = 0.05 }\n")
    a = run(c)
    b = run(c, "0.87 0.50")  # -0.03: beyond the default 0.01 threshold, within the rule
    d = run(c, "0.80 0.50")  # -0.10 from a: beyond the rule
    sev, m = metric(c("diff", a, b, "--json", ok=True).json(), "accuracy")
    assert sev == "minor" and m["severity"] == "minor" and m["rule"] == "drop 0.05"
    sev, m = metric(c("diff", a, d, "--json", ok=True).json(), "accuracy")
    assert sev == "major" and abs(m["delta"] + 0.10) < 1e-9
    # A rise is not what the rule guards against: minor, however large.
    sev, _ = metric(c("diff", d, a, "--json", ok=True).json(), "accuracy")
    assert sev == "minor"
    assert "rule drop 0.05" in c("diff", a, d, ok=True).out


def test_metric_drop_relative_rule_and_file_key(c) -> None:
    # 5% of the old value 0.80 is 0.04; the file-qualified key wins over the plain one.
    setup(
        c.root,
        '[diff.metrics]\naccuracy = { drop = 0.5 }\n"metrics.json:accuracy" = { drop = "5%" }\n',
    )
    a = run(c, "0.80 0.50")
    b = run(c, "0.77 0.50")  # -3.75%
    d = run(c, "0.75 0.50")  # -6.25% of 0.80
    assert metric(c("diff", a, b, "--json", ok=True).json(), "accuracy")[0] == "minor"
    sev, m = metric(c("diff", a, d, "--json", ok=True).json(), "accuracy")
    assert sev == "major" and m["rule"] == "drop 5%"


def test_metric_rise_rule_and_default_threshold(c) -> None:
    setup(c.root, "[diff.metrics]\nloss = { rise = 0.1 }\n")
    a = run(c, "0.90 0.50")
    b = run(c, "0.90 0.55")
    d = run(c, "0.90 0.70")
    assert metric(c("diff", a, b, "--json", ok=True).json(), "loss")[0] == "minor"
    assert metric(c("diff", a, d, "--json", ok=True).json(), "loss")[0] == "major"
    # accuracy has no rule: today's threshold (0.01) still makes a 0.05 move major.
    e = run(c, "0.85 0.50")
    sev, m = metric(c("diff", a, e, "--json", ok=True).json(), "accuracy")
    assert sev == "major" and "rule" not in m


# -- failure rate ---------------------------------------------------------------------------
def test_failure_rate_rule_over_the_last_runs(c) -> None:
    setup(c.root, "[diff.failure_rate]\nruns = 3\nmax = 0.3\n")
    run(c)
    assert c("check", "--json").json()["verdict"] == "ok"
    write(c.root, "data.txt", "fail\n")
    assert c("run").code != 0
    write(c.root, "data.txt", "0.90 0.50\n")
    run(c)  # restored: the workspace is as before, but 1 of the last 3 runs failed
    r = c("check", "--fail-on", "major")
    assert r.code == 1, r.out + r.err
    assert r.out.splitlines()[0] == "verdict: major (1 reason)"
    assert "failure rate: 1 of the last 3 runs failed (33%, max 30%)" in r.out
    run(c)
    run(c)  # the failure is no longer among the last 3
    r = c("check", "--fail-on", "major", "--json")
    assert r.code == 0 and r.json()["verdict"] == "ok", r.out


# -- code-change size -------------------------------------------------------------------------
def test_code_change_size_from_git_commits(c) -> None:
    setup(c.root, "[diff.code]\nmajor_lines = 5\n")
    commit_all(c.root, "v1")
    a = run(c)
    commit_all(c.root, "v1 lock")
    write(c.root, "train.py", TRAIN + "# tuned\n# a little\n")
    commit_all(c.root, "small change")
    b = run(c)
    commit_all(c.root, "small lock")
    write(c.root, "train.py", TRAIN + "".join(f"x{i} = {i}\n" for i in range(12)))
    commit_all(c.root, "big change")
    d = run(c)
    commit_all(c.root, "big lock")

    def code(doc: dict) -> dict:
        return next(ch for st in doc["stages"] for ch in st["changes"] if ch["kind"] == "code")

    small = code(c("diff", a, b, "--json", ok=True).json())
    assert (small["lines"], small["severity"]) == (2, "minor")
    big = code(c("diff", b, d, "--json", ok=True).json())
    assert (big["lines"], big["severity"]) == (14, "major")  # 2 removed + 12 added
    # git revisions name the same states; the workspace is the working tree.
    assert code(c("diff", "HEAD~2", "HEAD", "--json", ok=True).json())["lines"] == 14
    write(c.root, "train.py", TRAIN + "# one line\n")
    ws = code(c("diff", "--json", ok=True).json())
    assert (ws["lines"], ws["severity"]) == (13, "major")  # repro.lock is HEAD's: 12 out, 1 in
    assert "(13 lines changed)" in c("diff", ok=True).out
    # Without the key the kind decides (major by default), and the count is still shown.
    cfg = Path(c.root, ".repro", "config.toml")
    cfg.write_text(cfg.read_text().replace("major_lines = 5", "major_lines = 50"))
    assert code(c("diff", a, b, "--json", ok=True).json())["severity"] == "minor"
    cfg.write_text(cfg.read_text().replace("[diff.code]\nmajor_lines = 50\n", ""))
    assert code(c("diff", a, b, "--json", ok=True).json())["severity"] == "major"


def test_code_change_with_unknown_commits_falls_back_to_the_kind(c) -> None:
    setup(c.root, "[diff.code]\nmajor_lines = 5\n")
    a = run(c)  # no commit at all: the records have no git commit
    write(c.root, "train.py", TRAIN + "# one\n")
    b = run(c)
    ch = c("diff", a, b, "--json", ok=True).json()["stages"][0]["changes"]
    code = next(x for x in ch if x["kind"] == "code")
    assert code["severity"] == "major" and "lines" not in code


# -- diff --fail-on -------------------------------------------------------------------------
def test_diff_fail_on_exit_codes_and_unchanged_output(c) -> None:
    setup(c.root)
    a = run(c)
    write(c.root, "params.yaml", "lr: 0.2\n")
    b = run(c)  # params (minor); the metrics are unchanged
    write(c.root, "train.py", TRAIN + "# v2\n")
    d = run(c)  # code: major
    plain = c("diff", a, b, "--json", ok=True).out
    r = c("diff", a, b, "--json", "--fail-on", "major")
    assert (r.code, r.out) == (0, plain)
    r = c("diff", a, b, "--json", "--fail-on", "minor")
    assert (r.code, r.out) == (1, plain)
    assert c("diff", a, d, "--fail-on", "major").code == 1
    text = c("diff", a, d, ok=True).out
    assert c("diff", a, d, "--fail-on", "major").out == text
    assert c("diff", a, a, "--fail-on", "minor").code == 0
    err = one_error(c("diff", a, b, "--fail-on", "huge"))
    assert "--fail-on" in err and c("diff", a, b, "--fail-on", "huge").code == 2


# -- repro check ----------------------------------------------------------------------------
def test_check_clean_stale_major_minor(c) -> None:
    setup(c.root)
    commit_all(c.root, "v1")
    run(c)
    commit_all(c.root, "v1 lock")
    r = c("check", "--fail-on", "minor")
    assert r.code == 0 and r.out.splitlines()[0] == "verdict: ok (0 reasons)", r.out
    doc = c("check", "--json", ok=True).json()
    assert doc["verdict"] == "ok" and doc["reasons"] == [] and doc["stale"] == []
    assert doc["baseline"] in ("main", "master") and doc["changes"]["stages"] == []
    # Stale: a changed input not yet run fails the gate even without --fail-on.
    write(c.root, "params.yaml", "lr: 0.2\n")
    r = c("check")
    assert r.code == 1
    assert "[stale] train: stale (params: params.yaml:lr)" in r.out, r.out
    # Minor: the params change, run.
    run(c)
    r = c("check", "--fail-on", "major", "--json")
    assert r.code == 0 and r.json()["verdict"] == "minor", r.out
    assert c("check", "--fail-on", "minor").code == 1
    # Major: code changed and run; reasons worst first.
    write(c.root, "train.py", TRAIN + "# v2\n")
    run(c)
    r = c("check", "--fail-on", "major")
    assert r.code == 1
    lines = r.out.splitlines()
    assert lines[0] == "verdict: major (2 reasons)", r.out
    assert lines[2].startswith("  [major] train: code train.py")
    assert lines[3] == "  [minor] train: params params.yaml:lr: 0.1 -> 0.2"
    assert c("check").code == 0  # no --fail-on, nothing stale: report only


def test_check_against_a_git_revision_and_the_default_branch(c) -> None:
    setup(c.root, "[diff.metrics]\naccuracy = { drop = 0.05 }\n")
    git(c.root, "checkout", "-q", "-b", "main")
    commit_all(c.root, "v1")
    run(c)
    commit_all(c.root, "v1 lock")
    c("tag", "base", ok=True)  # a named version of main's state
    git(c.root, "checkout", "-q", "-b", "feature")
    run(c, "0.88 0.50")  # within the rule
    commit_all(c.root, "small drop")
    run(c, "0.70 0.50")  # beyond it
    commit_all(c.root, "big drop")
    # Default baseline: the default branch's repro.lock, not this branch's.
    r = c("check", "--json")
    doc = r.json()
    assert doc["baseline"] == "main" and doc["verdict"] == "major", r.out
    assert doc["reasons"][0]["target"] == "metrics.json:accuracy"
    assert doc["reasons"][0]["text"].startswith("train: metric metrics.json:accuracy 0.9 -> 0.7")
    # Against a git revision: the state after the first drop.
    write(c.root, "data.txt", "0.84 0.50\n")
    run(c)  # against HEAD~1 (0.88): -0.04, within; against main (0.90): -0.06, beyond
    r = c("check", "--against", "HEAD~1", "--fail-on", "major", "--json")
    assert r.code == 0 and r.json()["verdict"] == "minor", r.out
    assert r.json()["baseline"] == "HEAD~1"
    assert c("check", "--against", "main", "--fail-on", "major").code == 1
    r = c("check", "--against", "base", "--fail-on", "major", "--json")
    assert r.code == 1 and r.json()["changes"]["from"] == doc["changes"]["from"], r.out
    assert "no snapshot sig" in one_error(c("check", "--against", "no-such-rev"))


def test_check_without_git_history_uses_repro_lock(c) -> None:
    setup(c.root)
    run(c)
    doc = c("check", "--json", ok=True).json()
    assert doc["baseline"] == "repro.lock" and doc["verdict"] == "ok"
    assert one_error(c("check", "--fail-on", "worst")).count("--fail-on") == 1


# -- config validation ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "key"),
    [
        ('[diff.metrics]\naccuracy = { drop = "lots" }\n', "diff.metrics.accuracy"),
        ("[diff.metrics]\naccuracy = { fall = 0.1 }\n", "diff.metrics.accuracy"),
        ("[diff.metrics]\naccuracy = 0.1\n", "diff.metrics.accuracy"),
        ("[diff.metrics]\naccuracy = { rise = -1 }\n", "diff.metrics.accuracy"),
        ("[diff]\nmetrics = 3\n", "diff.metrics"),
        ("[diff.failure_rate]\nruns = 0\nmax = 0.2\n", "diff.failure_rate.runs"),
        ("[diff.failure_rate]\nruns = 5\nmax = 2\n", "diff.failure_rate.max"),
        ("[diff.failure_rate]\nruns = 5\n", "diff.failure_rate"),
        ('[diff.code]\nmajor_lines = "many"\n', "diff.code.major_lines"),
    ],
)
def test_bad_policy_keys_are_one_sentence(c, config: str, key: str) -> None:
    setup(c.root)
    cfg = Path(c.root, ".repro", "config.toml")
    cfg.write_text(cfg.read_text() + "\n" + config)
    before = snapshot_tree(c.root, skip=(".git",))
    for args in (["diff"], ["check"]):
        err = one_error(c(*args))
        assert f"'{key}'" in err and ".repro/config.toml" in err, err
    assert snapshot_tree(c.root, skip=(".git",)) == before


def test_dotted_metric_names_in_toml(c) -> None:
    from repro.policy import load_policy
    from repro.project import Project

    setup(c.root, '[diff.metrics]\neval.acc = { drop = 0.5 }\n"m.json:x.y" = { rise = "1%" }\n')
    # Unquoted dotted keys are nested tables in TOML; the rule still names `eval.acc`.
    rules = load_policy(Project.find(c.root)).metrics
    assert rules == {"eval.acc": {"drop": 0.5}, "m.json:x.y": {"rise": "1%"}}
    assert c("diff", "--json").code == 0


def test_a_failing_alert_never_changes_the_verdict(c) -> None:
    alert = '[[alerts]]\non = "any"\nkind = "command"\ncommand = "false"\nretries = 0\n'
    setup(c.root, alert)
    run(c)
    write(c.root, "train.py", TRAIN + "# v2\n")
    run(c)
    assert "HEAD" in one_error(c("check", "--against", "HEAD"))  # no commit yet: one sentence
    a = c("log", "--json", ok=True).json()[-1]["snapshot"]
    r = c("check", "--against", a, "--json")
    assert r.code == 0 and r.json()["verdict"] == "major", r.out + r.err
    assert [d["ok"] for d in r.json()["alerts"]] == [False]
    assert "warning:" in r.err and "Traceback" not in r.err
    r = c("check", "--against", a, "--fail-on", "major", "--no-alerts")
    assert r.code == 1 and "warning:" not in r.err
