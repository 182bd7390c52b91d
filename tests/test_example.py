"""The example ML pipeline (examples/iris) end to end, as `make demo` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_demo_script_runs_the_iris_pipeline(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the example needs the 'examples' extra (scikit-learn)")
    work = tmp_path / "demo"
    env = {
        **os.environ,
        "DEMO_DIR": str(work),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    p = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "train: restored from cache" in out and "evaluate: restored from cache" in out
    assert "train: ran (deterministic)" in out
    # Second run: nothing ran.
    noop = out.split("nothing changed: nothing runs")[1].split("==")[0]
    assert "ran" not in noop and noop.count("up to date") == 4
    metrics = json.loads((work / "metrics.json").read_text())
    assert 0.8 <= metrics["accuracy"] <= 1.0
