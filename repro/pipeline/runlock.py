"""One `repro run` at a time per project.

An advisory `flock` on `.repro/run.lock`: the kernel drops it when the holder exits, so a crashed
run never blocks the next one. The holder writes who it is into the file, so a second run can say
exactly who holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
import sys
import time
from collections.abc import Iterator

from repro.errors import LockHeldError


@contextlib.contextmanager
def run_lock(dot: str, wait: float = 0.0) -> Iterator[None]:
    path = os.path.join(dot, "run.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
                    raise LockHeldError(
                        f"another repro run holds the project lock ({holder}); wait for it to "
                        "finish, or pass --wait SECONDS."
                    ) from None
                time.sleep(0.1)
        who = (
            f"pid {os.getpid()} by {_user()} on {socket.gethostname()}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}: "
            f"{' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))}"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, who.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())
