"""The run index: a summary of every run record, kept in SQLite so `repro log` need not read them.

`repro log` used to read and validate every `records/<run id>` object on each call; with 10,000
runs that is seconds. The index (`.repro/state-runs.db`, a SQLite file in WAL mode beside the
stat cache, git-ignored by the same `/state-*.db*` rule) holds, per run id, the record file's
stat (inode, size, mtime_ns, ctime_ns), whether the record was usable, its summary (the row
`log` prints, plus each stage's name, status and seconds) and the validated record itself.

It is only a cache, so every answer equals what reading the records gives:
- saving a record adds its row (`put`);
- every read first reconciles the index with the store's listing (`sync`): a record it has not
  seen (one `pull` brought) or whose file's stat changed is read once through the caller's
  loader; an id gone from the store is dropped;
- a missing, damaged or outdated index file is rebuilt silently; one that cannot be written is
  not used (callers read the records as before).

Only a project's own cache (`<project>/.repro/cache`) has an index; remotes are read directly.
Two processes may write at once: SQLite's WAL and busy timeout serialise them, as for the stat
cache. This module sits below repro.records: it handles records as plain dicts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from repro.canonical import packb, unpackb
from repro.hashing.state import RACY_NS
from repro.store.backend import Backend, LocalBackend
from repro.store.layout import RECORD_FORMAT, RECORDS

INDEX_FILE = "state-runs.db"
# Bumped whenever the table or the summary changes: an index of another version is rebuilt.
SCHEMA = 1
OK, BAD, NEWER = 1, 0, 2  # what reading a record gave: usable, damaged, a newer repro's

# (state, record dict or None): how the caller reads one record from the store
Loader = Callable[[str], tuple[int, dict[str, Any] | None]]
Stat = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns

_SUMMARY_FIELDS = (
    "run_id",
    "kind",
    "snapshot",
    "started",
    "ended",
    "user",
    "host",
    "git_commit",
    "git_dirty",
    "status",
    "metrics",
)


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What `log` shows of a (validated) record: its headline fields and per-stage outcome."""
    out = {k: doc.get(k) for k in _SUMMARY_FIELDS}
    out["metrics"] = out["metrics"] or {}
    out["stages"] = [
        {"name": s.get("name"), "status": s.get("status"), "seconds": s.get("seconds")}
        for s in doc.get("stages") or []
    ]
    return out


def index_path(backend: Backend) -> str | None:
    """Where the index of `backend` lives: only a project's own cache has one."""
    if not isinstance(backend, LocalBackend):
        return None
    root = backend.root.rstrip("/")
    dot, name = os.path.split(root)
    if name != "cache" or os.path.basename(dot) != ".repro":
        return None
    return os.path.join(dot, INDEX_FILE)


@dataclass
class Entry:
    """One file under `records/`: its run id and stat."""

    run_id: str
    stat: Stat


def _stat_of(st: os.stat_result) -> Stat:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _walk(base: str, prefix: str = "") -> Iterator[Entry]:
    """The files under `base` as `LocalBackend.list` names them (recursive; a symlink to a
    folder is not entered), with their own stat (a symlink's, not its target's)."""
    try:
        it = os.scandir(base)
    except (FileNotFoundError, NotADirectoryError):
        return
    with it:
        for e in it:
            name = f"{prefix}{e.name}"
            try:
                if e.is_dir():
                    if not e.is_symlink():
                        yield from _walk(e.path, name + "/")
                    continue
                yield Entry(name, _stat_of(e.stat(follow_symlinks=False)))
            except OSError:
                continue  # gone while listing: the next read sees the store as it is then


def listing(backend: LocalBackend) -> dict[str, Stat]:
    """Run id -> stat of every record file in the store."""
    return {e.run_id: e.stat for e in _walk(os.path.join(backend.root, RECORDS))}


def _encodable(run_id: str) -> bool:
    try:
        run_id.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False  # a file name that is no text: never a valid record's id


