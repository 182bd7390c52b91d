"""Stages on a real Dask cluster (tests/dask_cluster.py): a scheduler and two worker processes on
loopback, running as another uid that cannot read the project, sharing only an S3 remote (moto)
with the client. Everything goes through the real CLI:
`repro run --executor dask --scheduler ADDR -r REMOTE`."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AWS_ENV, git, new_bucket, one_error, run_cli, snapshot_tree, write
from tests.dask_cluster import DaskCluster, cluster_fixture

BIN = Path(sys.executable).parent


def executor_built() -> bool:
    """Whether `repro.execution.dask` holds the executor yet (it is written beside these tests)."""
    try:
        mod = importlib.import_module("repro.execution.dask")
        from repro.execution import registry
    except ImportError:
        return False
    if "dask" in registry.BUILTIN:
        module, attr = registry.BUILTIN["dask"]
        return hasattr(importlib.import_module(module), attr)
    return any(name.endswith("Executor") for name in vars(mod))


needs_executor = pytest.mark.skipif(not executor_built(), reason="dask executor not built yet")


# -- fixtures -----------------------------------------------------------------------------------
def fake_dist(site: Path, name: str, version: str) -> None:
    """An installed-looking distribution (metadata only) on a folder put on PYTHONPATH."""
    d = site / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.fixture(scope="module")
def sites() -> Iterator[dict[str, Path]]:
    """`reprotestpkg` 1.0 for the client, 2.0 for the workers (readable by their uid)."""
    base = Path(tempfile.mkdtemp(prefix="repro-sites-"))
    os.chmod(base, 0o755)
    out = {"client": base / "client", "worker": base / "worker"}
    fake_dist(out["client"], "reprotestpkg", "1.0")
    fake_dist(out["worker"], "reprotestpkg", "2.0")
    for p in [base, *base.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    yield out
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def worker_env(sites) -> dict[str, str]:
    return {"PYTHONPATH": str(sites["worker"])}


# Two workers as the `reprotest` uid, with the S3 credentials; w0 has a GPU, w1 none.
cluster = cluster_fixture(
    n_workers=2, user="reprotest", resources=["GPU=1", None], env_from="worker_env"
)


class Proj:
    """A project folder the workers' uid cannot read, with an S3 remote as its default."""

    def __init__(self, root: Path, cluster: DaskCluster, remote: tuple[str, str]) -> None:
        self.root, self.cluster = root, cluster
        self.url, self.endpoint = remote

    def cli(self, *args: str, env: dict | None = None):
        return run_cli(list(args), self.root, env={**client_env(), **(env or {})})

    def dask_args(self) -> list[str]:
        return ["--executor", "dask", "--scheduler", self.cluster.address, "-j", "8", "-r", "s3"]

    def run_dask(self, *extra: str, env: dict | None = None):
        return self.cli("run", *self.dask_args(), *extra, env=env)

    def record(self, run_id: str) -> dict:
        r = self.cli("show", run_id, "--json")
        assert r.code == 0, r.err
        return r.json()


def client_env() -> dict[str, str]:
    return {**AWS_ENV, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def make_project(base: Path, name: str, files: dict[str, str]) -> Path:
    root = base / name
    root.mkdir(parents=True)
    git(root, "init", "-q")
    r = run_cli(["init"], root)
    assert r.code == 0, r.err
    for rel, text in files.items():
        write(root, rel, text)
    os.chmod(root, 0o700)
    return root


@pytest.fixture
def new_proj(tmp_path, cluster, s3_server):
    """Make a project from files, with a fresh bucket as its default remote."""

    def make(name: str, files: dict[str, str], bucket: str | None = None) -> Proj:
        root = make_project(tmp_path, name, files)
        url = f"s3://{bucket or new_bucket(s3_server)}/cache"
        r = run_cli(
            ["remote", "add", "s3", url, "-o", f"endpoint_url={s3_server.url}", "--default"],
            root,
            env=client_env(),
        )
        assert r.code == 0, r.err
        return Proj(root, cluster, (url, s3_server.url))

    return make


def remote_runs(p: Proj) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=p.endpoint, key="testing", secret="testing")
    path = p.url.removeprefix("s3://") + "/runs"
    return fs.ls(path) if fs.exists(path) else []


