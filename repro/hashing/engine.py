"""The hashing engine: paths to hashes, through the stat cache.

Walks folders with `os.scandir`, asks the stat cache for every file in one range query, and reads
only the files whose stat changed. Files under 4 MiB are hashed in the calling thread (for small
files the cost is syscalls, and threads only add GIL hand-offs: see benchmarks/); larger files go
to a thread pool, since xxhash releases the GIL on large updates.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Callable
from dataclasses import dataclass, field

from repro.errors import PathError
from repro.hashing.filehash import CHUNK, hash_file
from repro.hashing.state import StateDB, StatKey, now_ns
from repro.hashing.tree import Tree, TreeEntry
from repro.hashing.walk import WalkEntry, walk_files

Progress = Callable[[int], None]


@dataclass
class FileInfo:
    rel: str
    abs: str
    key: StatKey
    hash: str
    executable: bool


@dataclass
class HashResult:
    """The hash of one path: a file's content hash or a folder's tree hash."""

    path: str
    hash: str
    size: int
    is_dir: bool
    tree: Tree | None = None
    files: list[FileInfo] = field(default_factory=list)

    @property
    def nfiles(self) -> int:
        return len(self.files) if self.is_dir else 1


def _is_exec(st: os.stat_result) -> bool:
    return bool(st.st_mode & 0o111)


class Hasher:
    """Hash files and folders, trusting the stat cache for unchanged files."""

    def __init__(self, state: StateDB | None = None, workers: int = 2) -> None:
        self.state = state if state is not None else StateDB(None)
        self.workers = workers
        self.files_read = 0
        self.bytes_read = 0

    def _hash_entries(
        self,
        entries: list[WalkEntry],
        cached: Callable[[WalkEntry, StatKey], str | None],
        progress: Progress | None,
    ) -> list[FileInfo]:
        infos: list[FileInfo | None] = [None] * len(entries)
        misses: list[int] = []
        for i, e in enumerate(entries):
            key = StatKey.of(e.st)
            h = cached(e, key)
            if h is None:
                misses.append(i)
                infos[i] = FileInfo(e.rel, e.abs, key, "", _is_exec(e.st))
            else:
                infos[i] = FileInfo(e.rel, e.abs, key, h, _is_exec(e.st))
                if progress:
                    progress(e.st.st_size)
        if misses:
            checked = now_ns()
            large = [i for i in misses if entries[i].st.st_size >= CHUNK]
            small = [i for i in misses if entries[i].st.st_size < CHUNK]
            pool = None
            if len(large) > 1 and self.workers > 1:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(self.workers)
            futures = {}
            try:
                if pool:
                    futures = {i: pool.submit(hash_file, entries[i].abs, progress) for i in large}
                else:
                    small = large + small
                for i in small:
                    infos[i].hash = hash_file(entries[i].abs, progress)  # type: ignore[union-attr]
                for i, fut in futures.items():
                    infos[i].hash = fut.result()  # type: ignore[union-attr]
            finally:
                if pool:
                    pool.shutdown(wait=True, cancel_futures=True)
            self.files_read += len(misses)
            self.bytes_read += sum(entries[i].st.st_size for i in misses)
            self.state.put_many(
                (infos[i].abs, infos[i].key, infos[i].hash, checked)  # type: ignore[union-attr]
                for i in misses
            )
        return infos  # type: ignore[return-value]

    def hash_path(self, path: str, progress: Progress | None = None) -> HashResult:
        """Hash a file or a folder. Raises PathError for a missing or special path."""
        abspath = os.path.abspath(path)
        try:
            st = os.stat(abspath)
        except FileNotFoundError:
            raise PathError(f"{path}: no such file or folder.") from None
        except OSError as exc:
            raise PathError(f"{path}: cannot stat ({exc.strerror}).") from None
        if statmod.S_ISDIR(st.st_mode):
            entries = walk_files(abspath)
            rows = self.state.get_under(abspath)
            infos = self._hash_entries(
                entries, lambda e, k: self.state.lookup(rows, e.abs, k), progress
            )
            tree = Tree(tuple(TreeEntry(f.rel, f.hash, f.key.size, f.executable) for f in infos))
            return HashResult(path, tree.hash, tree.size, True, tree, infos)
        if not statmod.S_ISREG(st.st_mode):
            raise PathError(f"{path}: not a regular file or folder.")
        entry = WalkEntry(os.path.basename(abspath), abspath, st)
        (info,) = self._hash_entries([entry], lambda e, k: self.state.get(e.abs, k), progress)
        return HashResult(path, info.hash, st.st_size, False, None, [info])
