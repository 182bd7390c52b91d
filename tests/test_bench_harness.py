"""The benchmark harness itself (benchmarks/): the counting S3 server, the table it writes
without DVC, the import-time parser and the repetition budget. The benchmarks' figures are
not tested here (big data belongs in benchmarks/); only that the meter reads right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.issue15 import Ctx, import_times, medians

ROOT = Path(__file__).resolve().parent.parent


def test_counting_server_counts_requests_and_bytes_both_ways() -> None:
    s3fs = pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from benchmarks.moto_counting import CountingMoto

    env = {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with CountingMoto() as server:
            fs = s3fs.S3FileSystem(endpoint_url=server.url, skip_instance_cache=True)
            fs.mkdir("bench-bucket")
            server.reset()
            fs.pipe("bench-bucket/obj", b"x" * 100_000)
            up = server.reset()
            assert up.by_method.get("PUT", 0) >= 1
            assert 100_000 <= up.bytes_in < 110_000
            assert fs.cat("bench-bucket/obj") == b"x" * 100_000
            down = server.counts()
            assert down.bytes_in == 0 and down.bytes_out >= 100_000
            assert down.requests >= 1
            assert server.reset().requests == down.requests  # the /__counts calls are not counted
            assert server.counts().requests == 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_table_without_dvc_says_na_and_keeps_every_row(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    env = {**os.environ, "REPRO_BENCH_DVC": str(tmp_path / "no-dvc-here"), "PATH": "/usr/bin:/bin"}
    env.pop("REPRO_BENCH_REPRO", None)
    args = ["--only", "add", "--only", "chain", "--files-20k", "40", "--repeat", "1"]
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    rows = {r["workload"]: r for r in doc["table"]}
    assert set(rows) == {"add (cold cache)", "no-op run, 50-stage chain", "status, 50-stage chain"}
    for r in rows.values():
        assert r["repro"] > 0 and r["dvc"] is None and r["ratio"] is None and r["met"] is None
    assert "imports (status): repro.*" in rows["no-op run, 50-stage chain"]["notes"]
    imports = doc["details"]["chain"]["imports"]
    assert 0 < imports["repro_s"] < imports["total_s"]
    md = out.with_suffix(".md").read_text()
    add = next(line for line in md.splitlines() if line.startswith("| add (cold cache)"))
    cells = [c.strip() for c in add.strip("|").split("|")]
    assert cells[1] == "40 × 4 KiB" and cells[3] == "n/a" and cells[4] == "n/a"
    assert "create the files" in cells[7]


def test_import_times_sums_self_times_of_repro_modules() -> None:
    err = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |   encodings\n"
        "import time:      2000 |       2500 |     repro.cli_fast\n"
        "import time:       500 |       3000 |   repro\n"
        "import time:      1400 |       1400 | reprolike\n"
    )
    own, total = import_times(err)
    assert own == pytest.approx(0.0025) and total == pytest.approx(0.004)


def test_medians_stop_repeating_past_the_budget(tmp_path: Path) -> None:
    def once() -> dict[str, float]:
        time.sleep(0.05)
        return {"s": 1.0}

    assert medians(Ctx(str(tmp_path), repeat=3, budget=0), once)["n"] == 3
    assert medians(Ctx(str(tmp_path), repeat=3, budget=0.06), once)["n"] == 1
    values = iter([3.0, 1.0, 2.0])
    assert medians(Ctx(str(tmp_path), repeat=3, budget=0), lambda: {"s": next(values)})["s"] == 2.0
