"""Run records: the audit trail of every `repro run` (and `repro add`).

Who ran what, where, when and on which commit: run id (sortable by time), user, host, UTC start
and end, argv, CI variables, git commit and dirty flag, Python and platform, each stage's outcome,
duration, exit code and signature, the snapshot sig, headline metrics, and stdout/stderr kept as
objects. Stored as `records/<run id>` beside the objects, so remotes share them too.
"""

from __future__ import annotations

import functools
import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from repro.canonical import packb, unpackb
from repro.enums import Outcome
from repro.errors import NotFoundError
from repro.pipeline import envfp
from repro.project import Project
from repro.safety import is_hash
from repro.store.backend import Backend
from repro.store.layout import RECORD_FORMAT, RECORDS, check_format, name_of, record_key

CI_VARS = (
    "CI",
    "GITHUB_SHA",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_NUMBER",
    "GITHUB_WORKFLOW",
    "GITHUB_REF",
    "GITHUB_REPOSITORY",
    "GITHUB_ACTOR",
    "GITLAB_CI",
    "CI_JOB_ID",
    "CI_PIPELINE_ID",
    "CI_COMMIT_SHA",
    "BUILD_ID",
    "BUILD_NUMBER",
    "JENKINS_URL",
    "BUILDKITE_BUILD_ID",
    "CIRCLE_BUILD_NUM",
    "TRAVIS_BUILD_ID",
)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    """A record class's field names, asked once (`log` and `report` decode thousands)."""
    from dataclasses import fields

    return frozenset(f.name for f in fields(cls))


