"""The content-addressed object store: bytes stored under their hash.

Layout (DESIGN.md): `objects/<2 hex>/<30 hex>`, trees included. Reads are verified: an object
whose content does not match its name is reported as corrupt and never returned. On the local
cache, verification goes through the stat cache, so an object is re-read only when its stat
changed (for example when a hardlinked workspace copy was edited in place).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from repro.canonical import hash_bytes
from repro.errors import CorruptObjectError, MissingObjectError, ReproError
from repro.hashing.filehash import hash_file
from repro.hashing.state import StateDB, StatKey, now_ns
from repro.hashing.tree import Tree
from repro.safety import is_hash
from repro.store.backend import Backend, LocalBackend
from repro.store.layout import OBJECTS, object_key
from repro.store.links import DEFAULT_LINKS, place, read_only_mode


class StatRows:
    """The stat-cache rows under one folder, read on first use with one range query."""

    def __init__(self, state: StateDB, folder: str) -> None:
        self.state = state
        self.folder = folder
        self._rows: dict[str, tuple] | None = None

    def get(self, path: str, key: StatKey) -> str | None:
        if self._rows is None:
            self._rows = self.state.get_under(self.folder)
        return self.state.lookup(self._rows, path, key)


class ObjectStore:
    """Objects on one backend. `state` (local stores only) makes verification cheap."""

    def __init__(
        self,
        backend: Backend,
        state: StateDB | None = None,
        links: tuple[str, ...] = DEFAULT_LINKS,
        name: str = "cache",
    ) -> None:
        self.backend = backend
        self.state = state
        self.links = links
        self.name = name

    @property
    def local(self) -> LocalBackend | None:
        return self.backend if isinstance(self.backend, LocalBackend) else None

    # -- presence ---------------------------------------------------------------------------
    def has(self, h: str) -> bool:
        """Whether an object file named `h` exists (its content unchecked). Before trusting the
        cache to hold content that is about to be lost elsewhere, use `has_verified`."""
        return self.backend.exists(object_key(h))

    def has_verified(self, h: str) -> bool:
        """Whether object `h` is present *and* intact. On the local store an object whose stat
        matches its verified stat-cache row costs one stat and one lookup; any other is re-read
        (and recorded once it checks out). A corrupt object counts as absent. Other stores only
        answer for presence (reading a remote object back is `verify`)."""
        if self.local is None:
            return self.has(h)
        return h in self.verified_set({h})

    def verified_set(self, hashes: Iterable[str]) -> set[str]:
        """Those of `hashes` present and intact (see `has_verified`), with one stat-cache query
        for a large batch instead of one per object."""
        hashes = set(hashes)
        local = self.local
        if local is None:
            return {h for h in hashes if self.has(h)}
        rows = self.batch_rows(len(hashes))
        verified: list = []  # rows of objects re-read now: written in one transaction
        good = {h for h in hashes if self._intact(local.path(object_key(h)), h, rows, verified)}
        if verified and self.state is not None:
            self.state.put_many(verified)
        return good

    def batch_rows(self, n: int) -> StatRows | None:
        """For `n` lookups to come: the objects' stat-cache rows, read at the first lookup in
        one range query, when `n` is large; None (single lookups) when it is small."""
        if self.state is None or self.local is None or n < 64:
            return None
        return StatRows(self.state, self.local.path(OBJECTS))

    def _intact(
        self, p: str, h: str, rows: StatRows | None = None, verified: list | None = None
    ) -> bool:
        """Local object file `p` exists and holds the content named `h`. The stat-cache row of
        an object re-read here goes to `verified` when given (the caller writes many at once),
        else is written now."""
        try:
            key = StatKey.of(os.stat(p))
        except (FileNotFoundError, NotADirectoryError):
            return False
        if self.state is not None:
            known = rows.get(p, key) if rows is not None else self.state.get(p, key)
            if known == h:
                return True
        checked = now_ns()
        try:
            actual = hash_file(p)
        except Exception:
            return False
        if actual != h:
            return False
        if verified is not None:
            verified.append((p, key, h, checked))
        elif self.state is not None:
            self.state.put_many([(p, key, h, checked)])
        return True

    def all_hashes(self) -> set[str]:
        """Every object hash present (one listing, not one request per object)."""
        out = set()
        for key in self.backend.list(OBJECTS):
            parts = key.split("/")
            if len(parts) == 3 and is_hash(parts[1] + parts[2]):
                out.add(parts[1] + parts[2])
        return out

    # -- writing ----------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        """Store `data`; a present object that fails verification is replaced (atomically)."""
        h = hash_bytes(data)
        if not self.has_verified(h):
            self.backend.write_bytes(object_key(h), data)
        return h

    def put_tree(self, tree: Tree) -> str:
        return self.put_bytes(tree.encode())

    def put_file(
        self,
        path: str,
        h: str,
        executable: bool = False,
        link: bool = False,
        state_rows: list | None = None,
        rows: StatRows | None = None,
    ) -> bool:
        """Store the file at `path` (whose hash the caller computed) under `h`.

        With `link`, a local store takes the file by hardlink instead of copying it, and makes
        it read-only (the workspace file shares the inode, as with DVC's hardlink cache).
        An object already there counts only once verified (through the stat cache; `rows` is a
        `batch_rows` for batches): a corrupt one is replaced atomically by these
        good bytes, so the file being stored heals it. Returns whether the object was written.
        The object's stat-cache row is appended to `state_rows` when given (the caller writes
        many at once), else written now.
        """
        key = object_key(h)
        local = self.local
        if local is None:
            if self.backend.exists(key):
                return False
            self.backend.put_file(path, key)
            return True
        dst = local.path(key)
        if link and "hardlink" in self.links:
            # A hardlink appears atomically under its final name: no temporary name needed,
            # and an existing object makes it fail with EEXIST (no separate exists() call).
            try:
                try:
                    os.link(path, dst)
                except FileNotFoundError:
                    local.ensure_parent(key)
                    os.link(path, dst)
            except FileExistsError:
                if self._intact(dst, h, rows):
                    return False
                if self._replace(local, path, dst, executable, linked=True):
                    self._verified(dst, h, state_rows)
                    return True
            except OSError:
                pass  # another device, a filesystem without links: copy below
            else:
                os.chmod(dst, read_only_mode(executable))
                self._verified(dst, h, state_rows)
                return True
        if os.path.exists(dst) and self._intact(dst, h, rows):
            return False
        local.ensure_parent(key)
        self._replace(local, path, dst, executable, linked=False)
        self._verified(dst, h, state_rows)
        return True

    @staticmethod
    def _replace(local: LocalBackend, path: str, dst: str, executable: bool, linked: bool) -> bool:
        """Put the bytes of `path` at `dst` under a temporary name, then rename over whatever
        is there (a corrupt object is never seen half-replaced). With `linked`, by hardlink
        (False when the filesystem refuses); else by copy."""
        tmp = local.tmp_path()
        try:
            if linked:
                try:
                    os.link(path, tmp)
                except OSError:
                    return False
            else:
                import shutil

                shutil.copyfile(path, tmp)
            os.chmod(tmp, read_only_mode(executable))
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    def _verified(self, dst: str, h: str, state_rows: list | None) -> None:
        if self.state is not None:
            # We hashed the source before storing it; record the object as verified.
            with contextlib.suppress(OSError):
                row = (dst, StatKey.of(os.stat(dst)), h, now_ns())
                if state_rows is not None:
                    state_rows.append(row)
                else:
                    self.state.put_many([row])

    # -- reading ----------------------------------------------------------------------------
    def _corrupt(self, h: str) -> CorruptObjectError:
        return CorruptObjectError(
            f"{self.name}: object {h} is corrupted (its content does not match its hash); "
            "run 'repro fsck' to list every damaged object."
        )

    def _missing(self, h: str) -> MissingObjectError:
        return MissingObjectError(f"{self.name}: object {h} is missing.")

    def verified_path(self, h: str) -> str:
        """Local stores: the path of object `h` after checking its content (via the stat cache)."""
        local = self.local
        assert local is not None
        p = local.path(object_key(h))
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise self._missing(h) from None
        key = StatKey.of(st)
        if self.state is not None and self.state.get(p, key) == h:
            return p
        checked = now_ns()
        actual = hash_file(p)
        if actual != h:
            raise self._corrupt(h)
        if self.state is not None:
            self.state.put_many([(p, key, h, checked)])
        return p

    def get_bytes(self, h: str) -> bytes:
        try:
            data = self.backend.read_bytes(object_key(h))
        except FileNotFoundError:
            raise self._missing(h) from None
        if hash_bytes(data) != h:
            raise self._corrupt(h)
        return data

    def get_tree(self, h: str) -> Tree:
        return Tree.decode(self.get_bytes(h), name=f"tree {h}")

    def checkout_file(
        self,
        h: str,
        dst: str,
        executable: bool = False,
        src: str | None = None,
        dev: int | None = None,
    ) -> str:
        """Place object `h` at `dst` (local store), by the configured link methods. `src` is
        the object's path when the caller verified it already (`verified_paths`)."""
        return place(src or self.verified_path(h), dst, executable, self.links, dev)

    def verified_paths(self, hashes: set[str]) -> dict[str, str]:
        """`verified_path` for many objects, with one stat-cache query for all of them."""
        local = self.local
        assert local is not None
        rows = self.state.get_under(local.path(OBJECTS)) if self.state is not None else {}
        out: dict[str, str] = {}
        for h in hashes:
            p = local.path(object_key(h))
            try:
                key = StatKey.of(os.stat(p))
            except FileNotFoundError:
                raise self._missing(h) from None
            if self.state is not None and self.state.lookup(rows, p, key) == h:
                out[h] = p
            else:
                out[h] = self.verified_path(h)
        return out

    def verify(self, h: str) -> bool:
        """Re-read object `h` fully; True when its content matches its name."""
        key = object_key(h)
        local = self.local
        if local is not None:
            try:
                return hash_file(local.path(key)) == h
            except Exception:
                return False
        try:
            return hash_bytes(self.backend.read_bytes(key)) == h
        except Exception:
            return False

    def closure(self, roots: Iterable[tuple[str, bool]]) -> set[str]:
        """Hashes reachable from (hash, is_dir) roots: each root, and for trees their files
        (a tree this store cannot read contributes only itself)."""
        out: set[str] = set()
        for h, isdir in roots:
            out.add(h)
            if isdir:
                with contextlib.suppress(ReproError):
                    out.update(e.hash for e in self.get_tree(h).entries)
        return out

    def delete(self, h: str) -> None:
        self.backend.delete(object_key(h))

    def move_aside(self, h: str) -> str:
        """Local stores: move corrupt object `h` to `corrupt/<hash>` (out of every lookup, yet
        kept for the user to inspect: damaged bytes are never deleted silently). Returns the
        new path."""
        local = self.local
        assert local is not None
        dst = local.ensure_parent(f"corrupt/{h}")
        os.replace(local.path(object_key(h)), dst)
        return dst
