"""The import layers in pyproject.toml ([tool.importlinter]) hold, and a new upward import,
even one inside a function, breaks them: what `make test` relies on to fail CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = str(Path(sys.executable).parent / "lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_its_layers() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_a_lazy_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "repro", tmp_path / "repro", ignore=shutil.ignore_patterns("__pycache__")
    )
    ws = tmp_path / "repro" / "workspace.py"
    ws.write_text(
        ws.read_text()
        + "\n\ndef _sneaky() -> None:\n    from repro.pipeline.runner import run  # noqa: F401\n"
    )
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "repro.workspace is not allowed to import repro.pipeline.runner" in done.stdout


def test_every_module_sits_in_a_layer() -> None:
    """A module no layer names is checked by nothing: a new one must be placed."""
    import tomllib

    import grimp

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    named = [n.strip() for layer in contract["layers"] for n in layer.replace(":", "|").split("|")]
    graph = grimp.build_graph("repro")
    packages = {"repro", "repro.execution", "repro.pipeline", "repro.hashing", "repro.store"}
    unplaced = sorted(
        m
        for m in graph.modules
        if m not in packages and not any(m == n or m.startswith(n + ".") for n in named)
    )
    assert unplaced == []
