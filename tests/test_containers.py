"""Containers and environments, against a real Docker engine that the tests start themselves.

Where no engine can start here, the engine tests are skipped with the reason; the rest (a stopped
engine's error, `repro env`, package-version diffs) run everywhere.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Result, write

TAG = "repro-test/busybox:v1"


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    pytest.importorskip("docker", reason="container tests need the 'docker' extra")
    from tests.docker_engine import Engine

    eng = Engine(str(tmp_path_factory.mktemp("dk")))
    why = eng.start()
    if why:
        pytest.skip(f"no Docker engine can run here: {why}")
    yield eng
    eng.stop()


@pytest.fixture
def dclient(engine):
    import docker

    return docker.DockerClient(base_url=engine.host, version="auto")


def load_image(client, tag: str, label: str) -> str:
    from tests.docker_engine import busybox_image_tar

    archive, image_id = busybox_image_tar(tag, label)
    client.images.load(io.BytesIO(archive).getvalue())
    client.images.get(image_id).tag(tag)
    return image_id


@pytest.fixture
def image(dclient) -> str:
    return load_image(dclient, TAG, "1")


def spec(cmd: str, image: str = TAG, extra: str = "") -> str:
    return (
        f"stages:\n  box:\n    cmd: '{cmd}'\n    image: {image}\n    deps: [in.txt]\n"
        f"    outs: [out.txt]\n{extra}"
    )


def test_image_archive_is_deterministic() -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    from tests.docker_engine import busybox_image_tar

    assert busybox_image_tar("a:b", "1")[1] == busybox_image_tar("a:b", "1")[1]
    assert busybox_image_tar("a:b", "1")[1] != busybox_image_tar("a:b", "2")[1]


def test_lock_resolves_tag_to_the_engines_digest(project, cli, engine, dclient, image) -> None:
    env = {"DOCKER_HOST": engine.host}
    write(project.root, "in.txt", "x")
    write(project.root, "repro.yaml", spec("cat in.txt > out.txt"))
    r = cli("lock", "--json", env=env, ok=True).json()
    assert r[TAG]["new"] == dclient.images.get(TAG).id == image
    lock = json.loads(Path(project.root, "repro.lock").read_text())
    assert lock["images"][TAG] == image


# A user who is not root: the tests run as root, where "the container ran as the user" and
# "the container ran as root" would look the same.
USER_UID, USER_GID = 4242, 4243


def run_as_user(args: list[str], cwd: str, env: dict) -> Result:
    """`repro ARGS` with real uid/gid USER_UID/USER_GID (what repro gives the container) and
    effective uid root (so the test's interpreter under /root can still be read)."""

    def become() -> None:
        os.setresgid(USER_GID, 0, 0)
        os.setresuid(USER_UID, 0, 0)

    p = subprocess.run(
        [sys.executable, "-m", "repro.cli", *args],
        cwd=cwd,
        env={**os.environ, "CI": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=become,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def test_stage_runs_inside_the_image_as_the_user(project, cli, engine, image) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run repro as another uid")
    env = {"DOCKER_HOST": engine.host, "MODE": "fast", "HOME": "/tmp/host-home-marker"}
    write(project.root, "in.txt", "payload")
    write(
        project.root,
        "repro.yaml",
        spec(
            'ls / > out.txt; echo "seed=$REPRO_SEED mode=$MODE home=$HOME" >> out.txt; '
            'cat in.txt >> out.txt; echo " uid=$(id -u)" >> out.txt; echo said-in-box',
            extra="    env: [MODE]\n",
        ),
    )
    os.chmod(project.root, 0o777)  # the user in the container writes out.txt here
    r = run_as_user(["run", "--json"], project.root, env)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["stages"][0]["status"] == "ran"
    out = Path(project.root, "out.txt")
    text = out.read_text()
    assert "usr" not in text.split()  # the image has no /usr: it ran inside
    assert "mode=fast" in text and "seed=" in text and "payload" in text
    assert "host-home-marker" not in text  # the host env was not passed wholesale
    assert f"uid={USER_UID}" in text.split()  # `id -u` inside the container
    # Outputs belong to the user, not to root (Docker's default user).
    assert (out.stat().st_uid, out.stat().st_gid) == (USER_UID, USER_GID)
    logs = cli("show", doc["run_id"], "--logs", "box", ok=True)
    assert "said-in-box" in logs.out
    show = cli("show", doc["snapshot"], "--json", ok=True).json()
    assert show["stages"]["box"]["image"] == image


def test_network_is_off_by_default(project, cli, engine, image) -> None:
    env = {"DOCKER_HOST": engine.host}
    write(project.root, "in.txt", "x")
    write(project.root, "repro.yaml", spec("ls /sys/class/net > out.txt"))
    cli("run", env=env, ok=True)
    assert Path(project.root, "out.txt").read_text().split() == ["lo"]


def test_same_signature_restores_without_starting_a_container(
    project, cli, engine, dclient, image
) -> None:
    env = {"DOCKER_HOST": engine.host}
    write(project.root, "in.txt", "one")
    write(project.root, "repro.yaml", spec("cat in.txt > out.txt"))
    cli("run", env=env, ok=True)
    write(project.root, "in.txt", "two")
    cli("run", env=env, ok=True)
    write(project.root, "in.txt", "one")
    t0 = time.time_ns()
    r = cli("run", "--json", env=env, ok=True).json()
    assert r["stages"][0]["status"] == "restored"
    events = dclient.events(
        since=t0 // 10**9 - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "event": "create"},
    )
    created = [e for e in events if e.get("timeNano", 0) >= t0]
    assert created == []
    assert Path(project.root, "out.txt").read_text() == "one"
    assert dclient.containers.list(all=True, filters={"label": "repro.stage"}) == []


def test_retagging_makes_the_stage_stale_with_both_digests(
    project, cli, engine, dclient, image
) -> None:
    env = {"DOCKER_HOST": engine.host}
    write(project.root, "in.txt", "x")
    write(project.root, "repro.yaml", spec("cat in.txt > out.txt"))
    cli("run", env=env, ok=True)
    assert cli("status", "--exit-code", env=env).code == 0
    other = load_image(dclient, TAG, "2")  # the tag now points elsewhere
    st = cli("status", "--json", env=env, ok=True).json()["stages"][0]
    assert st["state"] == "stale"
    assert {"kind": "image", "target": TAG, "old": image, "new": other} in st["reasons"]
    assert "repro lock --update" in cli("status", env=env).out
    # The run keeps to the locked digest until the lock is updated.
    assert cli("run", "--json", env=env, ok=True).json()["stages"][0]["status"] == "up-to-date"
    cli("lock", "--update", env=env, ok=True)
    assert cli("run", "--json", env=env, ok=True).json()["stages"][0]["status"] == "ran"
    load_image(dclient, TAG, "1")


def test_missing_image_is_one_clear_sentence(project, cli, engine) -> None:
    env = {"DOCKER_HOST": engine.host}
    write(project.root, "in.txt", "x")
    write(project.root, "repro.yaml", spec("true", image="repro-test/absent:v0"))
    r = cli("run", env=env)
    assert r.code == 1 and "'box'" in r.err and "repro-test/absent:v0" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert (
        not Path(project.root, "repro.lock").exists()
        or "box" not in json.loads(Path(project.root, "repro.lock").read_text())["stages"]
    )


def test_stopped_engine_is_one_clear_sentence(project, cli, tmp_path) -> None:
    pytest.importorskip("docker", reason="needs the 'docker' extra")
    write(project.root, "in.txt", "x")
    write(project.root, "repro.yaml", spec("true"))
    r = cli("run", env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert r.code == 1 and "no Docker engine answers" in r.err and "Traceback" not in r.err


def fake_dist(site: Path, name: str, version: str) -> None:
    for old in site.glob(f"{name}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    d = site / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_env_and_package_version_diff(project, cli, tmp_path) -> None:
    site = tmp_path / "site"
    fake_dist(site, "fakepkg", "2.3.1")
    env = {"PYTHONPATH": str(site)}
    doc = cli("env", "--json", env=env, ok=True).json()
    assert doc["packages"]["fakepkg"] == "2.3.1" and doc["python"]
    write(
        project.root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo hi > o\n    outs: [o]\n"
        "    environment:\n      packages: [fakepkg]\n",
    )
    a = cli("run", "--json", env=env, ok=True).json()["snapshot"]
    fake_dist(site, "fakepkg", "2.4.6")
    st = cli("status", "--json", env=env, ok=True).json()["stages"][0]
    assert st["reasons"] == [{"kind": "env", "target": "fakepkg", "old": "2.3.1", "new": "2.4.6"}]
    b = cli("run", "--json", env=env, ok=True).json()["snapshot"]
    d = cli("diff", a, b, "--json", env=env, ok=True).json()
    ch = d["stages"][0]["changes"]
    assert ch == [
        {"kind": "env", "target": "fakepkg", "old": "2.3.1", "new": "2.4.6", "severity": "major"}
    ]
    assert "fakepkg: 2.3.1 -> 2.4.6" in cli("diff", a, b, env=env, ok=True).out


def test_environment_fingerprint_is_taken_inside_the_image(project, cli, engine, image) -> None:
    env = {"DOCKER_HOST": engine.host}
    write(project.root, "in.txt", "x")
    write(
        project.root,
        "repro.yaml",
        spec(
            "cat in.txt > out.txt",
            extra="    environment:\n      python: true\n      packages: [xxhash]\n",
        ),
    )
    r = cli("run", "--json", env=env, ok=True).json()
    show = cli("show", r["snapshot"], "--json", ok=True).json()
    # busybox has no Python: the host's Python and xxhash must not be what was recorded.
    assert show["stages"]["box"]["environment"] == {"python": None, "packages": {"xxhash": None}}
