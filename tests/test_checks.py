"""Observer agents per stage: `observe:` checks in repro.yaml, through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import one_error, snapshot_tree, write

TRAIN = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py]
    outs: [model.pkl]
    metrics: [metrics.json]
    observe:
{checks}
  report:
    cmd: cp model.pkl report.txt
    deps: [model.pkl]
    outs: [report.txt]
"""
TRAIN_PY = (
    "import json, os\n"
    "json.dump({'accuracy': float(os.environ.get('ACC', '0.71')), 'eval': {'loss': 0.3}},"
    " open('metrics.json', 'w'))\n"
    "open('model.pkl', 'w').write('model')\n"
)
FLOOR = """\
      - name: accuracy floor
        metric: metrics.json:accuracy
        min: {min}
"""


def setup(root: str, checks: str) -> None:
    write(root, "train.py", TRAIN_PY)
    write(root, "repro.yaml", TRAIN.format(checks=checks.rstrip("\n")))


def statuses(r) -> dict[str, str]:
    return {s["name"]: s["status"] for s in r.json()["stages"]}


def stage_entry(r, name: str) -> dict:
    return next(s for s in r.json()["stages"] if s["name"] == name)


def run_cache(root: str) -> list[str]:
    d = Path(root, ".repro", "cache", "runs")
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def last_run(cli) -> dict:
    run_id = cli("log", "--json", ok=True).json()[0]["run_id"]
    return cli("show", run_id, "--json", ok=True).json()


def test_metric_bound_passes_and_is_recorded(project, cli) -> None:
    setup(project.root, FLOOR.format(min=0.7) + "        max: 0.99\n")
    r = cli("run", "--json", ok=True)
    assert statuses(r) == {"train": "ran", "report": "ran"}
    (check,) = stage_entry(r, "train")["checks"]
    assert check["ok"] is True and check["name"] == "accuracy floor"
    assert check["kind"] == "metric" and check["severity"] == "major"
    assert check["message"] == "accuracy 0.71 >= min 0.7 and <= max 0.99"
    assert "checks" not in stage_entry(r, "report")  # a stage without checks: shape unchanged
    rec = last_run(cli)
    (recorded,) = next(s for s in rec["stages"] if s["name"] == "train")["checks"]
    assert recorded == check
    # The text form of `show` lists them too.
    text = cli("show", rec["run_id"], ok=True).out
    assert "accuracy floor" in text and "accuracy 0.71 >= min 0.7" in text


def test_metric_bound_failing_fails_the_stage_and_records_nothing(project, cli) -> None:
    setup(project.root, FLOOR.format(min=0.5))
    cli("run", ok=True)
    lock_before = Path(project.root, "repro.lock").read_bytes()
    cache_before = run_cache(project.root)
    # A new result that misses the floor: failed, downstream skipped, nothing recorded.
    write(project.root, "train.py", TRAIN_PY.replace("'0.71'", "'0.41'"))
    r = cli("run", "--json")
    assert r.code == 1
    assert statuses(r) == {"train": "failed", "report": "skipped"}
    assert one_error(r) == (
        "error: stage 'train': check 'accuracy floor' failed: accuracy 0.41 < min 0.5"
    )
    assert Path(project.root, "repro.lock").read_bytes() == lock_before
    assert run_cache(project.root) == cache_before
    (check,) = stage_entry(r, "train")["checks"]
    assert check["ok"] is False
    rec = last_run(cli)
    assert rec["status"] == "failed" and rec["snapshot"] is None
    train = next(s for s in rec["stages"] if s["name"] == "train")
    assert train["status"] == "failed" and train["checks"] == [check]
    # The stage stays stale: the next run tries again (here the floor is met; the model is
    # the same bytes, so its downstream stage is up to date).
    write(project.root, "train.py", TRAIN_PY.replace("'0.71'", "'0.61'"))
    r = cli("run", "--json", ok=True)
    assert statuses(r) == {"train": "ran", "report": "up-to-date"}


