"""The `dask` executor against a real `distributed` cluster: a scheduler and two workers as
separate processes on loopback (tests/dask_cluster.py), each in its own folder, sharing only an
S3 remote (moto) with the client; the CLI driven as a subprocess. The scheduler keeps a pickled
copy of every task it is given, so the tests see what was submitted and what each carries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import git, new_bucket, one_error, run_cli, snapshot_tree, write
from tests.dask_cluster import cluster_fixture

pytest.importorskip("distributed", reason="the dask tests need the 'dask' extra")

N = 8  # the fan-out's width
REPRO = [sys.executable, "-m", "repro.cli"]

PIPELINE = textwrap.dedent(
    """
    stages:
      prepare:
        cmd: python3 prep.py
        deps: [prep.py, raw]
        outs: [data]
    {parts}
      gather:
        cmd: python3 gather.py
        deps: [gather.py, {part_outs}]
        outs: [result.txt, summary]
    """
)
PART = """  part{i}:
    cmd: python3 work.py {i}
    deps: [work.py, data]
    params: [scale]
    outs: [parts/p{i}.txt]
"""
PREP = """import os
os.makedirs("data/sub", exist_ok=True)
raw = open("raw/input.txt").read()
open("data/base.txt", "w").write(raw.upper())
open("data/sub/n.txt", "w").write(str(len(raw)))
"""
WORK = """import os, sys, time
i = int(sys.argv[1])
scale = int(open("params.yaml").read().split(":")[1])
if os.path.exists("data/sleep") and i == 3:
    time.sleep(float(open("data/sleep").read()))