@dataclass
class StageRecord:
    name: str
    status: str  # an Outcome's value (records from older repros hold plain text)
    signature: str | None
    seconds: float
    exit_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    reasons: list[dict[str, str]] = field(default_factory=list)
    message: str | None = None
    executor: str | None = None  # what ran the command (None: it did not run)
    worker: str | None = None  # where: host, container or worker
    # `observe:` outcomes: {"name", "kind", "ok", "message", "severity", "seconds"} each
    checks: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageRecord:
        """Fields a newer repro added are left out, so this one still reads its records."""
        known = _field_names(cls)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class RunRecord:
    run_id: str
    kind: str  # run | add | rollback
    user: str
    host: str
    started: str  # UTC ISO 8601
    ended: str
    argv: list[str]
    ci: dict[str, str]
    git_commit: str | None
    git_dirty: bool | None
    python: str
    platform: str
    snapshot: str | None
    status: str  # ok | failed
    stages: list[StageRecord] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    rollback_from: str | None = None  # kind rollback: the snapshot the workspace held before

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Fields this repro does not know (a newer one's, or `format`) are left out, so an
        older repro still reads a newer one's records instead of dropping them."""
        known = _field_names(cls)
        stages = [StageRecord.from_dict(s) for s in d.get("stages", [])]
        return cls(**{**{k: v for k, v in d.items() if k in known}, "stages": stages})


def new_run_id(now: float | None = None) -> str:
    """Sortable by time: UTC timestamp to the millisecond, then randomness."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}{int(now * 1000) % 1000:03d}Z-{os.urandom(3).hex()}"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class GitStateLater:
    """`git_state` asked in a background thread at the start of a run, so the two git calls
    overlap the run's own work instead of adding to it."""

    def __init__(self, root: str) -> None:
        import threading

        self._result: tuple[str | None, bool | None] = (None, None)
        self._thread = threading.Thread(target=self._ask, args=(root,), daemon=True)
        self._thread.start()

    def _ask(self, root: str) -> None:
        self._result = git_state(root)

    def result(self) -> tuple[str | None, bool | None]:
        self._thread.join()
        return self._result


def git_state(root: str) -> tuple[str | None, bool | None]:
    """HEAD's commit and whether the work tree differs from it (None when not a git repo)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def flat_metrics(path: str) -> dict[str, Any]:
    """Numeric values of one metrics file (JSON or YAML), flattened to dotted keys."""
    from repro.pipeline.parsecache import load_any

    try:
        doc = load_any(path)
    except Exception:
        return {}
    return flat_numbers(doc)


def flat_numbers(doc: Any) -> dict[str, Any]:
    """Numeric values of a metrics document under dotted keys (`eval.accuracy`)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            flat[prefix] = v

    walk("", doc)
    return flat


def headline_metrics(project: Project, paths: list[str]) -> dict[str, Any]:
    """The metrics files' numeric values, by file."""
    out = {}
    for rel in paths:
        flat = flat_metrics(project.abs(rel))
        if flat:
            out[rel] = flat
    return out


def make_record(
    project: Project,
    run_id: str,
    kind: str,
    started: float,
    ended: float,
    snapshot: str | None,
    status: str,
    stages: list[StageRecord],
    metrics: dict[str, Any] | None = None,
    git: tuple[str | None, bool | None] | None = None,
) -> RunRecord:
    """The record of one run; `git` is `git_state()` when the caller already asked."""
    commit, dirty = git if git is not None else git_state(project.root)
    return RunRecord(
        run_id=run_id,
        kind=kind,
        user=_user(),
        host=socket.gethostname(),
        started=iso(started),
        ended=iso(ended),
        argv=list(sys.argv),
        ci={k: os.environ[k] for k in CI_VARS if k in os.environ},
        git_commit=commit,
        git_dirty=dirty,
        python=envfp.python_version(),
        platform=envfp.platform_tag(),
        snapshot=snapshot,
        status=status,
        stages=stages,
        metrics=metrics or {},
    )


def save_record(backend: Backend, rec: RunRecord) -> None:
    """Store `rec` with its format number (kept out of `to_dict`, which `show --json` prints),
    and add it to the run index (repro/runindex.py) as reading it back would give it."""
    from repro.runindex import record_saved

    data = packb({"format": RECORD_FORMAT, **rec.to_dict()})
    written = time.time_ns()
    backend.write_bytes(record_key(rec.run_id), data)
    doc = unpackb(data)
    if record_problem(doc, rec.run_id) is None:
        record_saved(backend, rec.run_id, doc, written)


def load_record(backend: Backend, run_id: str) -> RunRecord:
    return RunRecord.from_dict(_read_doc(backend, run_id))


def _read_doc(backend: Backend, run_id: str) -> dict[str, Any]:
    """The stored record `run_id` as a checked dict (what `RunRecord.from_dict` accepts)."""
    try:
        data = backend.read_bytes(record_key(run_id))
    except FileNotFoundError:
        raise NotFoundError(f"run {run_id} is not in the cache.") from None
    from repro.errors import CorruptObjectError

    source = f"run record {run_id}"
    try:
        d = unpackb(data)
    except Exception as exc:  # records come from shared caches: a bad one is reported, not used
        raise CorruptObjectError(f"{source} is not valid ({exc}).") from None
    if isinstance(d, dict):
        check_format(d, RECORD_FORMAT, source)  # a newer format is refused, not misread
    try:
        problem = record_problem(d, run_id)
        if not problem:
            RunRecord.from_dict(d)
    except Exception as exc:  # records come from shared caches: a bad one is reported, not used
        raise CorruptObjectError(f"run record {run_id} is not valid ({exc}).") from None
    if problem:
        raise CorruptObjectError(f"run record {run_id}: {problem}; it is not used.")
    return d


_STR = (
    "run_id",
    "kind",
    "user",
    "host",
    "started",
    "ended",
    "python",
    "platform",
    "status",
)
_CONTROL = {*range(0x20), 0x7F}  # terminal escapes: `repro log` prints these fields as they are


def _text(v: Any, optional: bool = False) -> bool:
    if v is None:
        return optional
    return isinstance(v, str) and not any(ord(c) in _CONTROL for c in v[:4096])


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def record_problem(d: Any, run_id: str) -> str | None:
    """Why the decoded record `d` filed as `run_id` may not be used, or None. Records come
    from shared remotes unchecked, yet `log`, `show`, `diff`, `gc` and checkout read their
    fields: every field must have its type (a number where a commit id goes would crash them),
    hashes must be hashes, and the record must be the run its key names."""
    if not isinstance(d, dict):
        return "is not a mapping"
    if d.get("run_id") != run_id:
        return f"names another run ({str(d.get('run_id'))[:40]!r})"
    for k in _STR:
        if not _text(d.get(k)):
            return f"field {k!r} is not a line of text"
    if not _text(d.get("git_commit"), optional=True):
        return "field 'git_commit' is not a line of text"
    if d.get("git_dirty") is not None and not isinstance(d.get("git_dirty"), bool):
        return "field 'git_dirty' is not true or false"
    snap = d.get("snapshot")
    if snap is not None and not is_hash(snap):
        return "field 'snapshot' is not a hash"
    if d.get("rollback_from") is not None and not is_hash(d.get("rollback_from")):
        return "field 'rollback_from' is not a hash"
    argv, ci = d.get("argv"), d.get("ci")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return "field 'argv' is not a list of text"
    if not isinstance(ci, dict) or not all(_text(k) and _text(v) for k, v in ci.items()):
        return "field 'ci' is not a mapping of text"
    metrics = d.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        _text(f) and isinstance(m, dict) and all(_text(k) and _number(v) for k, v in m.items())
        for f, m in metrics.items()
    ):
        return "field 'metrics' is not a mapping of files to numbers"
    stages = d.get("stages", [])
    if not isinstance(stages, list):
        return "field 'stages' is not a list"
    for s in stages:
        problem = _stage_problem(s)
        if problem:
            return problem
    return None


