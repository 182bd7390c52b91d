"""The run index (repro/runindex.py): `repro log` answers from it, and it always agrees with
reading the records themselves, whatever arrives, vanishes or breaks in the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from repro.canonical import packb
from repro.project import Project
from repro.records import (
    RunRecord,
    StageRecord,
    _read_all,
    iso,
    list_records,
    log_rows,
    save_record,
)
from repro.store.layout import record_key
from tests.conftest import run_cli

INDEX = os.path.join(".repro", "state-runs.db")


def record(i: int, status: str = "ok", metric: float = 0.5) -> RunRecord:
    t = 1_700_000_000 + i * 60
    return RunRecord(
        run_id=f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(t))}000Z-{i:06x}",
        kind="run",
        user="u",
        host="h",
        started=iso(t),
        ended=iso(t + 2),
        argv=["repro", "run"],
        ci={},
        git_commit=f"{i:040x}",
        git_dirty=False,
        python="3.11",
        platform="linux",
        snapshot=f"{i:032x}",
        status=status,
        stages=[StageRecord("train", "ran", f"{i:032x}", 1.5)],
        metrics={"metrics.json": {"acc": metric}},
    )


def pulled(project: Project, rec: RunRecord) -> None:
    """A record written into the store behind repro's back, as `pull` or another tool does."""
    path = os.path.join(project.cache.backend.root, record_key(rec.run_id))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(packb({"format": 1, **rec.to_dict()}))


def log_json(project: Project, *args: str) -> list[dict]:
    r = run_cli(["log", "--json", *args], project.root, check=True)
    assert r.err == "", r.err  # a rebuilt index says nothing
    return r.json()


def ids(rows: list) -> list[str]:
    return [r["run_id"] if isinstance(r, dict) else r.run_id for r in rows]


def test_log_answers_from_the_index_and_follows_the_store(project: Project) -> None:
    backend = project.cache.backend
    for i in range(5):
        save_record(backend, record(i, metric=i / 10))
    assert os.path.exists(os.path.join(project.root, INDEX))  # saving a record indexed it
    ignored = subprocess.run(["git", "check-ignore", "-q", INDEX], cwd=project.root)
    assert ignored.returncode == 0  # a cache: never committed
    rows = log_json(project)
    assert ids(rows) == [record(i).run_id for i in (4, 3, 2, 1, 0)]
    assert rows[0]["metrics"] == {"metrics.json": {"acc": 0.4}}
    assert rows[0]["git_commit"] == f"{4:040x}" and rows[0]["status"] == "ok"
    # A record another machine made arrives in the store (pull): listed, newest first.
    pulled(project, record(9))
    assert ids(log_json(project, "-n", "2")) == [record(9).run_id, record(4).run_id]
    # One vanishes (gc on a shared cache), one is overwritten with garbage: both leave the log.
    os.unlink(os.path.join(backend.root, record_key(record(3).run_id)))
    with open(os.path.join(backend.root, record_key(record(2).run_id)), "wb") as f:
        f.write(b"\x93not a record")
    expected = [record(i).run_id for i in (9, 4, 1, 0)]
    assert ids(log_json(project)) == expected
    assert ids(_read_all(backend)) == expected  # exactly what reading the records gives


def test_a_missing_or_damaged_index_is_rebuilt_silently(project: Project) -> None:
    backend = project.cache.backend
    for i in range(3):
        save_record(backend, record(i))
    want = log_json(project)
    index = os.path.join(project.root, INDEX)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(index + suffix):
            os.unlink(index + suffix)
    with open(index, "wb") as f:
        f.write(b"this is not a database" * 100)
    assert log_json(project) == want
    os.unlink(index)
    assert log_json(project) == want
    assert os.path.getsize(index) > 0  # and it was written again


