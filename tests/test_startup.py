"""Start-up is part of speed: the everyday commands must not import heavy modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import write

HEAVY = {
    "networkx",
    "s3fs",
    "docker",
    "dask",
    "fsspec",
    "pyarrow",
    "boto3",
    "botocore",
    "pydantic",
    "ruamel",
}

PROBE = """
import json, sys
sys.argv = ["repro", *sys.argv[1:]]
import repro.cli as c
try:
    c.app(standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)
"""


def loaded(args: list[str], cwd: str) -> set[str]:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    return set(json.loads(p.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["--help"], ["status"], ["run"]])
def test_everyday_commands_import_nothing_heavy(project, args) -> None:
    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: echo > o\n    outs: [o]\n")
    if args == ["run"] or args == ["status"]:
        subprocess.run(
            [sys.executable, "-m", "repro.cli", "run"],
            cwd=project.root,
            check=True,
            capture_output=True,
        )  # first run parses repro.yaml; later ones do not
    assert loaded(args, project.root) & HEAVY == set()


MAIN_PROBE = """
import json, sys
sys.argv = ["repro", *sys.argv[1:]]
import repro.cli as c
try:
    c.main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)
"""
CLI_TOOLKITS = {"typer", "click", "rich"}


def loaded_by_main(args: list[str], cwd: str, env: dict[str, str] | None = None) -> set[str]:
    """Top-level modules loaded after `repro ARGS` ran through `repro.cli.main` (as the
    `repro` script does), piped as in a script."""
    p = subprocess.run(
        [sys.executable, "-c", MAIN_PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CI": "1", **(env or {})},
    )
    return set(json.loads(p.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["run"], ["run", "--json"], ["--version"]]
)
def test_status_and_a_no_op_run_import_no_cli_toolkit(project, args) -> None:
    """The fast path (repro/cli_fast.py) answers these without typer, click or rich; the
    same command with REPRO_NO_FAST=1 goes through typer (so the probe can tell)."""
    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: echo > o\n    outs: [o]\n")
    subprocess.run(
        [sys.executable, "-m", "repro.cli", "run"],
        cwd=project.root,
        check=True,
        capture_output=True,
    )
    assert loaded_by_main(args, project.root) & (CLI_TOOLKITS | HEAVY) == set()
    assert "typer" in loaded_by_main(args, project.root, {"REPRO_NO_FAST": "1"})
