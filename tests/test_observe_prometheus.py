"""The `prometheus` observer, end to end: the CLI runs a real pipeline, the metrics file is read
back with prometheus_client's own parser and checked against `run --json` and repro.lock; a
real Pushgateway (Debian's prometheus-pushgateway) receives the push."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import one_error, write

pytest.importorskip("prometheus_client", reason="needs the 'prometheus' extra (prometheus_client)")

PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"
PIPELINE = """\
stages:
  prep:
    cmd: python3 -c "open('data.txt','w').write('x'*300)"
    outs: [data.txt]
  train:
    cmd: python3 -c "open('model.bin','w').write(open('data.txt').read()*2)"
    deps: [data.txt]
    outs: [model.bin]
"""


def _config(root: Path, table: str) -> None:
    write(root, ".repro/config.toml", f'[observe]\nuse = ["prometheus"]\n\n{table}')


def _metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels without project): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "project"))
            out[(s.name, labels)] = s.value
    return out


def _by_outcome(m: dict, outcome: str) -> float:
    return m[("repro_last_run_stages", (("outcome", outcome),))]


def test_textfile_follows_runs_and_keeps_last_success(project, cli):
    root = Path(project.root)
    write(root, "repro.yaml", PIPELINE)
    _config(root, '[observe.prometheus]\ntextfile = "monitoring/repro.prom"\n')
    prom = root / "monitoring" / "repro.prom"

    before = time.time()
    first = cli("run", "--json", ok=True).json()
    m = _metrics(prom.read_text())
    statuses = [s["status"] for s in first["stages"]]
    assert statuses == ["ran", "ran"]
    assert _by_outcome(m, "ran") == 2 and _by_outcome(m, "up-to-date") == 0
    assert m[("repro_last_run_cache_misses", ())] == 2
    assert m[("repro_last_run_cache_hits", ())] == 0
    assert m[("repro_last_run_failures", ())] == 0
    assert m[("repro_last_run_success", ())] == 1
    for name in ("prep", "train"):
        assert m[("repro_stage_duration_seconds", (("stage", name),))] > 0
    lock = json.loads((root / "repro.lock").read_text())["stages"]
    sizes = {n: sum(o["size"] for o in e["outs"].values()) for n, e in lock.items()}
    assert sizes == {"prep": 300, "train": 600}
    for name, size in sizes.items():
        assert m[("repro_stage_output_bytes", (("stage", name),))] == size
    assert m[("repro_last_run_output_bytes", ())] == 900
    success1 = m[("repro_last_success_timestamp_seconds", ())]
    assert before <= success1 <= time.time()
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in prom.parent.iterdir()] == ["repro.prom"]  # no temporary left over

    second = cli("run", "--json", ok=True).json()
    assert [s["status"] for s in second["stages"]] == ["up-to-date", "up-to-date"]
    m = _metrics(prom.read_text())
    assert m[("repro_last_run_cache_hits", ())] == 2
    assert m[("repro_last_run_cache_misses", ())] == 0
    assert m[("repro_last_run_output_bytes", ())] == 0
    success2 = m[("repro_last_success_timestamp_seconds", ())]
    assert success2 > success1

    # A failing run: failure counted, last success kept from the run before.
    spec = PIPELINE.replace('*2)"', '*2); raise SystemExit(3)"')
    write(root, "repro.yaml", spec)
    r = cli("run", "--json")
    assert r.code != 0
    assert [s["status"] for s in r.json()["stages"]] == ["up-to-date", "failed"]
    m = _metrics(prom.read_text())
    assert m[("repro_last_run_success", ())] == 0
    assert m[("repro_last_run_failures", ())] == 1
    assert _by_outcome(m, "failed") == 1 and _by_outcome(m, "up-to-date") == 1
    assert m[("repro_last_run_cache_misses", ())] == 1
    assert m[("repro_last_success_timestamp_seconds", ())] == success2


def test_machine_textfile_folder_from_environment(project, cli, tmp_path):
    root = Path(project.root)
    write(root, "repro.yaml", PIPELINE)
    _config(root, "")
    collector = tmp_path / "node_exporter"
    collector.mkdir()
    r = cli("run", env={"REPRO_PROMETHEUS_TEXTFILE": str(collector)}, ok=True)
    assert "nowhere to write" not in r.err
    text = (collector / f"repro_{root.name}.prom").read_text()
    assert f'repro_last_run_success{{project="{root.name}"}} 1.0' in text

    # Without any destination the user is told, and the run is not affected.
    r = cli("run", "--force", ok=True)
    assert "observer 'prometheus' has nowhere to write" in r.err


def test_committed_textfile_is_held_to_the_project(project, cli, outside):
    root = Path(project.root)
    write(root, "repro.yaml", PIPELINE)
    _config(root, '[observe.prometheus]\ntextfile = "../outside/x.prom"\n')
    err = one_error(cli("status"))
    assert "observe.prometheus.textfile" in err

    os.symlink(outside, root / "monitoring")
    _config(root, '[observe.prometheus]\ntextfile = "monitoring/x.prom"\n')
    r = cli("run", "--json", ok=True)
    assert [s["status"] for s in r.json()["stages"]] == ["ran", "ran"]
    warnings = [ln for ln in r.err.splitlines() if "prometheus" in ln]
    assert len(warnings) == 1 and "symlink" in warnings[0], r.err
    assert sorted(os.listdir(outside)) == ["victim.txt"]

    _config(root, '[observe.prometheus]\npushgateway = "file:///etc/passwd"\n')
    assert "observe.prometheus.pushgateway" in one_error(cli("status"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pushgateway_down_or_silent_never_holds_the_run(project, cli):
    root = Path(project.root)
    write(root, "repro.yaml", PIPELINE)
    _config(root, f'[observe.prometheus]\npushgateway = "http://127.0.0.1:{_free_port()}"\n')
    r = cli("run", "--json", ok=True)
    assert [s["status"] for s in r.json()["stages"]] == ["ran", "ran"]
    lines = [ln for ln in r.err.splitlines() if "Pushgateway" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning:"), r.err

    # A gateway that accepts the connection and never answers: bounded by `timeout`.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        table = f'pushgateway = "http://127.0.0.1:{port}"\ntimeout = 1\n'
        _config(root, f"[observe.prometheus]\n{table}")
        t0 = time.monotonic()
        r = cli("run", "--force", ok=True)
        assert time.monotonic() - t0 < 10
    assert "could not push to the Pushgateway" in r.err


@pytest.fixture(scope="module")
def pushgateway():
    if not os.path.exists(PUSHGATEWAY):
        pytest.skip(f"{PUSHGATEWAY} is missing (Debian package prometheus-pushgateway)")
    port = _free_port()
    proc = subprocess.Popen(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("prometheus-pushgateway did not start within 20 s")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pushgateway_receives_the_run(project, cli, pushgateway):
    root = Path(project.root)
    write(root, "repro.yaml", PIPELINE)
    _config(root, f'[observe.prometheus]\npushgateway = "{pushgateway}"\njob = "nightly"\n')
    result = cli("run", "--json", ok=True).json()
    assert "warning" not in cli("run", "--json", ok=True).err  # a second push replaces the first

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    ours = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("repro_"):
                assert s.labels["job"] == "nightly"
                assert s.labels["project"] == root.name
                key = (s.name, s.labels.get("stage") or s.labels.get("outcome"))
                ours[key] = s.value
    assert len(result["stages"]) == 2
    assert ours[("repro_last_run_cache_hits", None)] == 2  # the second run: all up to date
    assert ours[("repro_last_run_stages", "up-to-date")] == 2
    assert ours[("repro_last_run_success", None)] == 1
    assert ("repro_stage_duration_seconds", "train") in ours
    assert ours[("repro_last_success_timestamp_seconds", None)] > 0
