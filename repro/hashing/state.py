"""The stat cache: path → hash, trusted only while the file's stat is unchanged.

Kept in SQLite (`.repro/state.db`, WAL mode, so concurrent repro processes share it) and keyed
by path, inode, size, mtime_ns and ctime_ns. A file whose mtime falls within RACY_NS of the moment
it was hashed could have been rewritten in the same timestamp tick after the read (git's "racy"
case); such an entry is not trusted and the file is read again.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from repro.safety import is_hash

# Coarser than any kernel timestamp tick (HZ=100 gives 10 ms) with margin.
RACY_NS = 50_000_000


@dataclass(frozen=True, slots=True)
class StatKey:
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# SQLite's result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB.
_CORRUPT_CODES = (11, 26)
# SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL: a write the stat cache can do without.
_SKIP_WRITE_CODES = (8, 10, 13)


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


class StateDB:
    """A persistent stat cache. `None` path means in-memory (used outside a project).

    It is only a cache: a damaged file (not a database, a malformed page) is deleted and built
    again, with one warning on stderr; a file that cannot be opened at all (a folder in its
    place, no permission) is replaced by an in-memory cache for this process."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._warned = False
        self._lock = threading.RLock()  # one connection shared by the run's worker threads
        try:
            self._open(path)
        except sqlite3.DatabaseError as exc:
            if not path:
                raise
            self._recover(exc)

    def _open(self, path: str | None) -> None:
        self._conn = sqlite3.connect(
            path or ":memory:", timeout=30, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout=30000")
        if path:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS state (path TEXT PRIMARY KEY, ino INTEGER, size INTEGER,"
            " mtime INTEGER, ctime INTEGER, hash TEXT, checked INTEGER) WITHOUT ROWID"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY, fingerprint TEXT,"
            " hash TEXT, size INTEGER, checked INTEGER) WITHOUT ROWID"
        )

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """Rebuild a damaged state.db (or fall back to memory); warn once on stderr."""
        import contextlib
        import sys

        with contextlib.suppress(Exception):
            self._conn.close()
        name = os.path.join(".repro", os.path.basename(self.path or "state.db"))
        if self.path and _is_corrupt(exc):
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.unlink(self.path + suffix)
            try:
                self._open(self.path)
                sys.stderr.write(
                    f"warning: {name} was damaged ({exc}); rebuilt it (it is only a cache).\n"
                )
                return
            except sqlite3.DatabaseError as again:
                exc = again
        sys.stderr.write(
            f"warning: {name} cannot be used ({exc}); keeping the stat cache in memory.\n"
        )
        self.path = None
        self._open(None)

    def _guard(self, fn: Any) -> Any:
        """Run `fn()`; when the database turns out damaged, rebuild it and run `fn()` again."""
        try:
            return fn()
        except sqlite3.DatabaseError as exc:
            if not (self.path and _is_corrupt(exc)):
                raise
            self._recover(exc)
            return fn()

    def close(self) -> None:
        self._conn.close()

    @staticmethod
    def _trust(row: tuple, key: StatKey) -> str | None:
        ino, size, mtime, ctime, digest, checked = row
        if not is_hash(digest) or not isinstance(checked, int):
            return None  # a damaged row vouches for nothing
        if (ino, size, mtime, ctime) != (key.ino, key.size, key.mtime_ns, key.ctime_ns):
            return None
        if key.mtime_ns >= checked - RACY_NS:
            # Racy: the content could have changed after we read it, within one timestamp tick.
            # Only mtime counts here: ctime also moves on chmod and link, which keep content.
            return None
        return digest

    def get(self, path: str, key: StatKey) -> str | None:
        with self._lock:
            row = self._guard(
                lambda: self._conn.execute(
                    "SELECT ino, size, mtime, ctime, hash, checked FROM state WHERE path=?",
                    (path,),
                ).fetchone()
            )
        return self._trust(row, key) if row else None

    def get_under(self, folder: str) -> dict[str, tuple]:
        """All rows for paths inside `folder` (one range query instead of one per file)."""
        lo = folder.rstrip("/") + "/"
        hi = lo[:-1] + "0"  # '0' sorts right after '/'
        with self._lock:
            rows = self._guard(
                lambda: self._conn.execute(
                    "SELECT path, ino, size, mtime, ctime, hash, checked FROM state"
                    " WHERE path >= ? AND path < ?",
                    (lo, hi),
                ).fetchall()
            )
        return {r[0]: r[1:] for r in rows}

    def lookup(self, rows: dict[str, tuple], path: str, key: StatKey) -> str | None:
        row = rows.get(path)
        return self._trust(row, key) if row else None

    def put_many(self, items: Iterable[tuple[str, StatKey, str, int]]) -> None:
        """Record (path, stat, hash, time_hashing_started_ns) in one transaction."""
        data = [
            (p, k.ino, k.size, k.mtime_ns, k.ctime_ns, h, checked) for p, k, h, checked in items
        ]
        if not data:
            return
        self.execute_many("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?, ?, ?)", data)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """One statement (for the tables other modules keep in the same database)."""
        with self._lock:
            return self._guard(lambda: self._conn.execute(sql, params).fetchall())

    def execute_many(self, sql: str, data: list[tuple]) -> None:
        """Run `sql` over `data` in one transaction (one fsync for a whole batch). On a full
        disk or a read-only file the write is dropped with one warning: a cache that cannot
        remember only costs re-hashing later."""

        def write() -> None:
            with self._conn:
                self._conn.execute("BEGIN")
                self._conn.executemany(sql, data)

        with self._lock:
            try:
                self._guard(write)
            except sqlite3.OperationalError as exc:
                code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
                if code not in _SKIP_WRITE_CODES:
                    raise
                if not self._warned:
                    import sys

                    self._warned = True
                    sys.stderr.write(f"warning: .repro/state.db not updated ({exc}).\n")

    def get_folder(self, path: str, fingerprint: str, newest: int) -> tuple[str, int] | None:
        """The tree hash and size recorded for a folder whose fingerprint is unchanged, unless
        any file in it was modified within RACY_NS of that hashing (`newest`: the largest
        mtime among its files)."""
        with self._lock:
            row = self._guard(
                lambda: self._conn.execute(
                    "SELECT fingerprint, hash, size, checked FROM folders WHERE path=?", (path,)
                ).fetchone()
            )
        if row is None or row[0] != fingerprint or not is_hash(row[1]):
            return None
        if not isinstance(row[2], int) or not isinstance(row[3], int):
            return None
        limit = row[3] - RACY_NS
        if newest >= limit:
            return None
        return row[1], row[2]

    def has_folder(self, path: str) -> bool:
        """Whether a fingerprint is recorded for folder `path` at all (without one, no walk can
        hit: the caller skips the streaming check and walks once)."""
        with self._lock:
            row = self._guard(
                lambda: self._conn.execute("SELECT 1 FROM folders WHERE path=?", (path,)).fetchone()
            )
        return row is not None

    def put_folder(self, path: str, fingerprint: str, h: str, size: int, checked: int) -> None:
        self.execute_many(
            "INSERT OR REPLACE INTO folders VALUES (?, ?, ?, ?, ?)",
            [(path, fingerprint, h, size, checked)],
        )


def now_ns() -> int:
    return time.time_ns()


def restat(state: StateDB, items: Iterable[tuple[str, StatKey, StatKey]]) -> None:
    """After a metadata-only change (chmod, a new hardlink), move an entry from its old stat to
    the new one, keeping the time its content was read (so the racy check stays exact)."""
    data = [
        (new.ino, new.ctime_ns, path, old.ino, old.size, old.mtime_ns, old.ctime_ns)
        for path, old, new in items
    ]
    if data:
        state.execute_many(
            "UPDATE state SET ino=?, ctime=? WHERE path=? AND ino=? AND size=? AND mtime=?"
            " AND ctime=?",
            data,
        )
