"""examples/ci: the GitHub Actions workflow and the GitLab CI file, run for real.

Each file is read as YAML and its steps' shell commands are run in order, as the CI system
would (GitHub: each `run:` in its own bash, later steps skipped after a failure unless their
`if:` says otherwise; GitLab: before_script and script in one `bash -eo pipefail`, after_script
always), in a fresh `git clone` of a project whose run cache lives on S3 (moto on loopback).
Only the install step is left out (this repro is already on PATH) and the secrets and variables
are the test's. The gate must pass on an unchanged pipeline and fail (exit 1) after a major
change, and the alert must reach a real webhook on loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from repro.project import Project
from tests.conftest import AWS_ENV, git, new_bucket, run_cli, write

yaml = pytest.importorskip("yaml")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "ci"

SPEC = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py, data.txt]
    outs: [model.txt]
    metrics: [metrics.json]
"""
TRAIN = """\
import json
acc = float(open("data.txt").read())
json.dump({"accuracy": acc}, open("metrics.json", "w"))
open("model.txt", "w").write(f"model {acc}")
"""


class Hook:
    """A webhook receiver on loopback: the JSON bodies it was sent."""

    def __init__(self) -> None:
        bodies: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.bodies = bodies
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def make_origin(root: Path, url: str, endpoint: str) -> str:
    """A developer's repository: on `main` the pipeline run, pushed to the S3 cache and its
    repro.lock committed; on `feature` a rewrite of the training code (a code change is major)
    committed without running: CI runs it."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    Project.init(root).state.close()
    write(root, "repro.yaml", SPEC)
    write(root, "train.py", TRAIN)
    write(root, "data.txt", "0.9\n")
    env = {**AWS_ENV}
    run_cli(["remote", "add", "dev", url, "--default", "-o", f"endpoint_url={endpoint}"], root, env)
    run_cli(["run"], root, env, True)
    run_cli(["push"], root, env, True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pipeline")
    git(root, "checkout", "-q", "-b", "feature")
    write(root, "train.py", TRAIN.replace("float(", "0.5 * float("))
    git(root, "commit", "-qam", "new model")
    git(root, "checkout", "-q", "main")
    return str(root)


def shell_env(values: dict[str, str]) -> dict[str, str]:
    bin_dir = os.path.dirname(sys.executable)  # this repro's `repro` command
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REPRO_"))}
    return {**env, "PATH": bin_dir + os.pathsep + env.get("PATH", ""), "CI": "true", **values}


_EXPR = re.compile(r"\$\{\{\s*([\w.]+)\s*(?:\|\|\s*'([^']*)'\s*)?\}\}")


def github_expr(text: str, values: dict[str, str]) -> str:
    """`${{ secrets.X }}`, `${{ vars.X || 'default' }}`, `${{ github.event... }}` with the
    test's values: what the runner substitutes before the shell sees the text."""

    def sub(m: re.Match) -> str:
        name = m.group(1).split(".")[-1]
        return values.get(name) or m.group(2) or ""

    return _EXPR.sub(sub, text)