def test_stage_filter_and_newer_format_warning_survive_the_index(project: Project) -> None:
    backend = project.cache.backend
    save_record(backend, record(1))
    rec = record(2)
    rec.stages = [
        StageRecord("prepare", "ran", None, 0.1),
        StageRecord("train", "up-to-date", None, 0),
    ]
    save_record(backend, rec)
    newer = record(3)
    path = os.path.join(backend.root, record_key(newer.run_id))
    with open(path, "wb") as f:
        f.write(packb({**newer.to_dict(), "format": 99}))
    for _ in range(2):  # first read indexes it, the second answers from the index
        r = run_cli(["log", "--json", "--stage", "train"], project.root, check=True)
        assert ids(r.json()) == [record(1).run_id]
        assert "1 run record(s) were made by a newer repro" in r.err


def test_two_processes_saving_records_at_once_lose_none(project: Project) -> None:
    code = (
        "import sys; from repro.project import Project; from repro.records import save_record;"
        "from tests.test_runindex import record;"
        "b = Project(sys.argv[1]).cache.backend; k = int(sys.argv[2]);"
        "[save_record(b, record(k * 1000 + i)) for i in range(40)]"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, project.root, str(k)], cwd=root)
        for k in (1, 2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    rows = log_json(project)
    assert len(rows) == 80 and len(set(ids(rows))) == 80
    assert ids(rows) == ids(_read_all(project.cache.backend))


def test_log_over_2000_pulled_records_pages_newest_first(project: Project) -> None:
    """Speed is measured in benchmarks/run.py (`--only log`, 10,000 records), not here."""
    for i in range(2000):
        pulled(project, record(i))  # as a pull brings them: the first log indexes them all
    log_json(project, "-n", "1")
    rows = log_json(project, "-n", "20")
    assert ids(rows) == [record(i).run_id for i in range(1999, 1979, -1)]


class StoreMachine(RuleBasedStateMachine):
    """Random add / pull / remove / corrupt / damaged-index sequences: the indexed answer
    equals reading every record, after every step."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="runindex-")
        subprocess.run(["git", "init", "-q", self.dir], check=True)
        self.project = Project.init(self.dir)
        self.backend = self.project.cache.backend
        self.n = 0

    def _path(self, i: int) -> str:
        return os.path.join(self.backend.root, record_key(record(i).run_id))

    @rule(status=st.sampled_from(["ok", "failed"]), metric=st.floats(0, 1))
    def save(self, status: str, metric: float) -> None:
        self.n += 1
        save_record(self.backend, record(self.n, status, metric))

    @rule()
    def pull(self) -> None:
        self.n += 1
        pulled(self.project, record(self.n))

    @rule(k=st.integers(0, 30))
    def remove(self, k: int) -> None:
        if os.path.exists(self._path(k)):
            os.unlink(self._path(k))

    @rule(k=st.integers(0, 30), garbage=st.binary(max_size=20))
    def corrupt(self, k: int, garbage: bytes) -> None:
        if os.path.exists(self._path(k)):
            with open(self._path(k), "wb") as f:  # in place: same inode, new size or ctime
                f.write(garbage)

    @rule(k=st.integers(0, 30), metric=st.floats(0, 1))
    def rewrite(self, k: int, metric: float) -> None:
        """Another valid record under the same id (a repaired copy pulled over a bad one)."""
        if os.path.exists(self._path(k)):
            pulled(self.project, record(k, metric=metric))

    @rule(how=st.sampled_from(["delete", "garbage"]))
    def damage_index(self, how: str) -> None:
        index = os.path.join(self.dir, INDEX)
        if how == "delete":
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(index + suffix):
                    os.unlink(index + suffix)
        elif os.path.exists(index):
            for suffix in ("-wal", "-shm"):
                if os.path.exists(index + suffix):
                    os.unlink(index + suffix)
            with open(index, "wb") as f:
                f.write(b"garbage" * 50)

    @invariant()
    def agrees(self) -> None:
        direct = [r.to_dict() for r in _read_all(self.backend)]
        assert [r.to_dict() for r in list_records(self.backend)] == direct
        keys = ("run_id", "snapshot", "status", "metrics")
        rows = [{k: r[k] for k in keys} for r in log_rows(self.project)]
        assert rows == [{k: r[k] for k in keys} for r in direct]

    def teardown(self) -> None:
        import shutil

        self.project.state.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(
    max_examples=15,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
