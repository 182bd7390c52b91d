"""Hash one file's bytes, streamed through a reused buffer so memory stays flat.

The hash of a file equals `xxhash.xxh3_128(content).hexdigest()` (or BLAKE3-128 when the
project chose `hash = "blake3"`, see `repro.canonical.use_hash`). Small files are read in one
call; larger ones are filled with `readinto` into a buffer reused across calls in the same
thread (python-xxhash releases the GIL for updates over 64 KiB, so threads hashing large files
run in parallel).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from repro.canonical import content_hasher, hash_bytes
from repro.errors import HashError

CHUNK = 4 << 20  # 4 MiB: large enough that syscall and GIL costs vanish, small enough for L2/L3
_local = threading.local()


def _buffer() -> memoryview:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(CHUNK))
        _local.buf = buf
    return buf


def hash_fd(fd: int, size_hint: int, progress: Callable[[int], None] | None = None) -> str:
    """Hash everything readable from `fd` (its current offset to EOF)."""
    if size_hint < CHUNK:
        # One read of size+1 bytes: a short read is EOF, so an unchanged small file costs a
        # single read call; a file that grew meanwhile is read on to its end.
        content = os.read(fd, size_hint + 1)
        if len(content) > size_hint:
            chunks = [content]
            while data := os.read(fd, 1 << 16):
                chunks.append(data)
            content = b"".join(chunks)
        if progress:
            progress(len(content))
        return hash_bytes(content)
    h = content_hasher()
    buf = _buffer()
    while True:
        n = os.readv(fd, [buf])
        if not n:
            break
        h.update(buf[:n])
        if progress:
            progress(n)
    return h.hexdigest()


def hash_file(
    path: str | os.PathLike[str],
    progress: Callable[[int], None] | None = None,
    size: int | None = None,
) -> str:
    """Return the xxh3-128 hex digest of the file at `path` (symlinks followed). `size`, when
    the caller has just stat'ed the file, saves an fstat."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise HashError(f"{os.fspath(path)}: no such file.") from None
    except IsADirectoryError:
        raise HashError(f"{os.fspath(path)}: is a folder, not a file.") from None
    except OSError as exc:
        raise HashError(f"{os.fspath(path)}: cannot be read ({exc.strerror}).") from None
    try:
        if size is None:
            size = os.fstat(fd).st_size
        if hasattr(os, "posix_fadvise") and size >= CHUNK:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return hash_fd(fd, size, progress)
    except OSError as exc:
        raise HashError(f"{os.fspath(path)}: read failed ({exc.strerror}).") from None
    finally:
        os.close(fd)
