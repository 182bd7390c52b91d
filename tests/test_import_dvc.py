"""`repro import-dvc`: a DVC project laid out like DVC's get-started example (written here),
carried over to repro.yaml / repro.lock and then run by `repro run`; and, when `dvc` is
installed, a project that `dvc` itself created."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import one_error, write

PREPARE = """\
import os, sys, yaml
p = yaml.safe_load(open("params.yaml"))["prepare"]
rows = open(sys.argv[1]).read().split()
os.makedirs("data/prepared", exist_ok=True)
cut = int(len(rows) * p["split"])
open("data/prepared/train.txt", "w").write("\\n".join(rows[cut:]))
open("data/prepared/test.txt", "w").write("\\n".join(rows[:cut]))
"""
FEATURIZE = """\
import os
os.makedirs("data/features", exist_ok=True)
for part in ("train", "test"):
    rows = open(f"data/prepared/{part}.txt").read().split()
    open(f"data/features/{part}.txt", "w").write(str(len(rows)))
"""
TRAIN = """\
import yaml
p = yaml.safe_load(open("params.yaml"))["train"]
n = int(open("data/features/train.txt").read())
open("model.pkl", "w").write(f"{n * p['n_est']}")
"""
EVALUATE = """\
import json, os
os.makedirs("eval/plots", exist_ok=True)
m = int(open("model.pkl").read())
json.dump({"avg_prec": m / 100}, open("eval/metrics.json", "w"))
open("eval/plots/prc.csv", "w").write("recall,precision\\n0,1\\n1,0.5\\n")
"""
DVC_YAML = """\
stages:
  prepare:
    cmd: python src/prepare.py data/data.xml
    deps:
    - data/data.xml
    - src/prepare.py
    params:
    - prepare.seed
    - prepare.split
    outs:
    - data/prepared
  featurize:
    cmd: python src/featurization.py data/prepared data/features
    deps:
    - data/prepared
    - src/featurization.py
    params:
    - featurize.max_features
    outs:
    - data/features:
        desc: features
        push: false
  train:
    cmd: python src/train.py data/features model.pkl
    deps:
    - data/features
    - src/train.py
    params:
    - train.n_est
    - train.min_split
    outs:
    - model.pkl
  evaluate:
    cmd: python src/evaluate.py model.pkl data/features
    deps:
    - data/features
    - model.pkl
    - src/evaluate.py
    outs:
    - eval
    metrics:
    - eval/metrics.json:
        cache: false
    plots:
    - eval/plots/prc.csv:
        x: recall
        y: precision
  shard:
    foreach: ${shards}
    do:
      cmd: echo ${item} > shard-${item}.txt
      outs:
      - shard-${item}.txt:
          persist: true
vars:
- shards: [a, b]
metrics:
- eval/metrics.json
plots:
- eval/plots/prc.csv:
    x: recall
    y: precision
artifacts:
  model:
    path: model.pkl
    type: model
"""
DVC_LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python src/prepare.py data/data.xml
    deps:
    - path: data/data.xml
      hash: md5
      md5: 22a1a2931c8370d3aeedd7183606fd7f
      size: 14445097
"""
PARAMS = """\
prepare:
  split: 0.25
  seed: 20170428
featurize:
  max_features: 100
train:
  n_est: 50
  min_split: 0.01
"""
DATA_DVC = """\
outs:
- md5: 22a1a2931c8370d3aeedd7183606fd7f
  size: 14445097
  hash: md5
  path: data.xml
"""
IMPORTED_DVC = """\
md5: 0e4b3b3d8b1e6d4c5d0d0b0e0d0c0b0a
frozen: true
deps:
- path: https://example.com/remote/raw.csv
  etag: '"abc123"'
  size: 6
outs:
- md5: d41d8cd98f00b204e9800998ecf8427e
  size: 6
  hash: md5
  path: raw.csv
"""
DVC_CONFIG = """\
[core]
    remote = storage
['remote "storage"']
    url = s3://my-bucket/dvc-store
    endpointurl = http://localhost:9000
['remote "box"']
    url = ssh://host/path
"""