base = open("data/base.txt").read()
n = int(open("data/sub/n.txt").read())
os.makedirs("parts", exist_ok=True)
line = f"{i} {base.strip()} {n * scale * i} {os.environ['REPRO_SEED']}\\n"
open(f"parts/p{i}.txt", "w").write(line)
"""
GATHER = """import glob, os
parts = sorted(glob.glob("parts/p*.txt"))
text = "".join(open(p).read() for p in parts)
open("result.txt", "w").write(text)
os.makedirs("summary", exist_ok=True)
open("summary/count.txt", "w").write(str(len(parts)))
"""


def make_project(root: Path, sleep: float | None = None) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    run_cli(["init"], root, check=True)
    parts = "".join(PART.format(i=i) for i in range(N))
    outs = ", ".join(f"parts/p{i}.txt" for i in range(N))
    write(root, "repro.yaml", PIPELINE.format(parts=parts, part_outs=outs))
    write(root, "params.yaml", "scale: 7\n")
    write(root, "prep.py", PREP)
    write(root, "work.py", WORK)
    write(root, "gather.py", GATHER)
    write(root, "raw/input.txt", "hello dask\n")
    if sleep is not None:
        write(root, "raw/sleep", str(sleep))
        write(root, "prep.py", PREP + 'open("data/sleep", "w").write(open("raw/sleep").read())\n')


@pytest.fixture(scope="module")
def worker_site(tmp_path_factory) -> dict[str, str]:
    """The workers' env path, where the distribution `fakepkg` is installed at version 2.0
    (the client has 1.0: see the environment test)."""
    site = tmp_path_factory.mktemp("worker-site")
    _fake_dist(site, "2.0")
    return {"PYTHONPATH": str(site)}


cluster = cluster_fixture(n_workers=2, env_from="worker_site")


def _fake_dist(site: Path, version: str) -> None:
    d = site / f"fakepkg-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")


def _remote(root: Path, s3_server) -> None:
    url = f"s3://{new_bucket(s3_server)}/cache"
    run_cli(
        ["remote", "add", "shared", url, "--default", "-o", f"endpoint_url={s3_server.url}"],
        root,
        check=True,
    )


def _dask(root: Path, cluster, *args: str, env: dict | None = None):
    return run_cli(["run", "--executor", "dask", "--scheduler", cluster.address, *args], root, env)


def _outputs(root: Path) -> dict[str, bytes]:
    tree = snapshot_tree(root)
    return {p: b for p, b in tree.items() if p.startswith(("data", "parts", "result", "summary"))}


def _signatures(root: Path) -> dict[str, str]:
    r = run_cli(["status", "--json"], root, check=True)
    assert all(s["state"] == "up-to-date" for s in r.json()["stages"]), r.out
    lock = (root / "repro.lock").read_text()
    return {k: v["signature"] for k, v in json.loads(lock)["stages"].items()}


def test_fan_out_fan_in_matches_a_local_run_and_reruns_submit_nothing(
    tmp_path, cluster, s3_server
) -> None:
    local, remote = tmp_path / "local", tmp_path / "viadask"
    make_project(local)
    make_project(remote)
    _remote(remote, s3_server)
    run_cli(["run", "-j", "4"], local, check=True)

    before = len(cluster.submitted())
    r = _dask(remote, cluster, "-j", "4", "--json")
    assert r.code == 0, r.err
    assert {s["status"] for s in r.json()["stages"]} == {"ran"}
    specs = cluster.submitted()[before:]
    assert len(specs) == N + 2  # one task per stage, no more
    # Byte-identical outputs and the same signatures as the local run.
    assert _outputs(remote) == _outputs(local)
    assert len(_outputs(local)) == N + 4
    assert _signatures(remote) == _signatures(local)
    # The workers got manifests only: no path of this machine in any request.
    assert all(b"part" in s or b"prepare" in s or b"gather" in s for s in specs)
    for s in specs:
        assert str(tmp_path).encode() not in s and b"/tmp/pytest" not in s
    # Each stage's record names the executor and the worker that ran it.
    run_id = r.json()["run_id"]
    from repro.project import Project
    from repro.records import load_record

    record = load_record(Project(str(remote)).cache.backend, run_id).to_dict()
    stages = record["stages"]
    workers = {s.get("worker") for s in stages}
    assert {s.get("executor") for s in stages} == {"dask"}
    assert all(w and w.startswith("dask:tcp://127.0.0.1:") for w in workers), workers

    # Again: everything is up to date; after removing the outputs and the local cache, the
    # remote's run cache restores every stage: no task is submitted either way.
    before = len(cluster.submitted())
    r = _dask(remote, cluster, "-j", "4", "--json")
    assert r.code == 0 and {s["status"] for s in r.json()["stages"]} == {"up-to-date"}
    for p in ("data", "parts", "result.txt", "summary", ".repro/cache"):
        _rm(remote / p)
    r = _dask(remote, cluster, "-j", "4", "--json")
    assert r.code == 0, r.err
    assert {s["status"] for s in r.json()["stages"]} == {"restored"}
    assert len(cluster.submitted()) == before
    assert _outputs(remote) == _outputs(local)


def test_a_failing_stage_cancels_the_rest_and_records_nothing_for_them(
    tmp_path, cluster, s3_server
) -> None:
    root = tmp_path / "p"
    make_project(root, sleep=60)
    _remote(root, s3_server)
    # part0 fails at once; part3 would sleep a minute: the run must not wait for it.
    write(root, "work.py", "import sys\nif sys.argv[1] == '0': sys.exit(3)\n" + WORK)
    t0 = time.monotonic()
    r = _dask(root, cluster, "-j", "8", "--json")
    took = time.monotonic() - t0
    assert r.code == 1 and "Traceback" not in r.err
    assert took < 30, took
    status = {s["name"]: s["status"] for s in r.json()["stages"]}
    sigs = {s["name"]: s["signature"] for s in r.json()["stages"]}
    assert status["part0"] == "failed" and status["prepare"] == "ran"
    assert status["part3"] == "failed" and status["gather"] == "skipped"
    assert "stage 'part0' failed: its command exited with code 3" in r.err
    assert "cancelled: stage 'part0' failed" in r.err
    assert not (root / "parts/p3.txt").exists()
    deadline = time.monotonic() + 10  # part3's command was stopped on its worker too
    while cluster.worker_running("work.py 3") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.worker_running("work.py 3") is None, "a cancelled stage still runs"
    lock = json.loads((root / "repro.lock").read_text())["stages"]
    assert "part3" not in lock and "part0" not in lock
    # Nothing recorded in the remote's run cache for the cancelled stage.
    from repro.project import Project
    from repro.remote import open_remote

    _name, store = open_remote(Project(str(root)), "shared")
    entries = {k.split("/")[-1] for k in store.backend.list("runs")}
    assert sigs["prepare"] in entries
    assert sigs["part0"] not in entries and sigs["part3"] not in entries


def test_an_environment_mismatch_is_one_clear_failure(tmp_path, cluster, s3_server) -> None:
    root = tmp_path / "p"
    root.mkdir()
    git(root, "init", "-q")
    run_cli(["init"], root, check=True)
    _remote(root, s3_server)
    write(
        root,
        "repro.yaml",
        "stages:\n  fit:\n    cmd: python3 -c \"open('m.txt','w').write('x')\"\n"
        "    environment:\n      packages: [fakepkg]\n    outs: [m.txt]\n",
    )
    here = tmp_path / "client-site"
    _fake_dist(here, "1.0")
    r = _dask(root, cluster, env={"PYTHONPATH": str(here)})
    line = one_error(r)
    assert "fakepkg is 2.0 on the worker but 1.0 on the client" in line, line
    assert not (root / "m.txt").exists() and not (root / "repro.lock").exists()


def test_a_stage_no_worker_can_take_is_refused_not_queued_forever(
    tmp_path, cluster, s3_server
) -> None:
    root = tmp_path / "p"
    root.mkdir()
    git(root, "init", "-q")
    run_cli(["init"], root, check=True)
    _remote(root, s3_server)
    write(
        root,
        "repro.yaml",
        "stages:\n  fit:\n    cmd: echo x > m.txt\n    outs: [m.txt]\n    resources: {GPU: 1}\n",
    )
    before = len(cluster.submitted())
    line = one_error(_dask(root, cluster))
    assert "stage 'fit' asks for resources GPU=1" in line and "--resources" in line, line
    assert len(cluster.submitted()) == before and not (root / "m.txt").exists()


def test_a_worker_killed_mid_stage_is_retried_elsewhere(tmp_path, cluster, s3_server) -> None:
    """Runs last of the cluster tests: it kills a worker (and starts a new one after)."""
    root = tmp_path / "p"
    make_project(root, sleep=4)
    _remote(root, s3_server)
    proc = subprocess.Popen(
        [*REPRO, "run", "--executor", "dask", "--scheduler", cluster.address, "-j", "4", "--json"],
        cwd=root,
        env={**os.environ, "CI": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    try:
        deadline = time.monotonic() + 40
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            victim = cluster.worker_running("work.py 3")  # part3's command: it sleeps 4 s
            time.sleep(0.1)
        assert victim is not None, f"part3 never started: {proc.communicate()}"
        time.sleep(1.0)  # mid-stage
        cluster.kill_worker(victim)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert proc.returncode == 0, err
        local = tmp_path / "local"
        make_project(local, sleep=0)
        run_cli(["run", "-j", "4"], local, check=True)
        assert _outputs(root)["parts/p3.txt"] == _outputs(local)["parts/p3.txt"]
        assert _outputs(root)["result.txt"] == _outputs(local)["result.txt"]
        from repro.project import Project
        from repro.records import load_record

        run_id = json.loads(out)["run_id"]
        record = load_record(Project(str(root)).cache.backend, run_id).to_dict()
        (part3,) = [st for st in record["stages"] if st["name"] == "part3"]
        survivor = next(w for w in cluster.workers if w is not victim)
        assert survivor.address in part3["worker"], part3
    finally:
        cluster.replace_worker(victim)


def test_dask_without_a_remote_refuses_in_one_sentence(cli, project) -> None:
    write(
        project.root, "repro.yaml", "stages:\n  a:\n    cmd: echo hi > a.txt\n    outs: [a.txt]\n"
    )
    before = snapshot_tree(project.root, skip=(".git",))
    line = one_error(cli("run", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"))
    assert "needs a shared remote" in line and "repro remote add" in line
    assert snapshot_tree(project.root, skip=(".git",)) == before  # nothing read, nothing written
    remote = os.path.join(os.path.dirname(project.root), "remote")
    cli("remote", "add", "shared", f"file://{remote}", "--default", ok=True)
    line = one_error(cli("run", "--executor", "dask", "--no-remote"))
    assert "needs a shared remote" in line
    # A scheduler that is not there: one sentence naming it, nothing written.
    with open(os.path.join(project.root, ".repro", "config.toml"), "a") as f:
        f.write("\n[dask]\ntimeout = 2\n")
    line = one_error(cli("run", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"))
    assert "tcp://127.0.0.1:9" in line
    assert not os.path.exists(os.path.join(project.root, "repro.lock"))


def test_resources_must_be_names_with_amounts(cli, project) -> None:
    write(
        project.root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: echo hi > a.txt\n    outs: [a.txt]\n    resources: {GPU: -1}\n",
    )
    line = one_error(cli("run"))
    assert "stage 'a'" in line and "resources" in line


def _rm(p: Path) -> None:
    if p.is_dir():
        for dirpath, dirs, files in os.walk(p):
            for n in dirs + files:
                os.chmod(os.path.join(dirpath, n), 0o755)
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def test_without_a_scheduler_a_local_cluster_runs_the_stages(cli, project, tmp_path) -> None:
    cli("remote", "add", "shared", f"file://{tmp_path / 'remote'}", "--default", ok=True)
    with open(os.path.join(project.root, ".repro", "config.toml"), "a") as f:
        f.write('\n[run]\nexecutor = "dask"\n[dask]\nworkers = 1\n')
    write(
        project.root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: echo said-on-worker; echo x > a.txt\n    outs: [a.txt]\n",
    )
    r = cli("run", "-r", "shared")
    assert r.code == 0, r.err
    assert "said-on-worker" in r.out  # the worker's log, shown once fetched
    assert Path(project.root, "a.txt").read_text() == "x\n"
    line = one_error(cli("run", "-r", "nosuch"))
    assert "nosuch" in line