def run_github(path: Path, root: str, values: dict[str, str]) -> list[tuple[str, int]]:
    """Run the workflow's steps; (step name, exit code) of each step that ran."""
    doc = yaml.safe_load(path.read_text())
    (job,) = doc["jobs"].values()
    env = shell_env(
        {**values, **{k: github_expr(str(v), values) for k, v in (job.get("env") or {}).items()}}
    )
    ran: list[tuple[str, int]] = []
    failed = False
    for step in job["steps"]:
        if "uses" in step:
            continue  # checkout and setup-python: the clone and this interpreter stand in
        name = step.get("name", step["run"])
        if name == "Install repro":
            continue  # replaced: this repro is on PATH
        cond = step.get("if")
        assert cond in (None, "${{ !cancelled() }}"), f"unknown condition {cond!r}"
        if failed and cond is None:
            continue
        shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
        if step.get("shell") is None:
            shell = ["bash", "-e", "-c"]
        p = subprocess.run(
            [*shell, github_expr(step["run"], values)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        ran.append((name, p.returncode))
        if p.returncode != 0:
            failed = True
            sys.stderr.write(f"step {name!r} exited {p.returncode}:\n{p.stdout}{p.stderr}\n")
    return ran


def run_gitlab(path: Path, root: str, values: dict[str, str]) -> tuple[int, list[int]]:
    """Run the job: (the script's exit code, each after_script line's exit code)."""
    doc = yaml.safe_load(path.read_text())
    jobs = [v for k, v in doc.items() if isinstance(v, dict) and "script" in v]
    (job,) = jobs
    variables = {**(doc.get("variables") or {}), **(job.get("variables") or {})}
    env = shell_env({**{k: str(v) for k, v in variables.items()}, **values})
    lines = [
        line
        for line in [*job.get("before_script", []), *job["script"]]
        if not line.startswith("pip install")  # replaced: this repro is on PATH
    ]
    p = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", "\n".join(lines)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if p.returncode:
        sys.stderr.write(f"script exited {p.returncode}:\n{p.stdout}{p.stderr}\n")
    after = [
        subprocess.run(
            ["bash", "-c", line], cwd=root, env=env, capture_output=True, timeout=120
        ).returncode
        for line in job.get("after_script", [])
    ]
    return p.returncode, after


def clone(origin: str, dst: Path, branch: str) -> str:
    subprocess.run(["git", "clone", "-q", "-b", branch, origin, str(dst)], check=True)
    return str(dst)


def on_remote(secrets: dict[str, str], clone_root: str) -> bool:
    """Whether the remote holds the model the CI clone's run made (its push step worked)."""
    import s3fs

    lock = json.loads(Path(clone_root, "repro.lock").read_text())
    h = lock["stages"]["train"]["outs"]["model.txt"]["hash"]
    fs = s3fs.S3FileSystem(
        endpoint_url=secrets["REPRO_S3_ENDPOINT"], key="testing", secret="testing"
    )
    return fs.exists(f"{secrets['REPRO_REMOTE_URL'][5:]}/objects/{h[:2]}/{h[2:]}")


@pytest.fixture(scope="module")
def origin(s3_server, tmp_path_factory) -> tuple[str, str, str]:
    """(origin repository, remote URL, S3 endpoint), shared by both CI files' tests."""
    url = f"s3://{new_bucket(s3_server)}/cache"
    root = make_origin(tmp_path_factory.mktemp("ci") / "origin", url, s3_server.url)
    return root, url, s3_server.url


@pytest.fixture
def secrets(origin, hook) -> dict[str, str]:
    _root, url, endpoint = origin
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "REPRO_REMOTE_URL": url,
        "REPRO_S3_ENDPOINT": endpoint,
        "REPRO_ALERT_WEBHOOK": hook.url,
        "REPRO_ALERT_SECRET": "",
        "default_branch": "main",  # github.event.repository.default_branch
        "CI_DEFAULT_BRANCH": "main",
    }


def test_github_actions_workflow_gates_on_major_changes(tmp_path, origin, secrets, hook) -> None:
    path = EXAMPLES / "github-actions.yml"
    ran = run_github(path, clone(origin[0], tmp_path / "main", "main"), secrets)
    assert [code for _, code in ran] == [0] * len(ran), ran
    names = [n for n, _ in ran]
    assert names.index("Pull the run cache") < names.index("Run the pipeline")
    assert names.index("Gate on major changes") < names.index("Push the results")
    assert hook.bodies == []  # nothing changed: no alert

    root = clone(origin[0], tmp_path / "feature", "feature")
    ran = dict(run_github(path, root, secrets))
    assert ran["Run the pipeline"] == 0
    assert ran["Gate on major changes"] == 1
    assert ran["Push the results"] == 0 and ran["Post alerts that could not be delivered"] == 0
    assert on_remote(secrets, root)  # the new results were pushed despite the gate
    # `repro check` posts the verdict (the run's own alert observer may post too).
    (alert,) = [b for b in hook.bodies if b.get("source") == "check"]
    assert alert["event"] == "alert" and alert["severity"] == "major"
    assert {(c.get("stage"), c["kind"], c["target"]) for c in alert["changes"]} >= {
        ("train", "code", "train.py")
    }


def test_gitlab_ci_job_gates_on_major_changes(tmp_path, origin, secrets, hook) -> None:
    path = EXAMPLES / "gitlab-ci.yml"
    code, after = run_gitlab(path, clone(origin[0], tmp_path / "main", "main"), secrets)
    assert (code, after) == (0, [0, 0])
    assert hook.bodies == []

    root = clone(origin[0], tmp_path / "feature", "feature")
    code, after = run_gitlab(path, root, secrets)
    assert code == 1 and after == [0, 0]
    assert on_remote(secrets, root)
    (alert,) = [b for b in hook.bodies if b.get("source") == "check"]
    assert alert["severity"] == "major" and alert["previous"] and alert["snapshot"]