def _get_started(root: Path) -> None:
    """A DVC project as DVC's get-started example lays it out (data.xml pulled)."""
    write(root, "data/data.xml", "r1 r2 r3 r4 r5 r6 r7 r8\n")
    write(root, "data/data.xml.dvc", DATA_DVC)
    write(root, "data/.gitignore", "/data.xml\n")
    write(root, "data/raw.csv", "a,b,c\n")
    write(root, "data/raw.csv.dvc", IMPORTED_DVC)
    write(root, "dvc.yaml", DVC_YAML)
    write(root, "dvc.lock", DVC_LOCK)
    write(root, "params.yaml", PARAMS)
    write(root, ".dvc/config", DVC_CONFIG)
    write(root, ".dvc/.gitignore", "/config.local\n/tmp\n/cache\n")
    write(root, ".dvcignore", "# DVC ignore rules\n*.tmp\n")
    for name, text in (
        ("prepare", PREPARE),
        ("featurization", FEATURIZE),
        ("train", TRAIN),
        ("evaluate", EVALUATE),
    ):
        write(root, f"src/{name}.py", text)


def test_import_get_started_then_run(project, cli):
    pytest.importorskip("yaml", reason="the example stages read params.yaml with PyYAML")
    root = Path(project.root)
    _get_started(root)
    r = cli("import-dvc", "--json", ok=True)
    doc = r.json()
    assert doc["stages"] == ["prepare", "featurize", "train", "evaluate", "shard"]
    assert sorted(doc["data"]) == ["data/data.xml", "data/raw.csv"]
    assert doc["external"] == ["data/raw.csv"]
    assert doc["remotes"] == ["storage"]
    skipped = "\n".join(doc["skipped"])
    for what in ("artifacts", "'desc'", "'push'", "dvc.lock", "remote 'box'"):
        assert what in skipped, (what, skipped)

    lock = json.loads((root / "repro.lock").read_text())
    assert set(lock["data"]) == {"data/data.xml", "data/raw.csv"}
    assert lock["external"]["data/raw.csv"]["url"] == "https://example.com/remote/raw.csv"
    assert (root / ".reproignore").read_text() == "# DVC ignore rules\n*.tmp\n"
    config = (root / ".repro/config.toml").read_text()
    assert "s3://my-bucket/dvc-store" in config and "endpoint_url" in config

    # Refuses to overwrite without --force, and changes nothing.
    before = (root / "repro.yaml").read_text()
    assert "--force" in one_error(cli("import-dvc"))
    assert (root / "repro.yaml").read_text() == before

    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    r = cli("run", "--json", env=env, ok=True)
    ran = {s["name"]: s["status"] for s in r.json()["stages"]}
    assert ran["prepare"] == "ran" and ran["evaluate"] == "ran", ran
    assert {"shard@a", "shard@b"} <= set(ran)
    # 8 rows, split 0.25: 6 train rows, n_est 50 -> 300 -> avg_prec 3.0
    assert json.loads((root / "eval/metrics.json").read_text()) == {"avg_prec": 3.0}
    assert (root / "shard-a.txt").read_text().strip() == "a"
    # A param change reaches the stages that read it, as in DVC.
    write(root, "params.yaml", PARAMS.replace("n_est: 50", "n_est: 10"))
    st = cli("status", "--json", ok=True).json()
    stale = {s["name"] for s in st["stages"] if s["state"] == "stale"}
    assert stale == {"train", "evaluate"}, stale


def test_import_dvc_refuses_non_dvc_folder(project, cli):
    write(project.root, "notes.txt", "hi")
    assert "no DVC project" in one_error(cli("import-dvc"))


def _dvc() -> str | None:
    here = Path(__file__).resolve().parents[1] / ".venv-dvc/bin/dvc"
    return str(here) if here.exists() else shutil.which("dvc")


def test_import_project_made_by_dvc(project, cli):
    dvc = _dvc()
    if dvc is None:
        pytest.skip("dvc is not installed (make bench-dvc puts it in .venv-dvc)")
    root = Path(project.root)
    write(root, "data.txt", "1 2 3\n")
    write(root, "params.yaml", "scale: 3\n")
    write(root, "double.py", "print(sum(map(int, open('data.txt').read().split())) * 2)\n")

    def run(*args: str) -> None:
        p = subprocess.run([dvc, *args], cwd=root, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr

    run("init", "--no-scm", "-f")
    run("add", "data.txt")
    run("stage", "add", "-n", "double", "-d", "data.txt", "-d", "double.py", "-p", "scale",
        "-o", "out.txt", "python3 double.py > out.txt")  # fmt: skip
    run("repro")
    r = cli("import-dvc", "--json", "--force", ok=True)
    assert r.json()["stages"] == ["double"] and r.json()["data"] == ["data.txt"]
    cli("run", ok=True)
    assert (root / "out.txt").read_text().strip() == "12"


@pytest.mark.parametrize("cmd", ["import-url", "update", "import-dvc"])
def test_help_has_an_example(project, cli, cmd):
    out = cli(cmd, "--help", ok=True).out
    assert "Example:" in out and f"repro {cmd} " in out
