"""The environment fingerprint describes the interpreter the stage runs, not repro's own.

A real second virtualenv (`python -m venv --without-pip`) gets a small local package,
`reprotestpkg`, installed the way an installer leaves it (a module and a `*.dist-info` folder
in site-packages); repro itself runs from its own venv, which lacks that package.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write

PKG = "reprotestpkg"


def make_venv(where: Path) -> Path:
    """A real virtualenv at `where` (no pip, no network); returns its site-packages."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60
    )
    return next(where.glob("lib/python*/site-packages"))


def install(site: Path, version: str) -> None:
    """Install (or upgrade to) `reprotestpkg==version` as pip would leave it: the old
    dist-info folder goes, the module and a new dist-info folder come."""
    for old in site.glob(f"{PKG}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    (site / f"{PKG}.py").write_text(f"VERSION = {version!r}\n")
    d = site / f"{PKG}-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PKG}\nVersion: {version}\n")
    (d / "RECORD").write_text(f"{PKG}.py,,\n")


USE = "import reprotestpkg\nopen('o.txt', 'w').write(reprotestpkg.VERSION)\n"


def stage_yaml(cmd: str, environment: str) -> str:
    return (
        f"stages:\n  s:\n    cmd: {cmd}\n    deps: [use.py]\n    outs: [o.txt]\n"
        f"    environment: {environment}\n"
    )


def env_reasons(cli, env: dict | None = None) -> list[dict]:
    st = cli("status", "--json", env=env, ok=True).json()["stages"][0]
    return [r for r in st["reasons"] if r["kind"] == "env"] if st["state"] == "stale" else []


def test_upgrade_in_the_stages_venv_makes_it_stale(project, cli) -> None:
    assert importlib.util.find_spec(PKG) is None  # repro's own venv lacks it
    site = make_venv(Path(project.root) / ".venv")
    install(site, "1.0")
    write(project.root, "use.py", USE)
    write(
        project.root,
        "repro.yaml",
        stage_yaml(".venv/bin/python use.py", "{python: true, packages: [reprotestpkg]}"),
    )
    run = cli("run", "--json", ok=True).json()
    assert run["stages"][0]["status"] == "ran"
    assert Path(project.root, "o.txt").read_text() == "1.0"
    show = cli("show", run["snapshot"], "--json", ok=True).json()
    recorded = show["stages"]["s"]["environment"]
    assert recorded["packages"] == {PKG: "1.0"}  # not null: the stage's venv was probed
    assert recorded["python"] == f"{sys.version_info.major}.{sys.version_info.minor}." + str(
        sys.version_info.micro
    )
    assert PKG not in cli("env", "--json", ok=True).json()["packages"]
    assert cli("status", "--exit-code").code == 0

    install(site, "1.1")
    assert cli("status", "--exit-code").code == 1
    assert env_reasons(cli) == [{"kind": "env", "target": PKG, "old": "1.0", "new": "1.1"}]
    cli("run", ok=True)
    assert Path(project.root, "o.txt").read_text() == "1.1"
    assert cli("status", "--exit-code").code == 0


