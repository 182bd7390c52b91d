"""Every validation error: one clear line naming file, line, stage and key; nothing runs and
nothing is written."""

from __future__ import annotations

import pytest

from tests.conftest import snapshot_tree, write

CASES = [
    ("stages:\n  a:\n    cmd: [unclosed\n", "repro.yaml: not valid YAML (line"),
    (
        "stages:\n  a:\n    cmd: echo\n    outz: [x]\n",
        "repro.yaml, line 4: stage 'a', key 'outz': unknown key",
    ),
    ("stagez: {}\n", "repro.yaml, line 1: key 'stagez': unknown top-level key"),
    (
        "stages:\n  a:\n    cmd: echo\n    frozen: maybe\n",
        "stage 'a', key 'frozen': must be true or false",
    ),
    ("stages:\n  a:\n    cmd: echo\n    seed: x\n", "stage 'a', key 'seed': must be an integer"),
    ("stages:\n  a:\n    deps: [x]\n", "stage 'a', key 'cmd': 'cmd' is required"),
    (
        "stages:\n  a:\n    cmd: cat nowhere\n    deps: [nowhere.txt]\n",
        "stage 'a', key 'deps': dependency 'nowhere.txt' does not exist and no stage makes it",
    ),
    (
        "stages:\n  a:\n    cmd: echo\n    outs: [o]\n  b:\n    cmd: echo\n    outs: [o]\n",
        "stage 'b', key 'outs': 'o' is also an output of stage 'a'",
    ),
    (
        "stages:\n  a:\n    cmd: echo\n    outs: [d]\n  b:\n    cmd: echo\n    outs: [d/x]\n",
        "'d/x' lies inside 'd', an output of stage 'a'",
    ),
    (
        "stages:\n  a:\n    cmd: echo\n    deps: [o]\n    outs: [o]\n",
        "stage 'a', key 'deps': 'o' is also this stage's own output",
    ),
    (
        "stages:\n  a:\n    cmd: echo\n    outs: [../escape]\n",
        "stage 'a', key 'outs': path '../escape' is outside the project",
    ),
    (
        "stages:\n  a:\n    cmd: echo\n    deps: [/etc/passwd]\n",
        "stage 'a', key 'deps': path '/etc/passwd' is outside the project",
    ),
    (
        "stages:\n  a:\n    cmd: echo\n    deps: [y]\n    outs: [x]\n"
        "  b:\n    cmd: echo\n    deps: [x]\n    outs: [y]\n",
        "the stages form a cycle: ",
    ),
    ("stages:\n  a:\n    cmd: echo\n    params: [nokey]\n", "'nokey' is not in params.yaml"),
    (
        "stages:\n  a:\n    cmd: echo\n    params: [other.yaml:k]\n",
        "dependency 'other.yaml' does not exist",
    ),
]


@pytest.mark.parametrize(("spec", "needle"), CASES)
def test_validation_error(project, cli, spec: str, needle: str) -> None:
    write(project.root, "repro.yaml", spec)
    write(project.root, "params.yaml", "present: 1\n")
    before = snapshot_tree(project.root, skip=(".git", ".repro"))
    for args in (["run"], ["status"]):
        r = cli(*args)
        assert r.code != 0, r.out
        assert needle in r.err, r.err
        assert "Traceback" not in r.err
    assert snapshot_tree(project.root, skip=(".git", ".repro")) == before


def test_all_problems_reported_at_once(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: echo\n    bogus: 1\n  b:\n    cmd: echo\n    seed: x\n",
    )
    r = cli("status")
    assert "key 'bogus'" in r.err and "stage 'b', key 'seed'" in r.err


def test_cycle_names_the_stages(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: echo\n    deps: [y]\n    outs: [x]\n"
        "  b:\n    cmd: echo\n    deps: [x]\n    outs: [y]\n",
    )
    err = cli("run").err
    assert "a" in err.split("cycle:")[1] and "b" in err.split("cycle:")[1]
