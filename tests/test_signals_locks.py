"""A stage never outlives `repro run`, and every command that writes the workspace or deletes
from the cache holds the project lock (issue 9, sections 8, 9 and 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import alive, run_cli, write


def start(root: str, *args: str) -> subprocess.Popen:
    """`repro ARGS` in the background, as a user's shell would start it."""
    return subprocess.Popen(
        [sys.executable, "-m", "repro.cli", *args],
        cwd=root,
        env={**os.environ, "CI": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path.name} never appeared"


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_stage_group_like_ctrl_c(project, cli, sig, code) -> None:
    root = project.root
    write(root, "repro.yaml", "stages:\n  a:\n    cmd: echo v1 > a.txt\n    outs: [a.txt]\n")
    cli("run", ok=True)
    lock_before = Path(root, "repro.lock").read_text()
    # The stage leaves a background process in its group, and its shell waits on another.
    write(
        root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: sleep 30 & echo $! > bg.pid; sleep 30 & echo $! > fg.pid; "
        "touch started; wait; touch finished; echo v2 > a.txt\n    outs: [a.txt]\n",
    )
    p = start(root, "run")
    wait_for(Path(root, "started"))
    pids = [int(Path(root, f).read_text()) for f in ("bg.pid", "fg.pid")]
    assert all(alive(x) for x in pids)
    p.send_signal(sig)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == code
    assert err.strip().splitlines()[-1] == f"stopped by {signal.Signals(sig).name}."
    assert "Traceback" not in err
    assert gone_within(pids, 5), "a process of the stage outlived repro"
    assert not Path(root, "finished").exists()
    assert Path(root, "repro.lock").read_text() == lock_before
    assert run_cli(["status", "--json"], root).json()["stages"][0]["state"] == "stale"


def test_sigkill_of_repro_stops_the_stage(project, cli) -> None:
    root = project.root
    write(
        root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo $$ > sh.pid; sleep 1.5 & echo $! > child.pid; wait; "
        "touch finished; echo > o\n    outs: [o]\n",
    )
    p = start(root, "run")
    wait_for(Path(root, "child.pid"))
    time.sleep(0.1)
    pids = [int(Path(root, f).read_text()) for f in ("sh.pid", "child.pid")]
    p.kill()
    p.communicate(timeout=10)
    assert gone_within(pids, 3), "the stage outlived a SIGKILLed repro"
    time.sleep(1.6)
    assert not Path(root, "finished").exists()
    # The lock went with the stage: the next run takes it at once, and runs the stage fully.
    r = cli("run", "--json", ok=True)
    assert r.json()["stages"][0]["status"] == "ran" and Path(root, "finished").exists()


def test_a_stage_process_that_escapes_keeps_the_lock_until_it_exits(project, cli) -> None:
    """A process that left the stage's group (setsid) after repro was SIGKILLed still holds the
    project lock: the next command refuses, naming the stage, and --wait gets it afterwards."""
    root = project.root
    write(
        root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: setsid sh -c 'sleep 2; touch late' & touch started; sleep 20; "
        "echo > o\n    outs: [o]\n",
    )
    p = start(root, "run")
    wait_for(Path(root, "started"))
    time.sleep(0.2)
    p.kill()
    p.communicate(timeout=10)
    r = cli("checkout")
    assert r.code == 1 and "Traceback" not in r.err
    assert "stage 's' still holds the project lock" in r.err and f"pid {p.pid}" in r.err
    assert not Path(root, "late").exists()
    t0 = time.time()
    cli("checkout", "--wait", "10", ok=True)
    assert Path(root, "late").exists()  # it got the lock only once the stray process was done
    assert time.time() - t0 < 5


def test_commands_that_write_refuse_during_a_run_naming_it_and_wait_works(project, cli) -> None:
    root = project.root
    write(root, "d.txt", "data")
    cli("add", "d.txt", ok=True)
    h = json.loads(Path(root, "repro.lock").read_text())["data"]["d.txt"]["hash"]
    write(
        root,
        "repro.yaml",
        "data: [d.txt]\nstages:\n  s:\n    cmd: touch started; sleep 2; echo done > o\n"
        "    outs: [o]\n",
    )
    write(root, "e.txt", "more")
    p = start(root, "run")
    wait_for(Path(root, "started"))
    before = {f: Path(root, f).read_bytes() for f in ("repro.yaml", "repro.lock", "d.txt")}
    for args in (
        ["checkout"],
        ["add", "e.txt"],
        ["restore", h, "copy.txt"],
        ["pull"],
        ["gc"],
        ["fsck", "--repair"],
    ):
        r = cli(*args)
        assert r.code == 1 and "holds the project lock" in r.err, (args, r.err)
        assert f"pid {p.pid}" in r.err and "run" in r.err and "Traceback" not in r.err
    assert {f: Path(root, f).read_bytes() for f in before} == before
    assert not Path(root, "copy.txt").exists()
    # Readers take no lock: status answers during the run.
    assert cli("status").code == 0
    r = cli("checkout", "--wait", "20", "--json", ok=True)
    assert p.wait(timeout=20) == 0
    assert Path(root, "o").read_text() == "done\n"
    assert cli("add", "e.txt", "--wait", "5", ok=True)


def test_run_wait_plans_after_the_wait(project, cli) -> None:
    """The waiting run sees what the run it waited for made: nothing left to do."""
    root = project.root
    write(
        root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo x >> ../runs.txt; touch started; sleep 1.5; echo 1 > o\n"
        "    outs: [o]\n",
    )
    first = start(root, "run")
    wait_for(Path(root, "started"))
    second = cli("run", "--wait", "20", "--json", ok=True)
    assert first.wait(timeout=20) == 0
    assert second.json()["stages"][0]["status"] == "up-to-date"
    assert Path(root, "..", "runs.txt").read_text() == "x\n"  # the stage ran once


def test_unreachable_default_remote_warns_once_and_runs_locally(project, cli) -> None:
    pytest.importorskip("s3fs", reason="needs the 's3' extra")
    from tests.s3server import free_port

    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    root = project.root
    cli(
        "remote",
        "add",
        "dead",
        "s3://bucket/cache",
        "--default",
        "-o",
        f"endpoint_url=http://127.0.0.1:{free_port()}",
        ok=True,
    )
    write(
        root,
        "repro.yaml",
        "stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n"
        "  b:\n    cmd: cat a.txt > b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n",
    )
    t0 = time.time()
    r = cli("run", "--json", env=aws)
    seconds = time.time() - t0
    assert r.code == 0, r.err
    assert [s["status"] for s in r.json()["stages"]] == ["ran", "ran"]
    warnings = [line for line in r.err.splitlines() if "remote" in line or "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: remote 'dead'")
    assert "cannot be reached" in warnings[0] and warnings[0].endswith("running locally.")
    assert seconds < 6, f"the run waited {seconds:.1f} s for a dead remote"


def test_stale_temp_files_of_dead_writers_are_removed(project, cli) -> None:
    root = project.root
    write(root, "data/f.txt", "f")
    cli("add", "data", ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    tag = f"{dead.pid}-0badc0de"
    tmp = Path(project.tmp_dir)
    tmp.mkdir(exist_ok=True)
    stale = tmp / f"{tag}-1-3"
    stale.write_bytes(b"x" * 1000)
    live = tmp / f"{os.getppid()}-0badc0de-1-3"  # pytest's parent: alive, and new
    live.write_bytes(b"y")
    beside = [Path(root, "data", f".f.txt.{tag}-1-4"), Path(root, f".data.{tag}-1-5")]
    for b in beside:
        b.write_bytes(b"half")
    (tmp / f"beside-{tag}").write_text(f"{Path(root, 'data')}\n{root}\n")
    foreign = [Path(root, ".data.keep-me"), Path(root, f".data.{os.getppid()}-0badc0de-1-1")]
    for f in foreign:
        f.write_bytes(b"mine")
    cli("checkout", ok=True)
    assert not stale.exists() and not (tmp / f"beside-{tag}").exists()
    assert not any(b.exists() for b in beside)
    assert live.exists() and all(f.exists() for f in foreign)
    assert not [n for n in os.listdir(tmp) if n.startswith("beside-")]  # ours went too


def test_sigkill_of_repro_removes_a_running_stage_container(project, cli) -> None:
    """The watchdog removes the container of a stage whose repro was killed outright."""
    from tests.test_containers import TAG, load_image

    pytest.importorskip("docker", reason="needs the 'docker' extra")
    from tests.docker_engine import Engine

    eng = Engine(str(Path(project.root).parent / "dk"))
    why = eng.start()
    if why:
        pytest.skip(f"no Docker engine can run here: {why}")
    try:
        import docker

        client = docker.DockerClient(base_url=eng.host, version="auto")
        load_image(client, TAG, "1")
        write(
            project.root,
            "repro.yaml",
            f"stages:\n  box:\n    cmd: touch started; sleep 30; echo > out.txt\n"
            f"    image: {TAG}\n    outs: [out.txt]\n",
        )
        p = subprocess.Popen(
            [sys.executable, "-m", "repro.cli", "run"],
            cwd=project.root,
            env={**os.environ, "CI": "1", "DOCKER_HOST": eng.host},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(Path(project.root, "started"), timeout=30)
        # dockerd's listing view can lag a just-started container by a moment under load.
        deadline = time.time() + 10
        while time.time() < deadline and not client.containers.list(
            all=True, filters={"label": "repro.stage=box"}
        ):
            time.sleep(0.1)
        assert client.containers.list(all=True, filters={"label": "repro.stage=box"})
        p.kill()
        p.wait(timeout=10)
        deadline = time.time() + 20
        while time.time() < deadline and client.containers.list(
            all=True, filters={"label": "repro.stage=box"}
        ):
            time.sleep(0.2)
        assert not client.containers.list(all=True, filters={"label": "repro.stage=box"})
    finally:
        eng.stop()