class RunIndex:
    """The index file of one project cache (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    # -- opening ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, ino INTEGER,"
                " size INTEGER, mtime INTEGER, ctime INTEGER, checked INTEGER, state INTEGER,"
                " row TEXT, doc BLOB) WITHOUT ROWID"
            )
            version = f"{SCHEMA}/{RECORD_FORMAT}"
            found = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if found is None or found[0] != version:
                # Another repro's index (its summaries or readable formats differ): start over.
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("DELETE FROM runs")
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (version,))
        except BaseException:
            conn.close()
            raise
        return conn

    def conn(self) -> sqlite3.Connection:
        """The connection, opened on first use; a damaged file is deleted and made anew."""
        if self._conn is None:
            if os.path.islink(self.path):
                raise sqlite3.OperationalError("the run index is a symlink; not used")
            try:
                self._conn = self._connect()
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    raise
                self.discard()
                self._conn = self._connect()
        return self._conn

    def discard(self) -> None:
        """Close and delete the index file (it is rebuilt from the store on the next read)."""
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(self.path + suffix)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # -- writing ------------------------------------------------------------------------------
    def put(
        self, run_id: str, stat: Stat, checked: int, state: int, doc: dict[str, Any] | None
    ) -> None:
        """Add or replace the row of one record file (`checked`: when its content was known)."""
        self._write([_row(run_id, stat, checked, state, doc)], [])

    def _write(self, rows: list[tuple], gone: list[str]) -> None:
        conn = self.conn()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            if rows:
                conn.executemany("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)", rows)
            if gone:
                conn.executemany("DELETE FROM runs WHERE run_id=?", [(g,) for g in gone])

    def sync(self, backend: LocalBackend, load: Loader) -> None:
        """Make the index agree with the store: read records it lacks or whose file changed,
        drop ids the store no longer has."""
        files = listing(backend)
        known = {
            r[0]: ((r[1], r[2], r[3], r[4]), r[5])
            for r in self.conn().execute(
                "SELECT run_id, ino, size, mtime, ctime, checked FROM runs"
            )
        }
        fresh = [rid for rid, st in files.items() if _stale(known.get(rid), st) and _encodable(rid)]
        gone = [rid for rid in known if rid not in files]
        # A record saved after our listing is no reason to drop its row: look once more.
        base = os.path.join(backend.root, RECORDS)
        gone = [rid for rid in gone if not os.path.lexists(os.path.join(base, rid))]
        rows = []
        for rid in fresh:
            checked = time.time_ns()
            state, doc = load(rid)
            rows.append(_row(rid, files[rid], checked, state, doc))
            if len(rows) >= 500:  # a long rebuild commits as it goes
                self._write(rows, [])
                rows = []
        if rows or gone:
            self._write(rows, gone)

    # -- reading ------------------------------------------------------------------------------
    def rows(self) -> Iterator[dict[str, Any]]:
        """The summaries of the usable records, newest first (run ids sort by time)."""
        cur = self.conn().execute("SELECT row FROM runs WHERE state=? ORDER BY run_id DESC", (OK,))
        for (text,) in cur:
            yield json.loads(text)

    def docs(self) -> Iterator[dict[str, Any]]:
        """The usable records themselves, newest first."""
        cur = self.conn().execute("SELECT doc FROM runs WHERE state=? ORDER BY run_id DESC", (OK,))
        for (blob,) in cur:
            yield unpackb(blob)

    def count(self, state: int) -> int:
        sql = "SELECT count(*) FROM runs WHERE state=?"
        return self.conn().execute(sql, (state,)).fetchone()[0]


def _stale(known: tuple[Stat, int] | None, stat: Stat) -> bool:
    """Whether a record file must be read again: unseen, its stat changed, or written so
    close to when it was read that a rewrite in the same timestamp tick (same inode reused,
    same size) could hide behind an unchanged stat: git's "racy" case, as in the stat cache."""
    if known is None or known[0] != stat:
        return True
    checked = known[1]
    return not isinstance(checked, int) or stat[2] >= checked - RACY_NS


def _row(run_id: str, stat: Stat, checked: int, state: int, doc: dict[str, Any] | None) -> tuple:
    """The row of one record file; `checked` is the time just before it was read."""
    if state != OK or doc is None:
        return (run_id, *stat, checked, state if state != OK else BAD, None, None)
    row = json.dumps(summary(doc), separators=(",", ":"), default=str)
    return (run_id, *stat, checked, OK, row, packb(doc))


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """A file that is no database or has malformed pages (SQLITE_CORRUPT, SQLITE_NOTADB)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def open_index(backend: Backend) -> RunIndex | None:
    """The index of `backend`, or None when it has none (a remote, a plain folder)."""
    path = index_path(backend)
    return RunIndex(path) if path else None


def synced(backend: Backend, load: Loader) -> RunIndex | None:
    """The index of `backend` reconciled with its store, or None when there is none or it
    cannot be used here (read-only, locked out): the caller then reads the records."""
    index = open_index(backend)
    if index is None:
        return None
    for attempt in (1, 2):
        try:
            index.sync(backend, load)
            return index
        except sqlite3.DatabaseError as exc:
            index.close()
            if attempt == 1 and _damaged(exc):
                index.discard()  # rebuilt silently: it is only a cache
                continue
            return None
        except OSError:
            index.close()
            return None
    return None


def record_saved(backend: Backend, run_id: str, doc: dict[str, Any], written: int) -> None:
    """Add the record written to `backend` at `written` (time_ns, taken before the write) to
    its index (nothing when it has none). A failure is left for the next read to repair: the
    record itself is what counts."""
    index = open_index(backend)
    if index is None:
        return
    try:
        from repro.store.layout import record_key

        st = os.stat(os.path.join(backend.root, record_key(run_id)), follow_symlinks=False)
        index.put(run_id, _stat_of(st), written, OK, doc)
    except (sqlite3.Error, OSError):
        pass
    finally:
        index.close()