def test_warn_keeps_the_result_and_prints_a_warning(project, cli) -> None:
    setup(project.root, FLOOR.format(min=0.9) + "        on_fail: warn\n        severity: minor\n")
    r = cli("run", "--json", ok=True)
    assert statuses(r) == {"train": "ran", "report": "ran"}
    warnings = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: stage 'train': check 'accuracy floor' failed (on_fail: warn, result kept): "
        "accuracy 0.71 < min 0.9"
    ]
    (check,) = stage_entry(r, "train")["checks"]
    assert check["ok"] is False and check["severity"] == "minor"
    lock = json.loads(Path(project.root, "repro.lock").read_text())
    assert set(lock["stages"]) == {"train", "report"}
    assert run_cache(project.root)


def test_failing_command_check_puts_its_output_in_the_message(project, cli) -> None:
    checks = """\
      - name: env
        cmd: test "$REPRO_STAGE" = train && test -n "$REPRO_SEED" && test "$REPRO_CHECK" = env
      - name: model tests
        cmd: echo "collected 3 items"; echo "FAILED test_model.py::test_shape" >&2; exit 4
"""
    setup(project.root, checks)
    r = cli("run", "--json")
    assert r.code == 1
    assert statuses(r) == {"train": "failed", "report": "skipped"}
    error = one_error(r)
    assert (
        error == "error: stage 'train': check 'model tests' failed: its command exited with code 4"
    )
    after = r.err[r.err.index(error) :]
    assert "collected 3 items" in after and "FAILED test_model.py::test_shape" in after
    env, tests = stage_entry(r, "train")["checks"]
    assert env["ok"] is True, env  # the stage's environment reached the check
    assert tests["kind"] == "cmd" and "test_shape" in tests["message"]
    assert not Path(project.root, "repro.lock").exists()


def test_command_check_timeout(project, cli) -> None:
    setup(project.root, "      - cmd: sleep 30\n        timeout: 0.5\n")
    r = cli("run")
    assert r.code == 1
    assert one_error(r) == (
        "error: stage 'train': check 'sleep 30' failed: its command timed out after 0.5 s"
    )


def test_schema_checks_missing_column_and_wrong_type(project, cli) -> None:
    write(project.root, "data/features.csv", "a,b,label\n1,x,0\n2,y,1\n")
    write(project.root, "data/rows.json", json.dumps([{"a": 1, "b": "x"}, {"a": 2.5, "b": "y"}]))
    checks = """\
      - name: feature schema
        schema: data/features.csv
        columns: [a, b, target]
"""
    setup(project.root, checks)
    r = cli("run")
    assert one_error(r) == (
        "error: stage 'train': check 'feature schema' failed: data/features.csv has no column "
        "'target' (it has: a, b, label)"
    )
    setup(project.root, checks.replace("[a, b, target]", "{a: int64, b: int, label: int}"))
    r = cli("run")
    assert one_error(r) == (
        "error: stage 'train': check 'feature schema' failed: data/features.csv: column 'b' is "
        "str, expected int"
    )
    typed = checks.replace("[a, b, target]", "{a: int64, b: string, label: int}")
    json_check = "      - schema: data/rows.json\n        columns: {a: float, b: str}\n"
    setup(project.root, typed + json_check)
    r = cli("run", "--json", ok=True)
    assert [c["ok"] for c in stage_entry(r, "train")["checks"]] == [True, True]


def test_checks_reach_observers(project, cli) -> None:
    with open(Path(project.root, ".repro", "config.toml"), "a") as f:
        f.write('\n[observe]\nuse = ["jsonl"]\n')
    setup(project.root, FLOOR.format(min=0.9) + "        on_fail: warn\n")
    cli("run", ok=True)
    lines = Path(project.root, ".repro", "events.jsonl").read_text().splitlines()
    finished = {e["stage"]: e for e in map(json.loads, lines) if e["event"] == "stage_finished"}
    (check,) = finished["train"]["checks"]
    assert check["name"] == "accuracy floor" and check["ok"] is False
    assert set(check) == {"name", "kind", "ok", "message", "severity", "seconds"}
    assert "checks" not in finished["report"]  # no checks ran: DESIGN's fields only


