"""The hashing engine: paths to hashes, through the stat cache.

Walks folders with `os.scandir`, asks the stat cache for every file in one range query, and reads
only the files whose stat changed. Files under 4 MiB are hashed in the calling thread (for small
files the cost is syscalls, and threads only add GIL hand-offs: see benchmarks/); larger files go
to a thread pool, since xxhash releases the GIL on large updates.
"""

from __future__ import annotations

import contextlib
import os
import stat as statmod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from repro.errors import PathError
from repro.hashing.filehash import CHUNK, hash_file
from repro.hashing.ignore import IgnoreRules
from repro.hashing.state import StateDB, StatKey, now_ns
from repro.hashing.tree import Tree, TreeEntry
from repro.hashing.walk import WalkEntry, iter_walk, link_leaves, outside_link_error, walk_files

Progress = Callable[[int], None]


def _no_entry(_e: WalkEntry, _k: StatKey) -> None:
    return None


def folder_fingerprint(
    items: Iterable[tuple[str, int, int, int, int, int]], rules: str = ""
) -> str:
    """One hash over every file's (relative path, inode, size, mtime, ctime, mode) and the
    identity of the ignore rules that chose those files: equal fingerprints mean no file was
    added, removed, renamed, rewritten or chmodded, and no rule changed. Streamed: a million
    files are hashed a thousand lines at a time, never joined into one string."""
    return FingerprintStream().feed(items).finish(rules)


class FingerprintStream:
    """`folder_fingerprint` fed as a walk goes (the same digest as joining every line)."""

    __slots__ = ("_first", "_h", "count", "newest")

    def __init__(self) -> None:
        import xxhash

        self._h = xxhash.xxh3_128()
        self._first = True
        self.newest = 0  # the largest mtime seen (the stat cache's racy check needs it)
        self.count = 0

    def feed(self, items: Iterable[tuple[str, int, int, int, int, int]]) -> FingerprintStream:
        batch: list[str] = []
        for r, i, s, m, c, o in items:
            batch.append(f"{r}\0{i}\0{s}\0{m}\0{c}\0{o}")
            if m > self.newest:
                self.newest = m
            if len(batch) >= 4096:
                self._flush(batch)
                batch = []
        self._flush(batch)
        return self

    def _flush(self, batch: list[str]) -> None:
        if not batch:
            return
        self.count += len(batch)
        text = "\n".join(batch)
        self._h.update((text if self._first else "\n" + text).encode())
        self._first = False

    def finish(self, rules: str) -> str:
        tail = f"rules\0{rules}"
        self._h.update((tail if self._first else "\n" + tail).encode())
        return self._h.hexdigest()


def _stat_items(entries: Iterable[WalkEntry]):
    return (
        (e.rel, e.st.st_ino, e.st.st_size, e.st.st_mtime_ns, e.st.st_ctime_ns, e.st.st_mode)
        for e in entries
    )


@dataclass(slots=True)
class FileInfo:
    rel: str
    abs: str
    key: StatKey
    hash: str
    executable: bool
    mode: int = 0


@dataclass
class HashResult:
    """The hash of one path: a file's content hash or a folder's tree hash."""

    path: str
    hash: str
    size: int
    is_dir: bool
    tree: Tree | None = None
    files: list[FileInfo] = field(default_factory=list)
    count: int | None = None  # files in a folder, when `files` was not built
    checked: int = 0  # when a folder's hashing started (for its stat-cache fingerprint)
    rules: str = ""  # identity of the ignore rules that chose a folder's files

    @property
    def nfiles(self) -> int:
        if not self.is_dir:
            return 1
        return self.count if self.count is not None else len(self.files)


def _is_exec(st: os.stat_result) -> bool:
    return bool(st.st_mode & 0o111)


