"""Tracked data (`repro add`) is an input like any other: an edit shows in `status`, and `run`
records the new version in repro.lock and the snapshot. Lock, snapshot and status never disagree
(a stateful test drives random sequences of CLI commands against a model of the workspace)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from repro.project import Project
from tests.conftest import git, run_cli, write

SPEC = """\
stages:
  join:
    cmd: cat raw/*.txt extra.txt > joined.txt
    deps: [raw, extra.txt]
    outs: [joined.txt]
"""


def lock_data(root) -> dict[str, str]:
    doc = json.loads(Path(root, "repro.lock").read_text())
    return {p: d["hash"] for p, d in doc["data"].items()}


def snapshot_data(root, sig: str) -> dict[str, str]:
    from repro.snapshots import load_snapshot

    project = Project(str(root))
    try:
        snap = load_snapshot(project.cache.backend, sig)
    finally:
        project.state.close()
    return {p: d["hash"] for p, d in snap.data.items()}


def new_project(root: Path) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    Project.init(root).state.close()
    write(root, "repro.yaml", SPEC)
    write(root, "raw/a.txt", "a1\n")
    write(root, "raw/b.txt", "b1\n")
    write(root, "extra.txt", "e1\n")
    write(root, "notes.txt", "n1\n")


def test_edited_data_is_stale_and_run_records_it(tmp_path) -> None:
    root = tmp_path / "p"
    new_project(root)
    run_cli(["add", "raw", "notes.txt"], root, check=True)
    first = run_cli(["run", "--json"], root, check=True).json()
    assert run_cli(["status", "--exit-code"], root).code == 0
    old = lock_data(root)
    write(root, "raw/b.txt", "b2\n")
    # status: the data entry is stale (kind data, target the path), the stage too; exit 1
    r = run_cli(["status", "--json", "--exit-code"], root)
    assert r.code == 1
    doc = r.json()
    data = {d["path"]: d for d in doc["data"]}
    assert data["raw"]["state"] == "stale"
    assert data["raw"]["reasons"] == [{"kind": "data", "target": "raw"}]
    assert data["notes.txt"] == {"path": "notes.txt", "state": "up-to-date", "reasons": []}
    assert doc["stages"][0]["reasons"] == [{"kind": "data", "target": "raw"}]
    text = run_cli(["status"], root).out
    assert "data raw: stale (data: raw" in text
    # run takes the current content as the new version, says so, and records it everywhere
    dry = run_cli(["run", "--dry-run", "--json"], root, check=True).json()
    assert [c["path"] for c in dry["data"]] == ["raw"] and lock_data(root) == old
    out = run_cli(["run"], root, check=True).out
    line = next(ln for ln in out.splitlines() if ln.startswith("data: raw"))
    new = lock_data(root)["raw"]
    assert line == f"data: raw updated to {new[:12]} (2 files)"
    assert new != old["raw"] and lock_data(root)["notes.txt"] == old["notes.txt"]
    sig = out.split("snapshot ")[-1].strip()
    assert snapshot_data(root, sig) == lock_data(root)
    assert Path(root, "joined.txt").read_text() == "a1\nb2\ne1\n"
    assert run_cli(["status", "--exit-code"], root).code == 0
    # the old version is still a checkout away, and checkout does not swap the new one back
    assert run_cli(["checkout"], root, check=True).code == 0
    assert Path(root, "raw/b.txt").read_text() == "b2\n"
    run_cli(["checkout", first["snapshot"]], root, check=True)
    assert Path(root, "raw/b.txt").read_text() == "b1\n"
    assert lock_data(root) == old
    assert run_cli(["status", "--exit-code"], root).code == 0


def test_run_json_lists_data_and_status_says_upstream_like_run(tmp_path) -> None:
    root = tmp_path / "p"
    new_project(root)
    write(
        root,
        "repro.yaml",
        SPEC + "  count:\n    cmd: wc -l joined.txt > n.txt\n"
        "    deps: [joined.txt]\n    outs: [n.txt]\n",
    )
    run_cli(["add", "raw"], root, check=True)
    run_cli(["run"], root, check=True)
    write(root, "extra.txt", "e2\n")
    st_ = {s["name"]: s for s in run_cli(["status", "--json"], root).json()["stages"]}
    assert st_["count"]["reasons"] == [{"kind": "upstream", "target": "join"}]
    r = run_cli(["run", "--json"], root, check=True).json()
    assert r["data"] == []
    by = {s["name"]: s for s in r["stages"]}
    assert by["count"]["status"] == "ran"
    rec = json.loads(Path(root, "repro.lock").read_text())
    assert rec["stages"]["count"]["deps"]["joined.txt"]["hash"]
    # the run record keeps the same reason status gave: upstream, the stage's name
    from repro.records import list_records

    project = Project(str(root))
    try:
        latest = list_records(project.cache.backend)[0]
    finally:
        project.state.close()
    count = next(s for s in latest.stages if s.name == "count")
    assert count.reasons == [{"kind": "upstream", "target": "join"}]
    # join alone reran: count's input changed because of join, and status names join too
    write(root, "extra.txt", "e3\n")
    run_cli(["run", "join"], root, check=True)
    st_ = {s["name"]: s for s in run_cli(["status", "--json"], root).json()["stages"]}
    assert st_["join"]["state"] == "up-to-date"
    assert st_["count"]["reasons"] == [{"kind": "upstream", "target": "join"}]
    r = run_cli(["run", "--json"], root, check=True).json()
    assert {s["name"]: s["status"] for s in r["stages"]} == {"join": "up-to-date", "count": "ran"}


class DataMachine(RuleBasedStateMachine):
    """Model: what each tracked path holds in the workspace and what the lock records for it
    (bytes, not hashes: independent of repro's hashing). After every command: the lock's data
    equals the last recorded snapshot's, and status says a path is stale exactly when the
    workspace differs from what is recorded."""

    FILES = ("raw/a.txt", "raw/b.txt", "notes.txt")

    def __init__(self) -> None:
        super().__init__()
        self.root: Path | None = None
        self.work: dict[str, str] = {}
        self.recorded: dict[str, str] = {}
        self.snaps: dict[str, dict[str, str]] = {}  # sig -> recorded model at that snapshot
        self.last_sig: str | None = None

    @initialize()
    def start(self) -> None:
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="drift-")) / "p"
        new_project(self.root)
        self.work = {f: Path(self.root, f).read_text() for f in self.FILES}
        sig = run_cli(["add", "raw", "notes.txt", "--json"], self.root, check=True).json()
        self.recorded = dict(self.work)
        self._recorded_snapshot(sig["snapshot"])

    def teardown(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root.parent, ignore_errors=True)

    def _recorded_snapshot(self, sig: str | None) -> None:
        self.last_sig = sig
        if sig:
            self.snaps[sig] = dict(self.recorded)

    @rule(f=st.sampled_from(FILES), v=st.sampled_from(["1", "2", "3"]))
    def edit_data(self, f: str, v: str) -> None:
        self.work[f] = f"{f}-{v}\n"
        write(self.root, f, self.work[f])
        self.last_sig = None

    @rule(v=st.sampled_from(["1", "2"]))
    def edit_dep(self, v: str) -> None:
        write(self.root, "extra.txt", f"e{v}\n")
        self.last_sig = None

    @rule(f=st.sampled_from([None, *FILES]), v=st.sampled_from(["4", "5"]))
    def run(self, f: str | None, v: str) -> None:
        """`repro run`, most often right after an edit of tracked data."""
        if f is not None:
            self.edit_data(f, v)
        r = run_cli(["run", "--json"], self.root, check=True).json()
        self.recorded = dict(self.work)
        assert {c["path"] for c in r["data"]} <= {"raw", "notes.txt"}
        self._recorded_snapshot(r["snapshot"])

    @rule()
    def status(self) -> None:
        r = run_cli(["status", "--exit-code"], self.root)
        stale = any(self.work[f] != self.recorded[f] for f in self.FILES)
        assert r.code == (1 if stale else r.code)  # stale data always exits 1
        assert ("data raw: stale" in r.out) == any(
            self.work[f] != self.recorded[f] for f in self.FILES if f.startswith("raw/")
        )

    @rule(path=st.sampled_from(["raw", "notes.txt"]))
    def add(self, path: str) -> None:
        r = run_cli(["add", path, "--json"], self.root, check=True).json()
        for f in self.FILES:
            if f.startswith(path):
                self.recorded[f] = self.work[f]
        self._recorded_snapshot(r["snapshot"])

    @rule(data=st.data())
    def checkout(self, data) -> None:
        """`repro checkout` (the lock) or `repro checkout SIG` (an earlier snapshot)."""
        sig = data.draw(st.sampled_from([None, *sorted(self.snaps)]))
        if sig is None:
            run_cli(["checkout"], self.root, check=True)
            self.work = dict(self.recorded)
            return
        run_cli(["checkout", sig], self.root, check=True)
        self.recorded = dict(self.snaps[sig])
        self.work = dict(self.recorded)
        self._recorded_snapshot(sig)

    @invariant()
    def lock_snapshot_and_status_agree(self) -> None:
        if self.root is None:
            return
        for f, text in self.work.items():
            assert Path(self.root, f).read_text() == text, f
        lock = lock_data(self.root)
        if self.last_sig is not None:
            assert snapshot_data(self.root, self.last_sig) == lock
        r = run_cli(["status", "--json", "--exit-code"], self.root)
        stale = {d["path"] for d in r.json()["data"] if d["state"] == "stale"}
        differs = {
            p
            for p in ("raw", "notes.txt")
            if any(self.work[f] != self.recorded[f] for f in self.FILES if f.startswith(p))
        }
        assert stale == differs
        for d in r.json()["data"]:
            kinds = {x["kind"] for x in d["reasons"]}
            assert kinds == ({"data"} if d["path"] in differs else set())
        if differs:
            assert r.code == 1


TestDataMachine = DataMachine.TestCase
TestDataMachine.settings = settings(
    max_examples=6,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