def _stage_problem(s: Any) -> str | None:
    if not isinstance(s, dict) or not _text(s.get("name")) or not _text(s.get("status")):
        return "a stage has no name or status"
    where = f"stage {s['name'][:40]!r}"
    for k in ("signature", "stdout", "stderr"):  # the log hashes name objects
        if s.get(k) is not None and not is_hash(s[k]):
            return f"{where}: {k} {str(s[k])[:40]!r} is not a hash"
    if not _number(s.get("seconds")):
        return f"{where}: 'seconds' is not a number"
    code = s.get("exit_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        return f"{where}: 'exit_code' is not a whole number"
    if not isinstance(s.get("message"), str | None):
        return f"{where}: 'message' is not text"
    for k in ("executor", "worker"):
        if not _text(s.get(k), optional=True):
            return f"{where}: {k!r} is not a line of text"
    reasons = s.get("reasons", [])
    if not isinstance(reasons, list) or not all(
        isinstance(r, dict)
        and all(isinstance(k, str) and isinstance(v, str | None) for k, v in r.items())
        for r in reasons
    ):
        return f"{where}: 'reasons' is not a list of mappings of text"
    return _checks_problem(s.get("checks", []), where)


def _checks_problem(checks: Any, where: str) -> str | None:
    """`show` prints a stage's check outcomes: each must have its fields' types."""
    if not isinstance(checks, list):
        return f"{where}: 'checks' is not a list"
    for c in checks:
        if not (
            isinstance(c, dict)
            and all(_text(c.get(k)) for k in ("name", "kind", "severity"))
            and isinstance(c.get("ok"), bool)
            and isinstance(c.get("message"), str | None)
            and _number(c.get("seconds"))
        ):
            return f"{where}: 'checks' holds an entry that is not a check's outcome"
    return None


def _index_loader(backend: Backend):
    """How the run index reads one record it has not seen: (state, checked dict or None)."""
    from repro.errors import NewerFormatError
    from repro.runindex import BAD, NEWER, OK

    def load(run_id: str) -> tuple[int, dict[str, Any] | None]:
        try:
            return OK, _read_doc(backend, run_id)
        except NewerFormatError:
            return NEWER, None
        except Exception:
            return BAD, None

    return load


def _warn_newer(newer: int) -> None:
    if newer:
        sys.stderr.write(
            f"warning: {newer} run record(s) were made by a newer repro and are not shown; "
            "upgrade repro to see them.\n"
        )


def list_records(backend: Backend) -> list[RunRecord]:
    """Every record, newest first (run ids sort by time). A damaged or crafted record is left
    out; records in a newer format are left out with one line on stderr saying so, so a
    newer repro's runs never vanish from `repro log` unexplained. A project's cache answers
    from its run index (repro/runindex.py), reconciled with the store first."""
    import sqlite3

    from repro.runindex import NEWER, synced

    index = synced(backend, _index_loader(backend))
    if index is not None:
        try:
            out = [RunRecord.from_dict(d) for d in index.docs()]
            _warn_newer(index.count(NEWER))
            return out
        except (sqlite3.Error, ValueError, TypeError):
            index.discard()  # damaged under us: read the records themselves this once
        finally:
            index.close()
    return _read_all(backend)


def _read_all(backend: Backend) -> list[RunRecord]:
    """Every record read and checked from the store itself (no index)."""
    from repro.errors import NewerFormatError

    ids = sorted((name_of(k) for k in backend.list(RECORDS)), reverse=True)
    out = []
    newer = 0
    for rid in ids:
        try:
            out.append(load_record(backend, rid))
        except NewerFormatError:
            newer += 1
        except Exception:
            continue
    _warn_newer(newer)
    return out


def summaries(backend: Backend) -> Iterator[dict[str, Any]]:
    """The summary (repro.runindex.summary) of every usable record, newest first: from the
    index when the cache has one, else from the records."""
    import sqlite3

    from repro.runindex import NEWER, summary, synced

    index = synced(backend, _index_loader(backend))
    if index is None:
        for rec in _read_all(backend):
            yield summary(rec.to_dict())
        return
    try:
        _warn_newer(index.count(NEWER))
        yield from index.rows()
    except sqlite3.Error:  # damaged while streaming: rebuilt on the next read
        index.discard()
    finally:
        index.close()


def _ran(row: dict[str, Any], stage: str) -> bool:
    done = (Outcome.RAN, Outcome.RESTORED, Outcome.FAILED)
    return any(s["name"] == stage and s["status"] in done for s in row["stages"])


def iter_log_rows(
    project: Project, n: int | None = None, stage: str | None = None
) -> Iterator[dict[str, Any]]:
    """`log_rows`, one row at a time (so `log --json` over many runs can stream)."""
    count = 0
    if n is not None and n <= 0:
        return
    for row in summaries(project.cache.backend):
        if stage and not _ran(row, stage):
            continue
        yield {
            "run_id": row["run_id"],
            "snapshot": row["snapshot"],
            "started": row["started"],
            "user": row["user"],
            "host": row["host"],
            "git_commit": row["git_commit"],
            "status": row["status"],
            "kind": row["kind"],
            "metrics": row["metrics"],
        }
        count += 1
        if n is not None and count >= n:
            return


def log_rows(
    project: Project, n: int | None = None, stage: str | None = None
) -> list[dict[str, Any]]:
    """The runs `repro log` shows, newest first; answered from the run index."""
    return list(iter_log_rows(project, n, stage))