# -- the pipelines ------------------------------------------------------------------------------
SHARD_PY = """\
import os, pathlib, random, sys, time
mode = sys.argv[1]
if mode == "prep":
    words = pathlib.Path("raw.txt").read_text().split()
    os.makedirs("prepared", exist_ok=True)
    for i in range(8):
        pathlib.Path(f"prepared/s{i}.txt").write_text(" ".join(words[i::8]))
elif mode == "part":
    i = int(sys.argv[2])
    time.sleep(0.4)
    rng = random.Random(int(os.environ["REPRO_SEED"]))
    nums = [int(w) for w in pathlib.Path(f"prepared/s{i}.txt").read_text().split()]
    os.makedirs("parts", exist_ok=True)
    line = f"{i} {len(nums)} {sum(nums)} {rng.random()!r} {os.environ['PYTHONHASHSEED']}\\n"
    pathlib.Path(f"parts/p{i}.txt").write_text(line)
else:
    text = "".join(pathlib.Path(f"parts/p{i}.txt").read_text() for i in range(8))
    pathlib.Path("total.txt").write_text(text)
"""


def fan_out_files() -> dict[str, str]:
    stages = [
        "seed: 42\nstages:\n",
        "  prepare:\n    cmd: python3 shard.py prep\n    deps: [shard.py, raw.txt]\n"
        "    outs: [prepared]\n",
    ]
    for i in range(8):
        stages.append(
            f"  part{i}:\n    cmd: python3 shard.py part {i}\n    deps: [shard.py, prepared]\n"
            f"    outs: [parts/p{i}.txt]\n"
        )
    parts = ", ".join(f"parts/p{i}.txt" for i in range(8))
    stages.append(
        f"  gather:\n    cmd: python3 shard.py gather\n    deps: [shard.py, {parts}]\n"
        "    outs: [total.txt]\n"
    )
    raw = " ".join(str(n * 7919 % 1000) for n in range(400)) + "\n"
    return {"repro.yaml": "".join(stages), "shard.py": SHARD_PY, "raw.txt": raw}


OUTPUTS = ("prepared", "parts", "total.txt")


def outputs(root: Path) -> dict[str, bytes]:
    tree = snapshot_tree(root)
    return {k: v for k, v in tree.items() if k.split("/")[0] in OUTPUTS}


def statuses(r) -> dict[str, str]:
    return statuses_of(r.json())


# -- the helper itself (runs without the executor) ---------------------------------------------
def test_cluster_workers_are_isolated_and_unprivileged(cluster, tmp_path):
    """The fixture gives what the other tests rely on: workers of another uid, each in its own
    folder, that cannot read the client's project; resources as asked."""
    root = make_project(tmp_path, "p", {"secret.txt": "client only\n"})
    with cluster.client() as c:
        info = c.scheduler_info(n_workers=-1)["workers"]
        uids = c.run(os.getuid)
        cwds = c.run(os.getcwd)
    assert len(info) == 2
    assert set(uids.values()) == {cluster.user.uid} and cluster.user.uid != os.getuid()
    assert len(set(cwds.values())) == 2 and not any(str(tmp_path) in d for d in cwds.values())
    gpu = {v["name"]: v.get("resources", {}) for v in info.values()}
    assert gpu == {"w0": {"GPU": 1}, "w1": {}}
    denied = cluster.as_worker_user(["cat", str(root / "secret.txt")], cwd="/")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