def test_checks_are_not_inputs(project, cli) -> None:
    setup(project.root, FLOOR.format(min=0.5))
    cli("run", ok=True)
    # Editing a check does not make the stage stale, and an up-to-date stage runs no checks.
    setup(project.root, FLOOR.format(min=0.9))
    st = cli("status", "--json", ok=True).json()
    assert {s["name"]: s["state"] for s in st["stages"]} == {
        "train": "up-to-date",
        "report": "up-to-date",
    }
    r = cli("run", "--json", ok=True)
    assert statuses(r) == {"train": "up-to-date", "report": "up-to-date"}
    assert "checks" not in stage_entry(r, "train")
    # --force runs the stage and so its checks again.
    r = cli("run", "--force", "train", "--json")
    assert r.code == 1 and "accuracy 0.71 < min 0.9" in one_error(r)
    # A result restored from the run cache ran nothing, so no check either.
    setup(project.root, FLOOR.format(min=0.5))
    write(project.root, "train.py", TRAIN_PY + "# v2\n")
    cli("run", ok=True)
    write(project.root, "train.py", TRAIN_PY)
    r = cli("run", "--json", ok=True)
    assert stage_entry(r, "train")["status"] == "restored"
    assert "checks" not in stage_entry(r, "train")


@pytest.mark.parametrize(
    ("observe", "expected"),
    [
        ("[{metric: metrics.json:accuracy}]", "key 'observe[0].metric': needs 'min', 'max'"),
        (
            "[{cmd: 'true'}, {cmd: pytest, metric: m.json:a, min: 1}]",
            "key 'observe[1]': needs exactly one of 'metric', 'cmd' or 'schema'",
        ),
        ("[{name: x}]", "key 'observe[0]': needs exactly one of"),
        ("[{metric: '../up.json:a', min: 1}]", "key 'observe[0].metric': path '../up.json' is"),
        ("[{schema: /etc/passwd.csv, columns: [a]}]", "is outside the project"),
        ("[{cmd: 'true', on_fail: maybe}]", "key 'observe[0].on_fail': must be 'fail' or 'warn'"),
        ("[{cmd: 'true', severity: huge}]", "key 'observe[0].severity': must be 'major' or"),
        ("[{cmd: 'true', colour: red}]", "key 'observe[0].colour': unknown key"),
        ("[{cmd: 'true', min: 1}]", "key 'observe[0].min': belongs to a 'metric' check"),
        ("[{schema: data.csv}]", "key 'observe[0].columns': must be a non-empty list"),
        ("{cmd: 'true'}", "key 'observe': must be a list of checks"),
    ],
)
def test_bad_observe_entries_are_one_sentence_and_change_nothing(
    project, cli, observe: str, expected: str
) -> None:
    write(project.root, "train.py", TRAIN_PY)
    body = TRAIN.split("    observe:\n")[0] + f"    observe: {observe}\n"
    write(project.root, "repro.yaml", body)
    cache = Path(project.root, ".repro", "cache")
    before = (snapshot_tree(project.root), snapshot_tree(cache))
    r = cli("run")
    error = one_error(r)
    assert error.startswith("error: repro.yaml, line ") and "stage 'train'" in error, error
    assert expected in error, error
    assert (snapshot_tree(project.root), snapshot_tree(cache)) == before
    assert not os.path.exists(Path(project.root, "model.pkl"))


def test_crafted_check_outcomes_in_a_shared_record_are_refused(project, cli) -> None:
    """Records come from shared remotes: check outcomes of the wrong shape are not shown."""
    from repro.records import load_record, save_record

    setup(project.root, FLOOR.format(min=0.5))
    cli("run", ok=True)
    run_id = cli("log", "--json", ok=True).json()[0]["run_id"]
    backend = project.cache.backend
    rec = load_record(backend, run_id)
    rec.stages[0].checks = [{"name": "x", "kind": "metric", "ok": "yes", "message": 1}]
    save_record(backend, rec)
    error = one_error(cli("show", run_id))
    assert f"run record {run_id}" in error and "'checks'" in error, error