class Hasher:
    """Hash files and folders, trusting the stat cache for unchanged files."""

    def __init__(
        self,
        state: StateDB | None = None,
        workers: int = 2,
        inside: str | None = None,
        ignore: IgnoreRules | None = None,
    ) -> None:
        self.state = state if state is not None else StateDB(None)
        # Which files a folder holds: `.reproignore` rules and the defaults (see ignore.py).
        self.ignore = ignore if ignore is not None else IgnoreRules(None)
        self.workers = workers
        # With `inside` (the project's real path), symlinks leading out of it are refused.
        self.inside = inside
        self.files_read = 0
        # Within a `session()`, results are remembered so a folder several stages read is walked
        # once per run; whoever writes to the workspace calls `invalidate` for what it wrote.
        self._memo: dict[str, HashResult] | None = None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Remember results until the block ends (one status or run)."""
        outer = self._memo
        if outer is None:
            self._memo = {}
        try:
            yield
        finally:
            if outer is None:
                self._memo = None

    def invalidate(self, path: str) -> None:
        """Forget remembered results for `path`, what lies inside it and the folders holding it."""
        if not self._memo:
            return
        abspath = os.path.abspath(path)
        inside = abspath.rstrip("/") + "/"
        for key in list(self._memo):
            if key == abspath or key.startswith(inside) or inside.startswith(key + "/"):
                del self._memo[key]

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
                infos[i] = FileInfo(e.rel, e.abs, key, "", _is_exec(e.st), e.st.st_mode)
            else:
                infos[i] = FileInfo(e.rel, e.abs, key, h, _is_exec(e.st), e.st.st_mode)
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
                    e = entries[i]
                    infos[i].hash = hash_file(e.abs, progress, e.st.st_size)  # type: ignore[union-attr]
                for i, fut in futures.items():
                    infos[i].hash = fut.result()  # type: ignore[union-attr]
            finally:
                if pool:
                    pool.shutdown(wait=True, cancel_futures=True)
            self.files_read += len(misses)
            self.state.put_many(
                (infos[i].abs, infos[i].key, infos[i].hash, checked)  # type: ignore[union-attr]
                for i in misses
            )
        return infos  # type: ignore[return-value]

    def hash_path(
        self, path: str, progress: Progress | None = None, files: bool = False
    ) -> HashResult:
        """Hash a file or a folder. Raises PathError for a missing or special path.

        For a folder whose files' stats all match the last hashing (one fingerprint over every
        path, inode, size, mtime and ctime), the stored tree hash is returned without per-file
        work; pass `files=True` when the caller needs each file's hash (to store or compare
        them)."""
        abspath = os.path.abspath(path)
        if self._memo is None:
            return self._hash_path(path, abspath, progress, files)
        memo = self._memo.get(abspath)
        if memo is not None and (not files or memo.files or not memo.is_dir):
            return HashResult(
                path,
                memo.hash,
                memo.size,
                memo.is_dir,
                memo.tree,
                memo.files,
                memo.count,
                memo.checked,
                memo.rules,
            )
        result = self._hash_path(path, abspath, progress, files)
        self._memo[abspath] = result
        return result

    def _hash_path(
        self, path: str, abspath: str, progress: Progress | None, files: bool
    ) -> HashResult:
        try:
            st = os.stat(abspath)
        except FileNotFoundError:
            raise PathError(f"{path}: no such file or folder.") from None
        except OSError as exc:
            raise PathError(f"{path}: cannot stat ({exc.strerror}).") from None
        if self.inside is not None:
            real = link_leaves(abspath, self.inside)
            if real is not None:
                raise outside_link_error(abspath, real, self.inside)
        if statmod.S_ISDIR(st.st_mode):
            started = now_ns()
            if not files and self.state.has_folder(abspath):
                # Unchanged folders are the common case: one streaming pass (flat memory, no
                # entry kept) decides it; only a changed folder is walked again into a list.
                matcher, base = self.ignore.matcher_above(abspath)
                stream = FingerprintStream().feed(
                    _stat_items(iter_walk(abspath, inside=self.inside, rules=(matcher, base)))
                )
                rules = matcher.identity()
                hit = self.state.get_folder(abspath, stream.finish(rules), newest=stream.newest)
                if hit is not None:
                    h, size = hit
                    return HashResult(
                        path, h, size, True, None, [], count=stream.count, rules=rules
                    )
            matcher, base = self.ignore.matcher_above(abspath)
            entries = walk_files(abspath, inside=self.inside, rules=(matcher, base))
            rules = matcher.identity()
            fingerprint = folder_fingerprint(_stat_items(entries), rules)
            rows = self.state.get_under(abspath)
            lookup = self.state.lookup
            infos = self._hash_entries(
                entries, (lambda e, k: lookup(rows, e.abs, k)) if rows else _no_entry, progress
            )
            tree = Tree(tuple(TreeEntry(f.rel, f.hash, f.key.size, f.executable) for f in infos))
            h, size = tree.hash, tree.size
            self.state.put_folder(abspath, fingerprint, h, size, started)
            return HashResult(path, h, size, True, tree, infos, checked=started, rules=rules)
        if not statmod.S_ISREG(st.st_mode):
            raise PathError(f"{path}: not a regular file or folder.")
        entry = WalkEntry(os.path.basename(abspath), abspath, st)
        (info,) = self._hash_entries([entry], lambda e, k: self.state.get(e.abs, k), progress)
        return HashResult(path, info.hash, st.st_size, False, None, [info])
