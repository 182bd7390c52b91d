"""The two open seams of a run, driven as a user would: a throw-away distribution on disk (a
`*.dist-info` folder with `entry_points.txt`, and its module) registers an observer and an
executor through entry points; the real CLI, with that folder on its PYTHONPATH, uses them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import one_error, run_cli, write

PLUGIN = '''
import json, os, pickle

from repro.execution.local import LocalExecutor


class Recorder:
    """Appends each event it is given to the file its config table names."""

    def __init__(self, config):
        self.path = config["path"]

    def _write(self, event):
        with open(self.path, "a") as f:
            f.write(json.dumps(event) + "\\n")

    run_started = stage_started = stage_finished = run_finished = _write


def make_recorder(config):
    return Recorder(config)


class Boom:
    def stage_started(self, event):
        raise RuntimeError("boom went the observer")


def make_boom(config):
    return Boom()


class MarkerExecutor:
    """Runs the stage locally, after leaving a marker saying which stage and what request."""

    name = "marker"

    def __init__(self, config):
        self.dir = config["dir"]
        self.inner = LocalExecutor()

    def run(self, req, ctx):
        copy = pickle.loads(pickle.dumps(req))
        with open(os.path.join(self.dir, "ran-" + req.stage), "w") as f:
            json.dump({"stage": copy.stage, "wdir": copy.wdir, "env": copy.env,
                       "outs": list(copy.outs), "deps": copy.deps}, f)
        result = self.inner.run(req, ctx)
        result.worker = "marker-worker"
        return result


class StoringExecutor:
    """Stores the outputs in the cache itself, takes them out of the workspace, and reports
    their hashes (as a remote worker writing to a shared store would)."""

    def __init__(self, config):
        self.lie = config.get("lie", False)

    def run(self, req, ctx):
        from repro.hashing.filehash import hash_file
        from repro.project import Project

        result = LocalExecutor().run(req, ctx)
        cache, outs = Project(ctx.root).cache, {}
        for rel in req.outs:
            path = os.path.join(ctx.root, rel)
            h = hash_file(path)
            cache.put_file(path, h)
            outs[rel] = {"hash": "../../" + h if self.lie else h, "size": os.path.getsize(path)}
            os.remove(path)
        result.outs = outs
        return result
'''

ENTRY_POINTS = """\
[repro.observers]
rec = repro_testplug:make_recorder
boom = repro_testplug:make_boom

[repro.executors]
marker = repro_testplug:MarkerExecutor
storing = repro_testplug:StoringExecutor
"""

PIPELINE = """\
stages:
  a:
    cmd: echo "$REPRO_SEED $MY_VAR" > a.txt
    env: [MY_VAR]
    executor: marker
    deps: [in.txt]
    outs: [a.txt]
  b:
    cmd: cat a.txt a.txt > b.txt
    deps: [a.txt]
    outs: [b.txt]
