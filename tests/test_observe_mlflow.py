"""The `mlflow` observer and `tag_model_version`, against a real MLflow tracking server (SQLite
backend on loopback, one for the module). The CLI runs the pipeline; the MLflow run is read
back through MlflowClient and compared with what repro itself shows (`show --json`,
`log --json`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import git, one_error, write

pytest.importorskip("mlflow", reason="needs the 'mlflow' extra")

PIPELINE = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py]
    params: [train.lr, train.layers]
    outs: [model.bin]
    metrics: [metrics.json]
"""
TRAIN = """\
import json, re
lr = float(re.search(r"lr: ([0-9.]+)", open("params.yaml").read()).group(1))
open("model.bin", "w").write(f"lr={lr}")
json.dump({"acc": 0.5 + lr, "loss": {"val": 0.25}}, open("metrics.json", "w"))
"""
CI = {"GITHUB_RUN_ID": "4242", "GITHUB_SHA": "c0ffee" * 6 + "beef", "CI_PIPELINE_ID": "77"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def _server_booting(tmp_path_factory):
    """`mlflow server` with a SQLite store on a free loopback port, started as the module
    begins (it takes ~15 s to boot, which the tests that need no server overlap), stopped at
    the end: (url, process, log path), or None when the binary is missing."""
    base = tmp_path_factory.mktemp("mlflow")
    exe = Path(sys.executable).with_name("mlflow")
    if not exe.exists():
        yield None
        return
    port = _free_port()
    argv = [str(exe), "server", "--backend-store-uri", f"sqlite:///{base}/mlflow.db"]
    argv += ["--default-artifact-root", str(base / "art"), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1"]
    with open(base / "server.log", "wb") as log:
        # its own session: its workers are stopped with it
        # no background job runners (seven extra processes the tests do not use)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield f"http://127.0.0.1:{port}", proc, base / "server.log"
    finally:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(_server_booting):
    """The server's URL once its /health answers (skip when it does not within 60 s)."""
    if _server_booting is None:
        pytest.skip("the mlflow command is missing (the 'mlflow' extra installs it)")
    url, proc, log = _server_booting
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).close()
            return url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"mlflow server did not start within 60 s: see {log}")
            time.sleep(0.2)


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _setup(root: Path, url: str, experiment: str | None = None) -> None:
    write(root, "repro.yaml", PIPELINE)
    write(root, "train.py", TRAIN)
    write(root, "params.yaml", "train:\n  lr: 0.25\n  layers: [64, 32]\n")
    extra = f'experiment = "{experiment}"\n' if experiment else ""
    write(
        root,
        ".repro/config.toml",
        f'[observe]\nuse = ["mlflow"]\n\n[observe.mlflow]\ntracking_uri = "{url}"\n{extra}',
    )


def _mirrored(url: str, run_id: str):
    client = _client(url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=f"tags.`repro.run_id` = '{run_id}'")
    assert len(found) == 1, found
    return found[0]


