"""Shared fixtures: a fresh project in a real git repository, and the real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from repro.project import Project


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_cli(
    args: list[str], cwd: str | os.PathLike[str], env: dict | None = None, check: bool | None = None
) -> Result:
    """Run `repro ARGS` in a real process (exit codes, stdout and stderr as a user sees them)."""
    full_env = {**os.environ, "CI": "1", **(env or {})}
    p = subprocess.run(
        [sys.executable, "-m", "repro.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    r = Result(p.returncode, p.stdout, p.stderr)
    if check is True:
        assert r.code == 0, f"repro {' '.join(args)} failed ({r.code}):\n{r.out}\n{r.err}"
    return r


def git(cwd: str | os.PathLike[str], *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    p = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, f"git {' '.join(args)}: {p.stdout}{p.stderr}"
    return p.stdout


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    return Project.init(root)


@pytest.fixture
def cli(project: Project):
    def call(*args: str, env: dict | None = None, ok: bool | None = None) -> Result:
        return run_cli(list(args), project.root, env=env, check=ok)

    return call


def write(root: str | os.PathLike[str], rel: str, content: str | bytes) -> Path:
    p = Path(root) / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    if p.exists():
        os.chmod(p, 0o644)
        p.unlink()
    p.write_bytes(content)
    return p


def snapshot_tree(root: str | os.PathLike[str], skip=(".repro", ".git")) -> dict[str, bytes]:
    """Every file under `root` (outside `skip`) with its bytes: an independent view of a tree."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SESSION_TOKEN": "testing",
}


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("s3fs", reason="S3 tests need the 's3' extra (s3fs)")
    pytest.importorskip("moto", reason="S3 tests need moto[server] (dev extra)")
    from tests.s3server import MotoServer

    for k, v in AWS_ENV.items():
        os.environ.setdefault(k, v)
    server = MotoServer()
    yield server
    server.stop()


def new_bucket(server) -> str:
    import s3fs

    name = f"repro-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(endpoint_url=server.url, key="testing", secret="testing")
    fs.mkdir(name)
    return name


@pytest.fixture(params=["file", "s3"])
def remote_url(request, tmp_path):
    """(url, options) of an empty remote of each kind the CLI can reach across processes."""
    if request.param == "file":
        return f"file://{tmp_path / 'remote'}", []
    server = request.getfixturevalue("s3_server")
    return f"s3://{new_bucket(server)}/cache", [f"endpoint_url={server.url}"]


# -- the trust-boundary tests' shared checks ------------------------------------------------
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the project with a victim file: no hostile input may touch it."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim.txt").write_text("precious")
    return d


def untouched(outside: Path) -> bool:
    return snapshot_tree(outside) == {"victim.txt": b"precious"}


def one_error(r: Result) -> str:
    """A refused command: non-zero, not 70, one 'error:' sentence, no traceback."""
    assert r.code not in (0, 70), (r.code, r.out, r.err)
    assert "Traceback" not in r.err, r.err
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.err
    return lines[0]


def alive(pid: int) -> bool:
    """Whether process `pid` still runs; a zombie no one has reaped yet counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
