"""Where bytes live: one small interface, two backends.

`LocalBackend` works on a local folder with plain `os` calls (no fsspec import on the hot path,
and it can link files instead of copying them). `FsspecBackend` works on any fsspec URL (`s3://`,
`gs://`, `memory://`, `file://` …). Nothing above this module knows which one it has. Keys are
POSIX paths relative to the store's root (`objects/ab/cdef…`, `runs/<sig>` …). Every write is
atomic: a temporary name and a rename, or a single put.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any


class Backend(ABC):
    url: str

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under the folder `prefix` (recursively), relative to the root."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, local_path: str, key: str) -> None:
        """Upload a local file under `key`, atomically."""

    @abstractmethod
    def get_file(self, key: str, local_path: str) -> None:
        """Download `key` to `local_path` (the caller verifies and renames)."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` (exclusive) of `key`: one ranged request on object stores, a
        seek and a read locally (packs are read this way, an object at a time or a run of
        neighbours at once). Short when the key is shorter; FileNotFoundError when absent."""
        return self.read_bytes(key)[start:end]

    def put_files(self, pairs: list[tuple[str, str]], jobs: int = 8) -> None:
        """Upload many (local path, key) pairs; backends that can overlap requests do."""
        _run_parallel([lambda lp=lp, k=k: self.put_file(lp, k) for lp, k in pairs], jobs)

    def get_files(self, pairs: list[tuple[str, str]], jobs: int = 8) -> list[bool]:
        """Download many (key, local path) pairs; returns, per pair, whether the key existed
        (so callers need no listing first). Other errors are raised."""

        def one(k: str, lp: str) -> bool:
            try:
                self.get_file(k, lp)
                return True
            except FileNotFoundError:
                return False

        return _run_parallel([lambda k=k, lp=lp: one(k, lp) for k, lp in pairs], jobs)

    def check(self) -> None:  # noqa: B027 - a no-op by default; remote backends override it
        """Raise FileNotFoundError / PermissionError / OSError when the store cannot be used."""


class LocalBackend(Backend):
    """A folder on this machine."""

    def __init__(self, root: str, tmp: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self.tmp = tmp or os.path.join(self.root, "tmp")
        self._made: set[str] = set()
        self._within = Within(self.root)

    def path(self, key: str) -> str:
        # Called once or twice per object on every add and checkout: the checks of `check_key`
        # and `Within.check` are inlined for their common case (a folder already vouched for).
        if ".." in key or key[:1] == "/" or "\x00" in key or "\\" in key:
            check_key(key)
        p = f"{self.root}/{key}"
        if p.rpartition("/")[0] not in self._within._ok:
            self._within.check(p, key)
        return p

    def _read_path(self, key: str) -> str:
        """`path(key)` for reading: an entry that is itself a symlink is refused (a shared
        folder's `records/<id> -> ~/.ssh/id_rsa` must not be copied into our cache)."""
        p = self.path(key)
        _refuse_special(p, key)
        return p

    def tmp_path(self) -> str:
        if self.tmp not in self._made:
            os.makedirs(self.tmp, exist_ok=True)
            self._made.add(self.tmp)
        return os.path.join(self.tmp, unique_name())

    def ensure_parent(self, key: str) -> str:
        dst = self.path(key)
        parent = os.path.dirname(dst)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        return dst

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def list(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix)
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for f in files:
                yield f"{rel}/{f}"

    def read_bytes(self, key: str) -> bytes:
        with open(self._read_path(key), "rb") as f:
            return f.read()

    def read_range(self, key: str, start: int, end: int) -> bytes:
        with open(self._read_path(key), "rb") as f:
            # No buffer larger than the file: a caller may ask for "up to N bytes" (a bound on
            # what an untrusted file may cost), and the file is usually far shorter.
            end = min(end, os.fstat(f.fileno()).st_size)
            return os.pread(f.fileno(), max(0, end - start), start)

    def write_bytes(self, key: str, data: bytes) -> None:
        dst = self.ensure_parent(key)
        tmp = self.tmp_path()
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)

    def put_file(self, local_path: str, key: str) -> None:
        dst = self.ensure_parent(key)
        tmp = self.tmp_path()
        import shutil

        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get_file(self, key: str, local_path: str) -> None:
        import shutil

        shutil.copyfile(self._read_path(key), local_path)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))

    def size(self, key: str) -> int:
        return os.stat(self.path(key)).st_size


