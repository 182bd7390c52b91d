"""Property: the same inputs give the same signature; changing one input changes exactly the
signatures of the stages that read it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.pipeline.signature import compute_inputs
from repro.pipeline.spec import parse_spec
from repro.project import Project
from tests.conftest import write

SPEC = """\
seed: 3
stages:
  a:
    cmd: echo a
    deps: [shared.txt, only_a.txt]
    params: [common.k, a.k]
    outs: [a.out]
  b:
    cmd: echo b
    deps: [shared.txt]
    params: [common.k]
    env: [B_MODE]
    outs: [b.out]
  c:
    cmd: echo c
    deps: [only_c.txt]
    outs: [c.out]
    seed: 99
"""
READERS = {
    "shared.txt": {"a", "b"},
    "only_a.txt": {"a"},
    "only_c.txt": {"c"},
    "common.k": {"a", "b"},
    "a.k": {"a"},
    "B_MODE": {"b"},
    "cmd:a": {"a"},
    "cmd:c": {"c"},
    "seed:c": {"c"},
    "pipeline-seed": {"a", "b"},
    "outs:b": {"b"},
}


def signatures(root: str) -> dict[str, str]:
    project = Project(root)
    spec = parse_spec(os.path.join(root, "repro.yaml"), project.root)
    return {n: compute_inputs(project, s).signature for n, s in spec.stages.items()}


def build(root: str, spec: str = SPEC, params: str = "common:\n  k: 1\na:\n  k: 2\n") -> None:
    Project.init(root)
    write(root, "repro.yaml", spec)
    write(root, "params.yaml", params)
    for f in ("shared.txt", "only_a.txt", "only_c.txt"):
        write(root, f, f)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(sorted(READERS)),
    salt=st.text(alphabet="abcxyz019", min_size=1, max_size=5),
)
def test_single_change_alters_exactly_the_readers(tmp_path_factory, monkeypatch, target, salt):
    root = str(tmp_path_factory.mktemp("p"))
    monkeypatch.setenv("B_MODE", "x")
    build(root)
    before = signatures(root)
    assert signatures(root) == before  # same inputs, same signatures
    spec, params = SPEC, "common:\n  k: 1\na:\n  k: 2\n"
    if target.endswith(".txt"):
        write(root, target, target + salt)
    elif target == "common.k":
        params = params.replace("k: 1", f"k: '1{salt}'")
    elif target == "a.k":
        params = params.replace("k: 2", f"k: '2{salt}'")
    elif target == "B_MODE":
        monkeypatch.setenv("B_MODE", "x" + salt)
    elif target == "cmd:a":
        spec = spec.replace("echo a", f"echo 'a{salt}'")
    elif target == "cmd:c":
        spec = spec.replace("echo c", f"echo 'c{salt}'")
    elif target == "seed:c":
        spec = spec.replace("seed: 99", "seed: 100")
    elif target == "pipeline-seed":
        spec = spec.replace("seed: 3", "seed: 4")
    elif target == "outs:b":
        spec = spec.replace("outs: [b.out]", "outs: [b2.out]")
    write(root, "repro.yaml", spec)
    write(root, "params.yaml", params)
    after = signatures(root)
    changed = {n for n in before if before[n] != after[n]}
    assert changed == READERS[target]


def test_same_signature_in_another_directory(tmp_path: Path) -> None:
    a = str(tmp_path / "one")
    build(a)
    b = str(tmp_path / "deep" / "two")
    shutil.copytree(a, b)
    assert signatures(a) == signatures(b)