def test_unreachable_server_never_fails_the_run(project, cli):
    root = Path(project.root)
    _setup(root, f"http://127.0.0.1:{_free_port()}")
    t0 = time.monotonic()
    r = cli("run", "--json", ok=True)
    assert time.monotonic() - t0 < 30
    assert r.json()["stages"][0]["status"] == "ran"
    lines = [ln for ln in r.err.splitlines() if "mlflow" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: observer 'mlflow'"), r.err
    assert "Traceback" not in r.err


def test_silent_server_is_bounded_by_the_timeout(project, cli):
    root = Path(project.root)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _setup(root, f"http://127.0.0.1:{silent.getsockname()[1]}")
        config = (root / ".repro/config.toml").read_text() + "timeout = 1\n"
        write(root, ".repro/config.toml", config)
        t0 = time.monotonic()
        r = cli("run", "--json", ok=True)
        assert time.monotonic() - t0 < 15
    assert r.json()["stages"][0]["status"] == "ran"
    lines = [ln for ln in r.err.splitlines() if "mlflow" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: observer 'mlflow'"), r.err


def test_committed_tracking_uri_must_be_a_server(project, cli):
    root = Path(project.root)
    _setup(root, "file:///tmp/elsewhere")
    err = one_error(cli("status"))
    assert "observe.mlflow.tracking_uri" in err


def test_run_is_mirrored_into_mlflow(project, cli, mlflow_server):
    root = Path(project.root)
    _setup(root, mlflow_server, experiment="repro-tests")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pipeline")

    r = cli("run", "--json", env=CI, ok=True)
    result = r.json()  # stdout holds the JSON document alone (MLflow prints nothing there)
    assert "warning" not in r.err, r.err
    sig, run_id = result["snapshot"], result["run_id"]
    snap = cli("show", sig, "--json", ok=True).json()
    rec = cli("show", run_id, "--json", ok=True).json()
    logged = cli("log", "--json", ok=True).json()[0]

    run = _mirrored(mlflow_server, run_id)
    assert run.info.status == "FINISHED"
    assert _client(mlflow_server).get_experiment(run.info.experiment_id).name == "repro-tests"
    params = snap["stages"]["train"]["params"]
    assert params == {"params.yaml:train.layers": [64, 32], "params.yaml:train.lr": 0.25}
    assert run.data.params == {"train.lr": "0.25", "train.layers": "[64, 32]"}
    assert logged["metrics"] == {"metrics.json": {"acc": 0.75, "loss.val": 0.25}}
    assert run.data.metrics == {"acc": 0.75, "loss.val": 0.25}
    tags = run.data.tags
    assert tags["repro.snapshot"] == sig
    assert tags["repro.run_id"] == run_id
    assert tags["repro.signature.train"] == result["stages"][0]["signature"]
    assert tags["repro.signature.train"] == snap["stages"]["train"]["signature"]
    head = git(root, "rev-parse", "HEAD").strip()
    assert tags["mlflow.source.git.commit"] == rec["git_commit"] == head
    assert tags["repro.git_dirty"] == str(rec["git_dirty"]).lower()
    assert tags["repro.ci.github.run_id"] == "4242"
    assert tags["repro.ci.github.sha"] == CI["GITHUB_SHA"]
    assert tags["repro.ci.gitlab.pipeline_id"] == "77"
    assert "repro.ci.gitlab.job_id" not in tags
    assert run.info.start_time < run.info.end_time


def test_failed_run_is_failed_in_mlflow(project, cli, mlflow_server):
    root = Path(project.root)
    _setup(root, mlflow_server)
    write(root, "train.py", "raise SystemExit(2)\n")
    r = cli("run", "--json")
    assert r.code != 0
    run = _mirrored(mlflow_server, r.json()["run_id"])
    assert run.info.status == "FAILED"
    assert "repro.snapshot" not in run.data.tags
    assert run.data.tags["repro.status"] == "failed"
    assert run.data.metrics == {}
    exp = _client(mlflow_server).get_experiment(run.info.experiment_id)
    assert exp.name == root.name  # default experiment: the project folder's name


def test_model_version_leads_back_to_its_state(project, cli, mlflow_server):
    from repro.integrations.mlflow import tag_model_version

    root = Path(project.root)
    _setup(root, mlflow_server)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pipeline")
    first = cli("run", "--json", ok=True).json()
    mlflow_run = _mirrored(mlflow_server, first["run_id"])
    client = _client(mlflow_server)
    name = f"model-{root.parent.name}"
    client.create_registered_model(name)
    mv = client.create_model_version(
        name, source=f"runs:/{mlflow_run.info.run_id}/model", run_id=mlflow_run.info.run_id
    )

    tags = tag_model_version(name, mv.version, root=str(root))  # default: repro.lock's state
    stored = client.get_model_version(name, mv.version).tags
    assert stored["repro.snapshot"] == tags["repro.snapshot"] == first["snapshot"]
    assert stored["repro.run_id"] == first["run_id"]
    assert stored["mlflow.source.git.commit"] == git(root, "rev-parse", "HEAD").strip()

    # Move on (this run unobserved: quicker), then go back to the state the model names.
    config = (root / ".repro/config.toml").read_text()
    write(root, ".repro/config.toml", config.replace('use = ["mlflow"]', "use = []"))
    write(root, "params.yaml", "train:\n  lr: 0.5\n  layers: [64, 32]\n")
    second = cli("run", "--json", ok=True).json()
    assert second["snapshot"] != first["snapshot"]
    cli("checkout", stored["repro.snapshot"], ok=True)
    assert (root / "model.bin").read_text() == "lr=0.25"
    assert json.loads((root / "metrics.json").read_text())["acc"] == 0.75

    # An explicit sig (a prefix) is accepted; an unknown model version is one clear error.
    again = tag_model_version(name, mv.version, root=str(root), sig=second["snapshot"][:10])
    assert again["repro.snapshot"] == second["snapshot"]
    assert client.get_model_version(name, mv.version).tags["repro.snapshot"] == second["snapshot"]
    from repro.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no version 99"):
        tag_model_version(name, 99, root=str(root))
