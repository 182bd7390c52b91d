"""Packaging: the distribution's name is ours (not the unrelated `repro` on the public index), the
extras fit together, and a build of the package prints no setuptools warning and carries the
license, the extras and the `repro` command."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAME = "repro-engine"


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _self_refs(reqs: list[str]) -> list[tuple[str, set[str]]]:
    """(distribution, extras) of each requirement that names extras in brackets."""
    out = []
    for req in reqs:
        m = re.match(r"^([A-Za-z0-9_.-]+)\[([^\]]+)\]", req)
        if m:
            out.append((m.group(1), {e.strip() for e in m.group(2).split(",")}))
    return out


def test_distribution_name_and_license(project: dict) -> None:
    assert project["name"] == NAME  # `repro` there is another project: pip -U would replace us
    assert project["scripts"] == {"repro": "repro.cli:main"}  # the command keeps its name
    assert project["license"] == "Apache-2.0"  # an SPDX string, not the deprecated table
    for pattern in project["license-files"]:
        assert list(ROOT.glob(pattern)), f"license file {pattern} is missing"


def test_extras_refer_to_this_distribution(project: dict) -> None:
    """An extra that names `repro[...]` would install the unrelated project: every extra that
    pulls in other extras names this distribution, and only extras that exist."""
    extras = project["optional-dependencies"]
    for extra, reqs in extras.items():
        for dist, names in _self_refs(reqs):
            if dist.lower().replace("_", "-") in ("repro", NAME):
                assert dist == NAME, f"[{extra}] refers to {dist}[...]"
                assert names <= set(extras), f"[{extra}] names unknown extras {names - set(extras)}"


def _expand(extras: dict, name: str) -> set[str]:
    """Every requirement an extra brings, its nested extras expanded."""
    out: set[str] = set()
    for req in extras[name]:
        refs = [(d, n) for d, n in _self_refs([req]) if d == NAME]
        if refs:
            for nested in refs[0][1]:
                out |= _expand(extras, nested)
        else:
            out.add(re.split(r"[<>=\[ ;]", req, maxsplit=1)[0].lower())
    return out


def test_dev_has_all_and_demo_has_only_what_the_demo_needs(project: dict) -> None:
    extras = project["optional-dependencies"]
    dev, demo = _expand(extras, "dev"), _expand(extras, "demo")
    assert _expand(extras, "all") <= dev  # DESIGN.md: dev is tests, linters and `all`
    assert {"mkdocs", "mkdocs-material"} <= dev
    # The demo: the example's libraries and `repro report`, none of the slow heavy installs.
    assert {"scikit-learn", "numpy", "vl-convert-python"} <= demo
    heavy = {"moto", "pyarrow", "docker", "ruff", "mlflow", "s3fs", "playwright", "dask"}
    assert not demo & heavy, f"the demo would install {demo & heavy}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: \$\(DEMO_STAMP\)", makefile, re.M)
    assert "DEMO_STAMP := $(VENV)/.installed-demo" in makefile  # installs '.[demo]'


def test_build_has_no_setuptools_warning_and_right_metadata(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources (the work tree stays untouched), as pip does
    on `make demo`'s first run: no warning from the build backend, and the metadata says who
    we are."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "repro", src / "repro", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0 and "No matching distribution found for setuptools" in r.stderr:
        pytest.skip("no package index reachable for the isolated build's setuptools")
    assert r.returncode == 0, r.stderr[-3000:]
    backend = [ln for ln in r.stderr.splitlines() if "Warning" in ln and "Location" not in ln]
    assert not backend, "\n".join(backend)
    (wheel,) = (tmp_path / "w").glob("*.whl")
    assert wheel.name.startswith("repro_engine-")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_string(z.read(meta_name).decode())
        entry = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert meta["Name"] == NAME
    assert meta["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in meta.get_all("License-File")
    assert {"demo", "docs", "dev", "all"} <= set(meta.get_all("Provides-Extra"))
    assert re.search(r"^repro = repro\.cli:main$", entry, re.M)
    assert any(n.startswith("repro/") for n in names)  # the import package keeps its name
