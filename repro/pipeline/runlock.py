"""The project lock: one command at a time writes the workspace or deletes from the cache.

An advisory `flock` on `.repro/run.lock`. The kernel drops it when the last file descriptor of
the lock's open file goes away, so a crashed command never blocks the next one. The stages a
run starts inherit that descriptor (`held_fds()` is passed to them): if repro itself is killed,
a stage process that survives it keeps the project locked until it exits, so the next command
waits or refuses instead of recording a dying stage's writes as its own.

The holder writes who it is into the file (and which stages it has running, with their process
groups), so a second command can say exactly who holds the lock and how to stop it.

Who takes it: every command that writes the workspace or deletes from the cache (run, add,
checkout, restore, pull, local gc, fsck --repair). Readers (status, diff, log, show) take none:
a run can last hours and watching it is what they are for; they write nothing but the stat
cache (SQLite, locked by itself), and `repro.lock` is replaced by a rename, so a reader sees the
old file or the new one, never half of one.

The lock is re-entrant within a process: `pull` checks out under the lock it holds already
(a second `flock` on a new descriptor of the same file would conflict with the first).

Taking it (the outermost time) also removes temporary files that killed commands left behind:
in `.repro/tmp` (names carry the writer's pid) and beside workspace targets (see
`repro.store.links`), when their writer is dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from repro.errors import LockHeldError

STALE_SECONDS = 3600.0
_TMP_NAME = re.compile(r"^(\d+)-[0-9a-f]{8}-\d+-\d+$")
_JOURNAL = re.compile(r"^beside-((\d+)-[0-9a-f]{8})$")
_HOLDER = re.compile(r"^pid (\d+) by .* on (\S+), started")


@dataclass
class _Held:
    path: str
    fd: int
    depth: int
    who: str
    stages: dict[int, str] = field(default_factory=dict)  # process group -> stage name


_held: dict[str, _Held] = {}
_guard = threading.Lock()


@contextlib.contextmanager
def run_lock(dot: str, wait: float = 0.0) -> Iterator[None]:
    """Hold the project lock of the project whose `.repro` folder is `dot` (waiting up to
    `wait` seconds for another holder); re-entrant within this process."""
    path = os.path.join(os.path.abspath(dot), "run.lock")
    with _guard:
        held = _held.get(path)
        if held is not None:
            held.depth += 1
    if held is not None:
        try:
            yield
        finally:
            with _guard:
                held.depth -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, wait)
        argv = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
        who = (
            f"pid {os.getpid()} by {_user()} on {socket.gethostname()}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}: "
            f"{' '.join(argv.split())[:300]}"
        )
        held = _Held(path, fd, 1, who)
        with _guard:
            _held[path] = held
            _write_holder(held)
        try:
            dot = os.path.abspath(dot)
            _start_clean(os.path.join(dot, "tmp"), os.path.dirname(dot))
            yield
        finally:
            with _guard:
                del _held[path]
            _end_journal()
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


project_lock = run_lock


def held_fds() -> tuple[int, ...]:
    """Descriptors of the locks this process holds: a stage inherits them (`pass_fds`)."""
    with _guard:
        return tuple(h.fd for h in _held.values())


def stage_started(name: str, pgid: int) -> None:
    """Note in the lock file that stage `name` runs as process group `pgid` (so, should repro
    die and the stage live on, the next command can name it)."""
    with _guard:
        for h in _held.values():
            h.stages[pgid] = name
            _write_holder(h)


def stage_finished(pgid: int) -> None:
    with _guard:
        for h in _held.values():
            if h.stages.pop(pgid, None) is not None:
                _write_holder(h)


def _write_holder(h: _Held) -> None:
    text = h.who + "".join(f"\nstage '{n}' (process group {g})" for g, n in h.stages.items())
    with contextlib.suppress(OSError):
        os.ftruncate(h.fd, 0)
        os.pwrite(h.fd, text.encode(), 0)


def _acquire(fd: int, wait: float) -> None:
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                raise LockHeldError(_held_message(text)) from None
            time.sleep(0.1)


def _held_message(text: str) -> str:
    """Who holds the lock, in one sentence: a live repro command, or the stages that outlived
    the repro command that started them (with the command that stops them)."""
    first, *rest = text.splitlines() or ["unknown"]
    m = _HOLDER.match(first)
    dead = bool(m) and m.group(2) == socket.gethostname() and not pid_alive(int(m.group(1)))
    if dead and rest:
        groups = re.findall(r"^stage '(.*)' \(process group (\d+)\)$", "\n".join(rest), re.M)
        if groups:
            names = ", ".join(f"'{n}'" for n, _ in groups)
            kill = "; ".join(f"kill -- -{g}" for _, g in groups)
            return (
                f"stage {names} still holds the project lock: it outlived the repro command "
                f"that started it ({first}); wait for it to finish (--wait SECONDS) or stop "
                f"it: {kill}"
            )
    return (
        f"another repro command holds the project lock ({first}); wait for it to finish, "
        "or pass --wait SECONDS."
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- temporary files left by killed commands --------------------------------------------------
def _start_clean(tmp_dir: str, root: str) -> None:
    """Remove what killed commands left; then note our own temporaries beside workspace files
    so that the next command can remove them should we be killed."""
    try:
        clean_stale_temps(tmp_dir, root)
    except OSError:
        pass  # cleaning is a courtesy: it never stops a command
    from repro.store import links

    links.set_journal(tmp_dir)


def _end_journal() -> None:
    from repro.store import links

    links.set_journal(None)


def clean_stale_temps(tmp_dir: str, root: str, now: float | None = None) -> int:
    """Remove temporary files in `tmp_dir` whose writer is dead (or that are older than an
    hour), the `.NAME.<tag>` files a dead writer left beside workspace targets (their folders
    are listed in its journal), and a `repro.lock.tmp` over a minute old. Returns how many
    were removed."""
    now = time.time() if now is None else now
    me = os.getpid()
    removed = 0
    half_lock = os.path.join(root, "repro.lock.tmp")  # a killed save_lock's
    with contextlib.suppress(OSError):
        if now - os.lstat(half_lock).st_mtime > 60:
            os.unlink(half_lock)
            removed += 1
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return removed
    for name in names:
        p = os.path.join(tmp_dir, name)
        m = _TMP_NAME.match(name)
        if m:
            pid = int(m.group(1))
            if pid == me:
                continue
            with contextlib.suppress(OSError):
                if not pid_alive(pid) or now - os.lstat(p).st_mtime > STALE_SECONDS:
                    os.unlink(p)
                    removed += 1
            continue
        j = _JOURNAL.match(name)
        if j and int(j.group(2)) != me and not pid_alive(int(j.group(2))):
            removed += _clean_beside(p, j.group(1), root)
    return removed


def _clean_beside(journal: str, tag: str, root: str) -> int:
    """Remove the temporaries the writer `tag` made beside workspace files, then its journal."""
    pattern = re.compile(r"^\..+\." + re.escape(tag) + r"-\d+-\d+$")
    real_root = os.path.realpath(root)
    removed = 0
    try:
        with open(journal, encoding="utf-8", errors="replace") as f:
            folders = {line.rstrip("\n") for line in f if line.strip()}
    except OSError:
        return 0
    for folder in folders:
        real = os.path.realpath(folder)
        if real != real_root and not real.startswith(real_root + os.sep):
            continue  # the journal names folders of this project only
        try:
            entries = os.listdir(real)
        except OSError:
            continue
        for name in entries:
            if pattern.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(real, name))
                    removed += 1
    with contextlib.suppress(OSError):
        os.unlink(journal)
    return removed


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())