def test_interpreter_found_on_the_stages_path_or_named(project, cli, tmp_path) -> None:
    site = make_venv(tmp_path / "venv")
    install(site, "1.0")
    write(project.root, "use.py", USE)
    path_env = {"PATH": f"{tmp_path / 'venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    # `python` on the PATH the stage gets.
    write(project.root, "repro.yaml", stage_yaml("python use.py", "{packages: [reprotestpkg]}"))
    cli("run", env=path_env, ok=True)
    assert cli("status", "--exit-code", env=path_env).code == 0
    # Without the venv on the PATH, the stage would run another Python: stale, and says why.
    assert env_reasons(cli) == [{"kind": "env", "target": PKG, "old": "1.0", "new": None}]

    # A command that starts with another program: `environment.python` names the interpreter.
    venv_py = str(tmp_path / "venv" / "bin" / "python")
    write(
        project.root,
        "repro.yaml",
        stage_yaml(f"sh -c '{venv_py} use.py'", f"{{python: {venv_py}, packages: [reprotestpkg]}}"),
    )
    r = cli("run", "--json", ok=True).json()
    show = cli("show", r["snapshot"], "--json", ok=True).json()
    assert show["stages"]["s"]["environment"]["packages"] == {PKG: "1.0"}

    # A named interpreter that is not there: one sentence naming the stage and key.
    write(
        project.root,
        "repro.yaml",
        stage_yaml("python use.py", "{python: env2/bin/python, packages: [reprotestpkg]}"),
    )
    bad = cli("status")
    assert bad.code not in (0, 70) and "Traceback" not in bad.err
    assert "stage 's'" in bad.err and "env2/bin/python" in bad.err


def test_unchanged_env_is_not_probed_again(project, cli, tmp_path) -> None:
    site = make_venv(tmp_path / "venv")
    install(site, "1.0")
    log = tmp_path / "probes.log"
    wrap = write(
        project.root,
        "wrap/python3",
        f'#!/bin/sh\necho x >> {log}\nexec {tmp_path / "venv" / "bin" / "python"} "$@"\n',
    )
    wrap.chmod(0o755)
    write(project.root, "use.py", USE)
    write(
        project.root, "repro.yaml", stage_yaml("wrap/python3 use.py", "{packages: [reprotestpkg]}")
    )
    cli("run", ok=True)
    calls = log.read_text().count("x")
    assert calls >= 2  # one probe, one run of the stage
    for _ in range(2):
        assert cli("status", "--exit-code").code == 0
        assert cli("run", "--json", ok=True).json()["stages"][0]["status"] == "up-to-date"
    assert log.read_text().count("x") == calls  # a few stats, no subprocess
    install(site, "1.1")
    assert env_reasons(cli) == [{"kind": "env", "target": PKG, "old": "1.0", "new": "1.1"}]
    assert log.read_text().count("x") == calls + 1  # the upgrade is seen: probed once more


REQS_A = """\
# generated by pip-compile
numpy==1.26.4 \\
    --hash=sha256:aaa \\
    --hash=sha256:bbb
pandas==2.2.0 --hash=sha256:ccc
--index-url https://pypi.org/simple
"""
REQS_B = """\
--extra-index-url https://mirror.example/simple
pandas==2.2.0    --hash=sha256:ccc   # via -r requirements.in

# generated again, 2026-11-24
numpy==1.26.4 --hash=sha256:bbb --hash=sha256:aaa
"""
UV_A = """\
version = 1
requires-python = ">=3.11"

[[package]]
name = "numpy"
version = "1.26.4"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://x/numpy-1.26.4.tar.gz", hash = "sha256:s1" }
wheels = [
    { url = "https://x/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", hash = "sha256:lx" },
    { url = "https://x/numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.whl", hash = "sha256:la" },
    { url = "https://x/numpy-1.26.4-cp311-cp311-macosx_11_0_arm64.whl", hash = "sha256:ma" },
    { url = "https://x/numpy-1.26.4-cp311-cp311-win_amd64.whl", hash = "sha256:wi" },
]
"""
CONDA_LOCK = """\
version: 1
metadata:
  content_hash: {{linux-64: abc}}
  timestamp: {ts}
package:
- name: python
  version: 3.11.7
  manager: conda
  platform: linux-64
  url: https://conda/linux-64/python-3.11.7.conda
  hash: {{md5: m1, sha256: {linux}}}
- name: python
  version: 3.11.7
  manager: conda
  platform: osx-arm64
  url: https://conda/osx-arm64/python-3.11.7.conda
  hash: {{md5: m2, sha256: {osx}}}
"""


def test_lock_files_count_by_what_they_resolve_to(project, cli) -> None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        pytest.skip("the lock files below name linux-64 as this platform")
    write(project.root, "requirements.txt", REQS_A)
    write(project.root, "uv.lock", UV_A)
    write(project.root, "conda-lock.yml", CONDA_LOCK.format(ts=1, linux="l1", osx="o1"))
    write(project.root, "poetry.lock", "this is = = not TOML [[[")
    write(
        project.root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: echo hi > o.txt\n    outs: [o.txt]\n"
        "    environment: {lockfiles: [requirements.txt, uv.lock, conda-lock.yml, poetry.lock]}\n",
    )
    cli("run", ok=True)
    # Re-locks that change nothing real: comments, order, whitespace, index options, timestamps,
    # and artifacts for other platforms.
    write(project.root, "requirements.txt", REQS_B)
    uv = UV_A.replace("sha256:ma", "sha256:ma2").replace("sha256:wi", "sha256:wi2")
    write(project.root, "uv.lock", "# relocked\n" + uv)
    write(project.root, "conda-lock.yml", CONDA_LOCK.format(ts=2, linux="l1", osx="o2"))
    assert cli("status", "--exit-code").code == 0

    # Real changes: a new hash for this platform, a new version.
    write(project.root, "uv.lock", uv.replace("sha256:lx", "sha256:lx2"))
    write(project.root, "requirements.txt", REQS_B.replace("pandas==2.2.0", "pandas==2.2.1"))
    write(project.root, "conda-lock.yml", CONDA_LOCK.format(ts=2, linux="l2", osx="o2"))
    targets = {r["target"] for r in env_reasons(cli)}
    assert targets == {"uv.lock", "requirements.txt", "conda-lock.yml"}

    # An unparseable lock file counts by its bytes, with no crash.
    cli("run", ok=True)
    write(project.root, "poetry.lock", "this is = = still not TOML [[[")
    assert {r["target"] for r in env_reasons(cli)} == {"poetry.lock"}