# -- the executor, through the CLI ------------------------------------------------------------
# Cancelling comes first, on workers that have run nothing yet (as a user's fresh cluster).
@needs_executor
def test_a_failing_stage_cancels_the_rest(cluster, new_proj):
    token = f"slow-{uuid.uuid4().hex[:8]}"
    spec = "stages:\n  bad:\n    cmd: sleep 2.5; echo broken >&2; exit 3\n    outs: [bad.txt]\n"
    for i in range(4):
        spec += (
            f"  slow{i}:\n    cmd: python3 -c 'import time; time.sleep(30)' {token}; "
            f"echo {i} > s{i}.txt\n    outs: [s{i}.txt]\n"
        )
    p = new_proj("fail", {"repro.yaml": spec})
    t = time.time()
    r = p.run_dask()
    assert time.time() - t < 25, "the slow stages were not stopped: " + r.err
    assert r.code not in (0, 70) and "Traceback" not in r.err, r.err
    errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert errors and "'bad'" in errors[0] and "3" in errors[0], r.err
    assert all("'bad'" in ln for ln in errors), r.err  # the others say why they stopped
    deadline = time.time() + 10
    while cluster.worker_running(token) and time.time() < deadline:
        time.sleep(0.2)
    assert cluster.worker_running(token) is None, "a cancelled stage still runs on a worker"
    assert not any((p.root / f"s{i}.txt").exists() for i in range(4))
    assert remote_runs(p) == []  # nothing recorded as a result
    st = p.cli("status", "--json").json()
    assert {s["name"]: s["state"] for s in st["stages"]} == {
        n: "stale" for n in ["bad", "slow0", "slow1", "slow2", "slow3"]
    }


