"""repro.yaml templating as DVC users write it: `vars:`, `${...}` from params files and vars,
whole-file params, `desc`/`meta`, top-level `metrics:`, and dvclive's nested metrics layout.
Everything goes through the real CLI (`repro run`, `repro status`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from repro.pipeline.spec import parse_spec
from tests.conftest import one_error, snapshot_tree, write


def statuses(result) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result.json()["stages"]}


def reasons(result, stage: str) -> list[str]:
    st = next(s for s in result.json()["stages"] if s["name"] == stage)
    return [r["target"] for r in st["reasons"]]


def backdate(root: str, *rels: str, seconds: int = 60) -> None:
    """Age files past the parse cache's 2-second distrust window, so the cache is written."""
    t = time.time() - seconds
    for rel in rels:
        os.utime(Path(root, rel), (t, t))


TEMPLATED = """\
vars:
  - conf.yaml
  - greeting: hello
stages:
  train:
    cmd: echo ${train.lr} ${greeting} $PLAIN ${SHELLVAR} \\${lower} > ${out}.txt
    deps: ["${data.src}"]
    outs: ["${out}.txt"]
    seed: ${train.seed}
  each:
    foreach: ${models}
    do:
      cmd: echo ${item} ${train.lr} > each-${item}.txt
      outs: ["each-${item}.txt"]
"""


def test_vars_and_params_interpolate_and_count_in_the_signature(project, cli) -> None:
    root = project.root
    write(root, "params.yaml", "train: {lr: 0.1, seed: 7}\nout: model\nmodels: [a, b]\n")
    write(root, "conf.yaml", "data: {src: in.txt}\n")
    write(root, "in.txt", "x")
    write(root, "repro.yaml", TEMPLATED)
    env = {"PLAIN": "p", "SHELLVAR": "s", "lower": "l"}
    r = cli("run", "--json", env=env, ok=True)
    assert statuses(r) == {"train": "ran", "each@a": "ran", "each@b": "ran"}
    # params value, inline var, shell $VAR, unknown ALL-CAPS ${VAR}, escaped \${lower}
    assert Path(root, "model.txt").read_text().split() == ["0.1", "hello", "p", "s", "l"]
    assert Path(root, "each-b.txt").read_text().split() == ["b", "0.1"]
    st = parse_spec(os.path.join(root, "repro.yaml"), root).stages["train"]
    assert st.seed == 7 and isinstance(st.seed, int)  # a whole value keeps its type
    assert st.deps == ["in.txt"]
    # A changed value changes the command, hence the signature: only its readers rerun.
    write(root, "params.yaml", "train: {lr: 0.2, seed: 7}\nout: model\nmodels: [a, b]\n")
    r = cli("run", "--json", env=env, ok=True)
    assert statuses(r) == {"train": "ran", "each@a": "ran", "each@b": "ran"}
    assert Path(root, "model.txt").read_text().split()[0] == "0.2"
    write(root, "params.yaml", "train: {lr: 0.2, seed: 7}\nout: model\nmodels: [a, b]\nz: 1\n")
    r = cli("run", "--json", env=env, ok=True)
    assert set(statuses(r).values()) == {"up-to-date"}


def test_parse_cache_follows_the_vars_file(project, cli) -> None:
    root = project.root
    write(root, "params.yaml", "train: {lr: 0.1, seed: 7}\nout: model\nmodels: [a]\n")
    write(root, "conf.yaml", "data: {src: in.txt}\n")
    write(root, "in.txt", "x")
    write(root, "in2.txt", "y")
    write(root, "repro.yaml", TEMPLATED)
    backdate(root, "params.yaml", "conf.yaml", "repro.yaml")
    cli("run", ok=True)
    cli("status", ok=True)  # the parse is cached now (every file is older than 2 s)
    assert os.listdir(os.path.join(project.tmp_dir, "parse"))
    write(root, "conf.yaml", "data: {src: in2.txt}\n")
    backdate(root, "conf.yaml", seconds=30)
    r = cli("status", "--json", ok=True)
    assert "in2.txt" in reasons(r, "train")
    os.remove(Path(root, "params.yaml"))  # the default params file is watched too
    r = cli("status")
    assert "train.lr" in one_error(r)


