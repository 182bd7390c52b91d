"""A real Docker engine for the tests, started by the tests (see ../shared/containers.md).

`dockerd` runs in a private folder with the network flags that leave the host's iptables and
bridges alone; containers can only use `network_mode="none"`, which is what sealed stages want.
Test images are built from Debian's static busybox into a `docker load` tarball with a fixed
creation time, so they have the same image id (a real content digest) on every machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

APPLETS = [
    "sh",
    "cat",
    "echo",
    "id",
    "ls",
    "mkdir",
    "cp",
    "sleep",
    "wc",
    "tr",
    "touch",
    "env",
    "head",
    "printf",
    "rm",
    "date",
    "true",
    "false",
    "test",
    "stat",
]


def ensure_packages() -> str | None:
    """Install the engine with apt when it is missing (root only). Returns a reason on failure."""
    if shutil.which("dockerd") and os.path.exists("/bin/busybox"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "dockerd is not installed and this user cannot install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        [
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "docker.io",
            "busybox-static",
        ],
    ):
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            return f"installing docker.io failed: {p.stderr.strip().splitlines()[-1:]}"
    return None


class Engine:
    def __init__(self, root: str) -> None:
        self.root = root
        self.sock = os.path.join(root, "docker.sock")
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 30.0) -> str | None:
        """Start dockerd; returns a reason when it cannot run here."""
        why = ensure_packages()
        if why:
            return why
        os.makedirs(self.root, exist_ok=True)
        log = open(os.path.join(self.root, "dockerd.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                f"{self.root}/data",
                "--exec-root",
                f"{self.root}/exec",
                "--pidfile",
                f"{self.root}/dockerd.pid",
                "-H",
                self.host,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import docker

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                tail = Path(self.root, "dockerd.log").read_bytes()[-300:]
                return f"dockerd exited ({tail.decode(errors='replace').strip()})"
            try:
                docker.DockerClient(base_url=self.host, version="auto").ping()
                return None
            except Exception:
                time.sleep(0.1)
        self.stop()
        return "dockerd did not answer within 30 s"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _tar_add(
    tar: tarfile.TarFile,
    name: str,
    data: bytes | None = None,
    mode: int = 0o755,
    link: str | None = None,
    is_dir: bool = False,
) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if is_dir:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif link is not None:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
        tar.addfile(info)
    else:
        info.size, info.mode = len(data or b""), mode
        tar.addfile(info, io.BytesIO(data or b""))


def busybox_image_tar(tag: str, label: str = "1") -> tuple[bytes, str]:
    """A `docker load` archive of a busybox image; returns (archive, image id). The same tag and
    label give the same id everywhere."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as t:
        _tar_add(t, "bin", is_dir=True)
        with open("/bin/busybox", "rb") as f:
            _tar_add(t, "bin/busybox", f.read())
        for a in APPLETS:
            _tar_add(t, f"bin/{a}", link="busybox")
        _tar_add(t, "tmp", is_dir=True)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"repro.test": label}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "repro tests"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    layer_dir = diff_id.split(":")[1]
    manifest = [
        {
            "Config": f"{image_id.split(':')[1]}.json",
            "RepoTags": [tag],
            "Layers": [f"{layer_dir}/layer.tar"],
        }
    ]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
        _tar_add(t, f"{layer_dir}", is_dir=True)
        _tar_add(t, f"{layer_dir}/layer.tar", layer_bytes, 0o644)
        _tar_add(t, f"{image_id.split(':')[1]}.json", config_bytes, 0o644)
        _tar_add(t, "manifest.json", json.dumps(manifest).encode(), 0o644)
    return out.getvalue(), image_id