def start_run(p: Proj) -> subprocess.Popen:
    """`repro run` on the cluster, in the background, as a user starts it in a terminal."""
    args = [sys.executable, "-m", "repro.cli", "run", *p.dask_args(), "--json"]
    env = {**os.environ, "CI": "1", **client_env()}
    return subprocess.Popen(
        args, cwd=p.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_running(cluster: DaskCluster, proc: subprocess.Popen, token: str):
    """The worker running the stage whose command line holds `token`, once it runs."""
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:
        w = cluster.worker_running(token)
        if w is not None:
            return w
        time.sleep(0.1)
    raise AssertionError(f"the stage never started on a worker: {proc.communicate()}")


@needs_executor
def test_ctrl_c_stops_the_stages_on_the_workers_and_records_nothing(cluster, new_proj):
    token = f"ctrlc-{uuid.uuid4().hex[:8]}"
    spec = (
        "stages:\n  long:\n"
        f"    cmd: python3 -c 'import time; time.sleep(30)' {token}; echo x > l.txt\n"
        "    outs: [l.txt]\n"
    )
    p = new_proj("ctrlc", {"repro.yaml": spec})
    proc = start_run(p)
    try:
        wait_running(cluster, proc, token)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    deadline = time.time() + 10
    while cluster.worker_running(token) and time.time() < deadline:
        time.sleep(0.2)
    assert cluster.worker_running(token) is None, "the stage still runs on its worker"
    assert not (p.root / "l.txt").exists() and not (p.root / "repro.lock").exists()
    assert remote_runs(p) == []


@needs_executor
def test_without_a_shared_remote_the_run_refuses(cluster, tmp_path):
    spec = "stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n"
    root = make_project(tmp_path, "noremote", {"repro.yaml": spec})
    before = snapshot_tree(root, skip=(".git", "tmp"))  # .repro/tmp: a parse cache
    r = run_cli(["run", "--executor", "dask", "--scheduler", cluster.address], root)
    assert "remote" in one_error(r)
    assert snapshot_tree(root, skip=(".git", "tmp")) == before


@needs_executor
def test_fan_out_on_other_uid_workers_matches_a_local_run(cluster, new_proj, tmp_path):
    files = fan_out_files()
    local = make_project(tmp_path, "local", files)
    r_local = run_cli(["run", "--json"], local, env=client_env())
    assert r_local.code == 0, r_local.err

    p = new_proj("remote", files)
    denied = cluster.as_worker_user(["cat", str(p.root / "raw.txt")], cwd="/")
    assert denied.returncode != 0  # the workers cannot see the project: nothing is shared
    t0 = cluster.task_count()
    r = p.run_dask("--json")
    assert r.code == 0, r.err + cluster.logs()
    assert set(statuses(r).values()) == {"ran"} and len(statuses(r)) == 10
    assert cluster.task_count() > t0
    assert outputs(p.root) == outputs(local) and len(outputs(local)) == 17
    assert r.json()["snapshot"] == r_local.json()["snapshot"]

    rec = p.record(r.json()["run_id"])
    addresses = {w.address for w in cluster.workers}
    used = set()
    for st in rec["stages"]:
        assert st["executor"] == "dask", st
        used |= {a for a in addresses if a in (st["worker"] or "")}
    assert used == addresses  # eight parallel stages spread over both workers

    # What the workers received names nothing of this machine's folders.
    specs = cluster.submitted()
    assert specs
    for spec in specs:
        for path in (str(p.root), str(tmp_path), str(local)):
            assert path.encode() not in spec

    # A second run, outputs gone from the workspace: all back, without a task.
    for name in OUTPUTS:
        target = p.root / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    t1 = cluster.task_count()
    again = p.run_dask("--json")
    assert again.code == 0, again.err
    assert set(statuses(again).values()) <= {"restored", "up-to-date"}
    assert outputs(p.root) == outputs(local)
    assert cluster.task_count() == t1

    # A fresh clone sharing the remote gets every result from it: no task either.
    clone = new_proj("clone", files, bucket=p.url.removeprefix("s3://").split("/")[0])
    t2 = cluster.task_count()
    third = clone.run_dask("--json")
    assert third.code == 0, third.err
    assert set(statuses(third).values()) == {"restored"}
    assert outputs(clone.root) == outputs(local)
    assert cluster.task_count() == t2


@needs_executor
def test_an_environment_mismatch_names_the_package_and_both_versions(cluster, new_proj, sites):
    spec = (
        "stages:\n  probe:\n    cmd: python3 -c 'print(1)' > o.txt\n    outs: [o.txt]\n"
        "    environment:\n      packages: [reprotestpkg]\n"
    )
    p = new_proj("envmismatch", {"repro.yaml": spec})
    r = p.run_dask(env={"PYTHONPATH": str(sites["client"])})
    line = one_error(r)
    assert "reprotestpkg" in line and "1.0" in line and "2.0" in line, line
    assert not (p.root / "o.txt").exists()
    assert remote_runs(p) == []


@needs_executor
def test_a_stage_with_resources_runs_where_they_are(cluster, new_proj):
    spec = "stages:\n  gpu:\n    cmd: echo ok > g.txt\n    outs: [g.txt]\n    resources: {GPU: 1}\n"
    p = new_proj("gpu", {"repro.yaml": spec})
    r = p.run_dask("--json")
    assert r.code == 0, r.err
    (st,) = p.record(r.json()["run_id"])["stages"]
    w0 = next(w for w in cluster.workers if w.name == "w0")
    assert w0.address in st["worker"], st


@needs_executor
def test_a_worker_killed_mid_stage_is_replaced_and_the_result_is_right(cluster, new_proj):
    """Runs last in this module: it kills a worker (and starts a new one after)."""
    token = f"victim-{uuid.uuid4().hex[:8]}"
    spec = (
        "stages:\n  slow:\n"
        f"    cmd: python3 -c 'import time; time.sleep(4)' {token}; echo \"done $REPRO_SEED\""
        " > out.txt\n    outs: [out.txt]\n"
    )
    p = new_proj("killed", {"repro.yaml": spec})
    proc = start_run(p)
    try:
        victim = wait_running(cluster, proc, token)
        cluster.kill_worker(victim)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert statuses_of(result) == {"slow": "ran"}
        assert re.fullmatch(r"done \d+\n", (p.root / "out.txt").read_text())
        (st,) = p.record(result["run_id"])["stages"]
        survivor = next(w for w in cluster.workers if w is not victim)
        assert survivor.address in st["worker"], st
        assert len(remote_runs(p)) == 1
    finally:
        cluster.replace_worker(victim)


def statuses_of(doc: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in doc["stages"]}