@pytest.mark.parametrize(
    ("yaml", "needle"),
    [
        ("stages:\n  train:\n    cmd: python t.py ${train.n_est}\n", "'${train.n_est}'"),
        ('stages:\n  train:\n    cmd: "true"\n    outs: ["${nope}"]\n', "key 'outs'"),
        ('vars: [missing.yaml]\nstages:\n  train:\n    cmd: "true"\n', "'missing.yaml'"),
        ("vars: [{train: 1}]\nstages:\n  train:\n    cmd: 'true'\n", "already defined"),
        ("stages:\n  train:\n    cmd: echo ${train}\n", "only a whole value"),
        ("stages:\n  e:\n    foreach: ${nope}\n    do: {cmd: 'true'}\n", "key 'foreach'"),
    ],
)
def test_template_errors_are_one_sentence_and_change_nothing(project, cli, yaml, needle) -> None:
    write(project.root, "params.yaml", "train: {lr: 0.1}\n")
    write(project.root, "repro.yaml", yaml)
    before = snapshot_tree(project.root)
    line = one_error(cli("run"))
    assert "repro.yaml" in line and needle in line, line
    if "stages:\n  train" in yaml and "vars" not in yaml:
        assert "stage 'train'" in line
    assert snapshot_tree(project.root) == before


def test_whole_file_params_track_every_key(project, cli) -> None:
    root = project.root
    write(root, "params.yaml", "a: 1\nb: {c: 2}\n")
    write(root, "other.toml", "x = 1\n")
    write(
        root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo ok > o.txt\n    outs: [o.txt]\n"
        "    params:\n      - params.yaml:\n      - other.toml:\n",
    )
    cli("run", ok=True)
    write(root, "params.yaml", "a: 1\nb: {c: 3}\n")
    r = cli("status", "--json", ok=True)
    assert reasons(r, "s") == ["params.yaml:b"]
    write(root, "params.yaml", "a: 1\nb: {c: 3}\nnew: 0\n")
    write(root, "other.toml", "x = 2\n")
    r = cli("status", "--json", ok=True)
    assert set(reasons(r, "s")) == {"params.yaml:b", "params.yaml:new", "other.toml:x"}
    cli("run", ok=True)
    assert reasons(cli("status", "--json", ok=True), "s") == []


def test_desc_meta_and_top_level_metrics(project, cli) -> None:
    root = project.root
    write(
        root,
        "repro.yaml",
        "metrics: [summary.json]\nstages:\n  s:\n    desc: Trains the model\n"
        "    meta: {owner: ana, tags: [a, b]}\n    cmd: echo > o.txt\n    outs: [o.txt]\n",
    )
    cli("run", ok=True)
    spec = parse_spec(os.path.join(root, "repro.yaml"), root)
    assert spec.stages["s"].desc == "Trains the model"
    assert spec.stages["s"].meta == {"owner": "ana", "tags": ["a", "b"]}
    assert spec.metrics == ["summary.json"]
    write(root, "summary.json", '{"auc": 0.5}')
    shown = cli("metrics", "show", "--json", ok=True).json()
    assert shown["workspace"]["summary.json"] == {"auc": 0.5}
    write(root, "repro.yaml", "stages:\n  s:\n    desc: [x]\n    cmd: 'true'\n")
    assert "key 'desc'" in one_error(cli("status"))


DVCLIVE = """\
stages:
  eval:
    cmd: >-
      mkdir -p eval/plots && echo '{"acc": 0.9}' > eval/metrics.json
      && printf 'step,loss\\n0,1\\n' > eval/plots/loss.csv && echo x > eval/report.txt
    outs: [eval]
    metrics: [eval/metrics.json]
    plots: [eval/plots/loss.csv]
"""


def test_metrics_and_plots_may_nest_in_their_own_stage_output(project, cli) -> None:
    root = project.root
    write(root, "repro.yaml", DVCLIVE)
    r = cli("run", "--json", ok=True)
    assert statuses(r) == {"eval": "ran"}
    assert "up-to-date" in set(statuses(cli("run", "--json", ok=True)).values())
    Path(root, "eval/metrics.json").unlink()
    cli("run", ok=True)
    assert Path(root, "eval/metrics.json").read_text().strip() == '{"acc": 0.9}'
    # Any other nesting stays refused: a plain output, or another stage's output.
    write(root, "repro.yaml", DVCLIVE.replace("outs: [eval]", "outs: [eval, eval/report.txt]"))
    assert "outputs cannot nest" in one_error(cli("status"))
    other = DVCLIVE + "  more:\n    cmd: 'true'\n    metrics: [eval/more.json]\n"
    write(root, "repro.yaml", other)
    assert "output of stage 'eval'" in one_error(cli("status"))