"""

FIELDS = {
    "run_started": {"root", "targets", "user", "host", "git_commit"},
    "stage_started": {"stage", "signature", "reasons"},
    "stage_finished": {"stage", "status", "signature", "seconds", "exit_code", "executor", "outs"},
    "run_finished": {"snapshot", "status", "stages"},
}
COMMON = {"event", "v", "run_id", "time"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def plugin_dist(tmp_path: Path) -> Path:
    """A distribution as pip would leave it: the module and its dist-info metadata."""
    site = tmp_path / "site"
    write(site, "repro_testplug.py", PLUGIN)
    info = "repro_testplug-0.1.dist-info"
    write(site, f"{info}/METADATA", "Metadata-Version: 2.1\nName: repro-testplug\nVersion: 0.1\n")
    write(site, f"{info}/entry_points.txt", ENTRY_POINTS)
    return site


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stage_record(root, run_id: str, env: dict) -> dict[str, dict]:
    shown = run_cli(["show", run_id, "--json"], root, env=env, check=True).json()
    return {s["name"]: s for s in shown["stages"]}


def test_plugged_observer_and_executor_see_and_run_the_pipeline(project, tmp_path) -> None:
    site, markers, seen = plugin_dist(tmp_path), tmp_path / "markers", tmp_path / "seen.jsonl"
    markers.mkdir()
    env = {"PYTHONPATH": str(site), "MY_VAR": "declared", "NOT_DECLARED": "secret"}
    write(project.root, "in.txt", "input\n")
    write(project.root, "repro.yaml", PIPELINE)
    with open(project.config_path, "a") as f:
        f.write(
            f'\n[observe]\nuse = ["rec", "boom", "jsonl"]\n[observe.rec]\npath = "{seen}"\n'
            f'\n[run.marker]\ndir = "{markers}"\n'
        )

    r = run_cli(["run", "-j", "2", "--json"], project.root, env=env)
    assert r.code == 0, r.err
    doc = r.json()

    # The executor ran exactly the stage that chose it, with a request fit to travel.
    assert sorted(p.name for p in markers.iterdir()) == ["ran-a"]
    req = json.loads((markers / "ran-a").read_text())
    assert req["wdir"] == "." and req["outs"] == ["a.txt"] and list(req["deps"]) == ["in.txt"]
    assert req["env"]["MY_VAR"] == "declared" and "REPRO_SEED" in req["env"]
    assert "NOT_DECLARED" not in req["env"] and "PATH" not in req["env"]
    assert (Path(project.root) / "a.txt").read_text().endswith(" declared\n")
    rec = stage_record(project.root, doc["run_id"], env)
    assert (rec["a"]["executor"], rec["a"]["worker"]) == ("marker", "marker-worker")
    assert rec["b"]["executor"] == "local" and rec["b"]["worker"]

    # The observer saw every event, in order, with exactly the documented fields.
    events = read_lines(seen)
    kinds = [(e["event"], e.get("stage")) for e in events]
    assert kinds[0] == ("run_started", None) and kinds[-1] == ("run_finished", None)
    for st in ("a", "b"):
        assert kinds.count(("stage_started", st)) == kinds.count(("stage_finished", st)) == 1
        assert kinds.index(("stage_started", st)) < kinds.index(("stage_finished", st))
    assert kinds.index(("stage_finished", "a")) < kinds.index(("stage_started", "b"))
    assert len(events) == 6
    for e in events:
        assert set(e) == COMMON | FIELDS[e["event"]], e
        assert e["v"] == 1 and e["run_id"] == doc["run_id"] and ISO_UTC.match(e["time"])
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    started = events[0]
    assert started["root"] == str(project.root) and started["targets"] == []
    by = {(e["event"], e.get("stage")): e for e in events}
    assert by[("stage_started", "a")]["reasons"] == [{"kind": "new", "target": "a"}]
    fin_a = by[("stage_finished", "a")]
    assert (fin_a["status"], fin_a["executor"], fin_a["exit_code"]) == ("ran", "marker", 0)
    assert fin_a["signature"] == rec["a"]["signature"]
    assert re.fullmatch(r"[0-9a-f]{32}", fin_a["outs"]["a.txt"])
    assert by[("stage_finished", "b")]["executor"] == "local"
    assert events[-1]["snapshot"] == doc["snapshot"] and events[-1]["status"] == "ok"
    assert events[-1]["stages"] == {"a": "ran", "b": "ran"}

    # A raising observer is reported once (it raised twice) and the run still succeeded.
    warnings = [ln for ln in r.err.splitlines() if ln.startswith("warning: observer 'boom'")]
    assert len(warnings) == 1 and "boom went the observer" in warnings[0], r.err

    # The built-in jsonl observer wrote one line per event: the same events.
    jsonl = read_lines(Path(project.root, ".repro", "events.jsonl"))
    assert jsonl == events

    # `--executor` picks the executor for the stages that do not choose their own.
    r2 = run_cli(["run", "--force", "--executor", "marker", "--json"], project.root, env=env)
    assert r2.code == 0, r2.err
    assert sorted(p.name for p in markers.iterdir()) == ["ran-a", "ran-b"]
    rec2 = stage_record(project.root, r2.json()["run_id"], env)
    assert rec2["b"]["executor"] == "marker" and rec2["a"]["executor"] == "marker"
    assert len(read_lines(seen)) == 12


def test_unknown_executor_is_one_sentence_naming_its_source(project, cli) -> None:
    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: echo > o\n    outs: [o]\n")
    err = one_error(cli("run", "--executor", "nowhere"))
    assert "--executor" in err and "'nowhere'" in err and "repro.executors" in err
    assert not Path(project.root, "o").exists()

    write(project.root, "repro.yaml", PIPELINE.replace("executor: marker", "executor: gpu-pool"))
    write(project.root, "in.txt", "x\n")
    err = one_error(cli("run"))
    assert "repro.yaml" in err and "stage 'a'" in err and "key 'executor'" in err
    assert "'gpu-pool'" in err and not Path(project.root, "a.txt").exists()

    write(project.root, "repro.yaml", PIPELINE.replace("executor: marker", "executor: [x]"))
    err = one_error(cli("run"))
    assert "stage 'a'" in err and "key 'executor'" in err

    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: echo > o\n    outs: [o]\n")
    with open(project.config_path, "a") as f:
        f.write('\n[run]\nexecutor = "elsewhere"\n')
    err = one_error(cli("run"))
    assert "config.toml" in err and "run.executor" in err and "'elsewhere'" in err


def test_observers_never_change_the_run(project, cli, outside) -> None:
    """An observer that is not installed, and a jsonl path leading out of the project, are
    reported on stderr; the run goes on and nothing is written outside."""
    from tests.conftest import untouched

    write(project.root, "repro.yaml", "stages:\n  s:\n    cmd: echo hi > o\n    outs: [o]\n")
    with open(project.config_path, "a") as f:
        f.write(f'\n[observe]\nuse = ["missing", "jsonl"]\n[observe.jsonl]\npath = "{outside}/x"\n')
    r = cli("run")
    assert r.code == 0, r.err
    assert "observer 'missing'" in r.err and "not installed" in r.err
    assert "observer 'jsonl' failed" in r.err and "is absolute" in r.err
    assert untouched(outside) and Path(project.root, "o").exists()

    Path(project.root, "link").symlink_to(outside)
    text = Path(project.config_path).read_text().replace(f"{outside}/x", "link/events.jsonl")
    Path(project.config_path).write_text(text)
    r = cli("run", "--force")
    assert r.code == 0 and "observer 'jsonl' failed" in r.err and "symlink" in r.err, r.err
    assert untouched(outside)


def test_outputs_an_executor_stored_are_checked_then_checked_out(project, tmp_path) -> None:
    env = {"PYTHONPATH": str(plugin_dist(tmp_path))}
    stage = "stages:\n  s:\n    cmd: echo made > o.txt\n    executor: storing\n    outs: [o.txt]\n"
    write(project.root, "repro.yaml", stage)
    r = run_cli(["run", "--json"], project.root, env=env)
    assert r.code == 0, r.err
    assert Path(project.root, "o.txt").read_text() == "made\n"  # put back from the cache
    assert stage_record(project.root, r.json()["run_id"], env)["s"]["executor"] == "storing"

    with open(project.config_path, "a") as f:
        f.write("\n[run.storing]\nlie = true\n")
    r = run_cli(["run", "--force"], project.root, env=env)
    err = one_error(r)
    assert "executor 'storing'" in err and "stage 's'" in err and "is not a hash" in err