class FsspecBackend(Backend):
    """Any fsspec filesystem. Imported lazily: fsspec (and s3fs) cost start-up time."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        # A folder on this machine (file://): its symlinks must not lead a key out of it.
        local = any(p in ("file", "local") for p in protocols)
        self._within = Within(self.root or "/") if local else None

    def _p(self, key: str) -> str:
        check_key(key)
        p = f"{self.root}/{key}" if self.root else key
        if self._within is not None:
            self._within.check(p, key)
        return p

    def _rp(self, key: str) -> str:
        """`_p(key)` for reading: on a local folder, an entry that is a symlink is refused."""
        p = self._p(key)
        if self._within is not None:
            _refuse_special(p, key)
        return p

    def check(self) -> None:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol in ("file", "local", "memory"):
            self.fs.makedirs(self.root, exist_ok=True)
            return
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.ls(bucket, detail=False, refresh=True)  # raises on 403 (exists() would not)
        except FileNotFoundError:
            raise FileNotFoundError(f"bucket '{bucket}' does not exist") from None

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._p(key)))

    def list(self, prefix: str) -> Iterator[str]:
        base = self._p(prefix)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return
        strip = len(self.root) + 1 if self.root else 0
        for p in found:
            yield p[strip:] if p.startswith(self.root) else p

    def read_bytes(self, key: str) -> bytes:
        return bytes(self.fs.cat_file(self._rp(key)))

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        try:
            return bytes(self.fs.cat_file(self._rp(key), start=start, end=end))
        except OSError as exc:
            # S3 answers a range that starts at or past the end (an empty object, a pack
            # shorter than its index says) with 416, which s3fs raises as EINVAL: that range
            # holds no bytes, as `read_range` promises ("short when the key is shorter").
            if exc.errno == errno.EINVAL and "range" in str(exc).lower():
                return b""
            raise

    def _put(self, key: str, write: Callable[[str], None]) -> None:
        """Object stores put a whole object in one request (atomic already); file-like stores
        get it under a temporary name first, then a rename."""
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        if not any(p in ("file", "local") for p in protocols):
            write(self._p(key))
            return
        tmp = self._p(f"tmp/{unique_name()}")
        self.fs.makedirs(os.path.dirname(tmp), exist_ok=True)
        write(tmp)
        self.fs.makedirs(os.path.dirname(self._p(key)), exist_ok=True)
        self.fs.mv(tmp, self._p(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        self._put(key, lambda path: self.fs.pipe_file(path, data))

    def put_file(self, local_path: str, key: str) -> None:
        self._put(key, lambda path: self.fs.put_file(local_path, path))

    def get_file(self, key: str, local_path: str) -> None:
        self.fs.get_file(self._rp(key), local_path)

    def _object_store(self) -> bool:
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        return bool(getattr(self.fs, "async_impl", False)) and not any(
            p in ("file", "local") for p in protocols
        )

    def put_files(self, pairs: list[tuple[str, str]], jobs: int = 8) -> None:
        if not self._object_store():
            return super().put_files(pairs, jobs)
        self._gather([self.fs._put_file(lp, self._p(k)) for lp, k in pairs], jobs * 4)

    def get_files(self, pairs: list[tuple[str, str]], jobs: int = 8) -> list[bool]:
        if not self._object_store():
            return super().get_files(pairs, jobs)
        results = self._gather(
            [self.fs._get_file(self._p(k), lp) for k, lp in pairs], jobs * 4, missing_ok=True
        )
        return [not isinstance(r, FileNotFoundError) for r in results]

    def _gather(self, coros: list, limit: int, missing_ok: bool = False) -> list:
        """Run an async filesystem's requests concurrently on its own event loop (one
        connection pool, `limit` requests in flight) instead of one blocking call each."""
        import asyncio

        from fsspec.asyn import sync

        async def run_all() -> list:
            sem = asyncio.Semaphore(limit)

            async def one(c):
                async with sem:
                    try:
                        return await c
                    except FileNotFoundError as exc:
                        if missing_ok:
                            return exc
                        raise

            return await asyncio.gather(*(one(c) for c in coros))

        return sync(self.fs.loop, run_all) if coros else []

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._p(key))

    def size(self, key: str) -> int:
        return int(self.fs.size(self._p(key)))


class Within:
    """Whether paths under a store's root stay there once symlinks are resolved: a shared
    folder's `objects/ab -> /home/you/somewhere` must not make a push write there. One
    `realpath` per distinct folder (memoised), so checking every object costs a dict lookup."""

    def __init__(self, root: str) -> None:
        self.root_real = os.path.realpath(root)
        self._ok: set[str] = set()

    def check(self, path: str, key: str) -> None:
        folder = os.path.dirname(path)
        if folder in self._ok:
            return
        real = os.path.realpath(folder)
        if real != self.root_real and not real.startswith(self.root_real.rstrip(os.sep) + os.sep):
            raise _outside(key, real)
        self._ok.add(folder)


def _refuse_special(path: str, key: str) -> None:
    """A local store entry to be read: a symlink is refused (it may lead out of the store), and
    so is a FIFO or device (reading one would hang or never end); a folder or a missing entry
    is left to the read to report."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if stat.S_ISLNK(mode):
        raise _outside(key, os.path.realpath(path))
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        from repro.errors import UntrustedInputError

        raise UntrustedInputError("store", "key", key, "is not a regular file")


def _outside(key: str, real: str) -> Exception:
    from repro.errors import UntrustedInputError

    return UntrustedInputError(
        "store", "key", key, f"leads through a symlink out of the store (to {real})"
    )


def check_key(key: str) -> None:
    """The last line of defence: no key, whatever its source, names a place outside the store's
    root. (Callers validate keys from listings and records first, with `repro.safety`; this is a
    cheap substring test on every access.)"""
    if ".." in key or key.startswith("/") or "\x00" in key or "\\" in key:
        from repro.errors import UntrustedInputError

        raise UntrustedInputError("store", "key", key, "would lead outside the store")


def _run_parallel(calls: list[Callable[[], Any]], jobs: int) -> list[Any]:
    if jobs <= 1 or len(calls) <= 1:
        return [c() for c in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(jobs) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


_counter = itertools.count()
_run_tag = f"{os.getpid()}-{os.urandom(4).hex()}"


def unique_name() -> str:
    """A temporary name no other process or thread uses (cheaper than uuid4 per file)."""
    return f"{_run_tag}-{threading.get_ident()}-{next(_counter)}"


def open_backend(url: str, storage_options: dict[str, Any] | None = None) -> Backend:
    """A backend for `url`: plain paths get the fast local backend, URLs go through fsspec."""
    if "://" not in url:
        return LocalBackend(url)
    return FsspecBackend(url, storage_options)
