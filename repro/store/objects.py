"""The content-addressed object store: bytes stored under their hash.

Layout (DESIGN.md): `objects/<2 hex>/<30 hex>`, trees included. Reads are verified: an object
whose content does not match its name is reported as corrupt and never returned. On the local
cache, verification goes through the stat cache, so an object is re-read only when its stat
changed (for example when a hardlinked workspace copy was edited in place).

Packs (`repro.store.packs`): inside `with store.batch():`, objects under PACK_MAX_OBJECT put in
a local store go into a pack instead of one file each (one open and one write for thousands),
published when the batch ends. Every lookup sees packed and loose objects alike, so a cache of
loose objects written by an older repro keeps working untouched. A pack is verified as a whole:
its stat and its index's stat are recorded in the stat cache once the pack checked out (its
content hashes to its name and every object to its own), so "is object h stored and intact"
costs a lookup in the pack set and a stat of the pack. A pack whose stat changed is checked
again before anything in it counts as stored: the whole pack first, then (when that fails)
object by object. A damaged object is healed by storing good bytes again, in a new pack;
readers take the first copy that verifies, never the damaged one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator

from repro.canonical import hash_bytes
from repro.errors import (
    CorruptObjectError,
    HashError,
    MissingObjectError,
    PathError,
    ReproError,
    first_line,
)
from repro.hashing.filehash import hash_file
from repro.hashing.state import RACY_NS, StateDB, StatKey, now_ns
from repro.hashing.tree import Tree
from repro.safety import is_hash
from repro.store.backend import Backend, LocalBackend
from repro.store.layout import OBJECTS, object_key
from repro.store.links import DEFAULT_LINKS, place, read_only_mode, write_file
from repro.store.packs import (
    PACK_MAX_OBJECT,
    PACKS,
    PackIndex,
    PackSet,
    PackWriter,
    index_key,
    pack_key,
)
from repro.store.packstore import PackReader, load_packset, publish


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


PREFETCH_MIN = 16 << 20  # files this large are copied into the cache while they are hashed


class _Prefetch:
    """One file being copied into the cache's tmp/ on a thread (see `ObjectStore.prefetch`)."""

    def __init__(self, path: str, tmp: str, key: StatKey) -> None:
        self.path, self.tmp, self.key = path, tmp, key
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._copy, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _copy(self) -> None:
        import shutil

        try:
            shutil.copyfile(self.path, self.tmp)
        except BaseException as exc:  # reported by `take` as "not taken"
            self.error = exc

    def take(self, path: str, dst: str, executable: bool) -> bool:
        """Rename the copy to `dst` when it is complete and `path` kept the stat it had when
        the copy began (so the bytes copied are the bytes hashed); else drop it (False)."""
        self.thread.join()
        try:
            same = self.error is None and StatKey.of(os.stat(path)) == self.key
            if same:
                os.chmod(self.tmp, read_only_mode(executable))
                os.replace(self.tmp, dst)
                return True
        except OSError:
            pass
        self.discard()
        return False

    def discard(self) -> None:
        self.thread.join()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


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
        self.bad_indexes: list[str] = []  # damaged indexes met while loading the pack set
        self._prefetched: dict[str, _Prefetch] = {}  # large files being copied in (`prefetch`)
        self._base: PackSet | None = None  # the packs found on the backend when first asked
        self._recent: list[PackSet] = []  # packs this process published since then
        self._mu = threading.Lock()
        self._tls = threading.local()  # this thread's batch (nested batches join it)
        # Packs checked in this process: pack id -> (pack stat, index stat) when whole and
        # intact; or -> ((pack stat, index stat), the objects that verified) when damaged.
        self._pack_ok: dict[str, tuple[StatKey, StatKey]] = {}
        self._pack_part: dict[str, tuple[tuple[StatKey, StatKey], frozenset[str]]] = {}

    @property
    def local(self) -> LocalBackend | None:
        return self.backend if isinstance(self.backend, LocalBackend) else None

    # -- presence ---------------------------------------------------------------------------
    def has(self, h: str) -> bool:
        """Whether object `h` is packed or an object file named `h` exists (its content
        unchecked). Before trusting the cache to hold content about to be lost elsewhere, use
        `has_verified`."""
        op = self._open_pack()
        if op is not None and h in op.where:
            return True
        return bool(self._locate(h)) or self.backend.exists(object_key(h))

    def has_verified(self, h: str) -> bool:
        """Whether object `h` is present *and* intact. On the local store a loose object whose
        stat matches its verified stat-cache row costs one stat and one lookup, a packed one a
        pack-set lookup and the (remembered) stat check of its pack; any other is re-read (and
        recorded once it checks out). A corrupt object counts as absent. Other stores only
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
        good = self.packed_verified(hashes)
        rest = hashes - good
        rows = self.batch_rows(len(rest))
        verified: list = []  # rows of objects re-read now: written in one transaction
        good |= {h for h in rest if self._intact(local.path(object_key(h)), h, rows, verified)}
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
        if not is_regular_file(p):  # a FIFO would hang the read, a symlink lead out of the cache
            return False
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
        out = self.loose_hashes()
        out.update(self.packs.hashes())
        return out

    def loose_hashes(self) -> set[str]:
        """Every object stored as a file of its own (one listing)."""
        out = set()
        try:
            keys = list(self.backend.list(OBJECTS))
        except FileNotFoundError:
            return out
        for key in keys:
            parts = key.split("/")
            if len(parts) == 3 and is_hash(parts[1] + parts[2]):
                out.add(parts[1] + parts[2])
        return out

    # -- writing ----------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        """Store `data`; a present object that fails verification is replaced (atomically)."""
        h = hash_bytes(data)
        op = self._open_pack()
        if op is not None and len(data) < PACK_MAX_OBJECT:
            if h not in op.where and not self.has_verified(h):
                self._pack_add(op, h, data)
            return h
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
        size: int | None = None,
    ) -> bool:
        """Store the file at `path` (whose hash the caller computed) under `h`.

        Inside a `batch` on a local store, a file under PACK_MAX_OBJECT (`size`, when the
        caller knows it, spares a stat) is copied into the batch's pack, whatever `link` says.

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
        op = self._open_pack()
        if op is not None and (size is None or size < PACK_MAX_OBJECT):
            packed = self._put_packed(op, path, h, dst, rows, size)
            if packed is not None:
                return packed
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
        pre = self._prefetched.pop(os.path.abspath(path), None)
        if pre is None or not pre.take(path, dst, executable):
            self._replace(local, path, dst, executable, linked=False)
        self._verified(dst, h, state_rows)
        return True

    def prefetch(self, path: str) -> None:
        """Start copying the large file at `path` into the local cache's tmp/ on a thread, so
        that hashing it (which the caller does next) and copying it overlap: two reads of the
        file in the wall time of one (`repro add` of a 1 GiB file as root, where the cache
        copies instead of linking). `put_file` of that path takes the copy when the file's stat
        did not change meanwhile (the same rule the stat cache trusts); `discard_prefetched`
        removes copies nobody took. Nothing happens for small files, when the cache hardlinks,
        or on remotes."""
        local = self.local
        if local is None or "hardlink" in self.links:
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        import stat as statmod

        if not statmod.S_ISREG(st.st_mode) or st.st_size < PREFETCH_MIN:
            return
        pre = _Prefetch(path, local.tmp_path(), StatKey.of(st))
        self._prefetched[os.path.abspath(path)] = pre
        pre.start()

    def discard_prefetched(self) -> None:
        for pre in self._prefetched.values():
            pre.discard()
        self._prefetched.clear()

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
            return self._unpack(h)
        key = StatKey.of(st)
        if self.state is not None and self.state.get(p, key) == h:
            return p
        if not is_regular_file(p):  # a FIFO would hang the read, a symlink lead out of the cache
            raise self._corrupt(h)
        checked = now_ns()
        actual = hash_file(p)
        if actual != h:
            raise self._corrupt(h)
        if self.state is not None:
            self.state.put_many([(p, key, h, checked)])
        return p

    def _unpack(self, h: str) -> str:
        """A loose copy of packed object `h` (for callers that need a path: a worker copying
        it, an old API); its bytes verified on the way. Missing when no pack holds it."""
        local = self.local
        assert local is not None
        data = self.get_bytes(h)
        key = object_key(h)
        local.ensure_parent(key)
        local.write_bytes(key, data)
        p = local.path(key)
        os.chmod(p, read_only_mode(False))
        self._verified(p, h, None)
        return p

    def get_bytes(self, h: str) -> bytes:
        """The verified bytes of object `h`, packed (the first copy that verifies) or loose."""
        op = self._open_pack()
        if op is not None and h in op.where:
            return self._read_pending(op, h)
        locs = self._locate(h)
        if locs:
            with PackReader(self.backend) as reader:
                data = reader.read(h, locs)
            if data is not None:
                return data
        try:
            data = self.backend.read_bytes(object_key(h))
        except FileNotFoundError:
            raise (self._corrupt(h) if locs else self._missing(h)) from None
        if hash_bytes(data) != h:
            raise self._corrupt(h)
        return data

    def unreadable(self, h: str) -> ReproError:
        """The error for an object no verified copy of which can be read: corrupt when some
        copy exists, else missing."""
        return self._corrupt(h) if self.has(h) else self._missing(h)

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
        the object's path when the caller verified it already (`verified_paths`). A packed
        object without a loose copy is written out (a new file: "copy")."""
        local = self.local
        if (
            src is None
            and local is not None
            and self._locate(h)
            and not os.path.exists(local.path(object_key(h)))
        ):
            write_file(dst, self.get_bytes(h), executable)
            return "copy"
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
                out[h] = self._unpack(h)
                continue
            if self.state is not None and self.state.lookup(rows, p, key) == h:
                out[h] = p
            else:
                out[h] = self.verified_path(h)
        return out

    def verify(self, h: str) -> bool:
        """Re-read object `h` fully; True when a copy of it (packed or loose) matches its
        name."""
        locs = self._locate(h)
        if locs:
            with PackReader(self.backend) as reader:
                if reader.read(h, locs) is not None:
                    return True
        key = object_key(h)
        local = self.local
        if local is not None:
            try:
                p = local.path(key)
                return is_regular_file(p) and hash_file(p) == h
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
        """Delete loose object `h` (packed copies stay: packs are rewritten by repack)."""
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

    def set_aside_loose(self, hashes: Iterable[str]) -> list[str]:
        """Local stores: move the loose copies of `hashes` that are there to `corrupt/` (for
        objects just stored again in a pack after their loose copy failed verification: the
        damaged file must not stay where `fsck` and readers look, nor be deleted silently).
        Returns the objects moved."""
        local = self.local
        if local is None:
            return []
        moved = []
        for h in hashes:
            if os.path.lexists(local.path(object_key(h))):
                self.move_aside(h)
                moved.append(h)
        return moved

    # -- packs ------------------------------------------------------------------------------
    @property
    def packs(self) -> PackSet:
        """Every packed object of this store's backend (loaded on first use; packs this process
        published since are folded in when asked here)."""
        if self._recent:
            with self._mu:
                self._base, self._recent = None, []
        return self._load_base()

    def invalidate_packs(self) -> None:
        """Forget the pack set (after someone else published or removed packs)."""
        with self._mu:
            self._base, self._recent = None, []
            self.bad_indexes = []

    def _load_base(self) -> PackSet:
        base = self._base
        if base is None:
            with self._mu:
                if self._base is None:
                    bad: list[str] = []
                    self._base = load_packset(self.backend, self.name, bad)
                    self.bad_indexes = bad
                    self._recent = []
                base = self._base
        return base

    def _locate(self, h: str) -> list:
        """Every packed copy of `h` (oldest pack first; none for a loose-only object)."""
        base = self._load_base()
        locs = base.locate(h) if len(base) else []
        for ps in list(self._recent):
            locs += ps.locate(h)
        return locs

    def packed_verified(self, hashes: Iterable[str]) -> set[str]:
        """Those of `hashes` held by a pack that verifies (see the module docstring), or put in
        this thread's open batch. Other stores: those their pack indexes name."""
        op = self._open_pack()
        base = self._load_base()
        if not len(base) and not self._recent and not (op is not None and op.where):
            return set()
        if self.local is None:
            return {h for h in hashes if self._locate(h)}
        verdicts: dict[str, bool | frozenset[str]] = op.verdicts if op is not None else {}
        out = set()
        for h in hashes:
            if op is not None and h in op.where:
                out.add(h)
                continue
            for loc in self._locate(h):
                v = verdicts.get(loc.pack_id)
                if v is None:
                    v = verdicts[loc.pack_id] = self._pack_verdict(loc.pack_id)
                if v is True or (not isinstance(v, bool) and h in v):
                    out.add(h)
                    break
        return out

    def _packed_ok(self, h: str, op: _Batch) -> bool:
        """Some pack holding `h` verifies (its verdict remembered for the batch)."""
        for loc in self._locate(h):
            v = op.verdicts.get(loc.pack_id)
            if v is None:
                v = op.verdicts[loc.pack_id] = self._pack_verdict(loc.pack_id)
            if v is True or (not isinstance(v, bool) and h in v):
                return True
        return False

    def _pack_verdict(self, pid: str) -> bool | frozenset[str]:
        """True when local pack `pid` and its index are intact (by their recorded stats, or
        checked again now); else the set of its objects that verify one by one."""
        local = self.local
        assert local is not None
        pp, ip = local.path(pack_key(pid)), local.path(index_key(pid))
        try:
            keys = (StatKey.of(os.stat(pp)), StatKey.of(os.stat(ip)))
        except OSError:
            return frozenset()
        if self._pack_ok.get(pid) == keys:
            return True
        part = self._pack_part.get(pid)
        if part is not None and part[0] == keys:
            return part[1]
        if (
            self.state is not None
            and self.state.get(pp, keys[0]) == pid
            and self.state.get(ip, keys[1]) is not None
        ):
            self._pack_ok[pid] = keys
            return True
        return self._check_pack(pid, pp, ip, keys)

    def _check_pack(
        self, pid: str, pp: str, ip: str, keys: tuple[StatKey, StatKey]
    ) -> bool | frozenset[str]:
        """Re-read a pack whose stat is not vouched for: the whole of it against its name and
        every object against its own. Whole and intact: recorded in the stat cache, True.
        Else the objects that verified (remembered for this process only)."""
        checked = now_ns()
        good: frozenset[str] = frozenset()
        whole = False
        try:
            raw = self.backend.read_bytes(index_key(pid))
            index = PackIndex.decode(raw, f"{self.name}: {index_key(pid)}", pid)
            # Through `_read_path`: a pack that is a symlink or a FIFO (a hostile shared cache)
            # is refused, not followed or waited on; no more than the index's size is read.
            local = self.local
            assert local is not None
            with open(local._read_path(pack_key(pid)), "rb") as f:
                data = f.read(min(index.pack_size, os.fstat(f.fileno()).st_size) + 1)
        except (ReproError, OSError):
            raw = b""
        else:
            view = memoryview(data)
            good = frozenset(
                h
                for h, off, n in index.entries
                if off + n <= len(data) and hash_bytes(view[off : off + n]) == h
            )
            whole = len(good) == len(index.entries) and hash_bytes(data) == pid
        if not whole:
            self._pack_part[pid] = (keys, good)
            return good
        if self.state is not None:
            ih = hash_bytes(raw)
            self.state.put_many([(pp, keys[0], pid, checked), (ip, keys[1], ih, checked)])
        self._pack_ok[pid] = keys
        return True

    @contextlib.contextmanager
    def batch(self) -> Iterator[ObjectStore]:
        """Inside it, small objects put in a local store go into a pack (published when the
        outermost batch of this thread ends; a full pack is published at once). Each thread
        has its own batch, so what one stage stores is published when that stage's batch ends.
        An interrupt (not an error) drops the unpublished pack: nothing names it yet."""
        tls = self._tls
        depth = getattr(tls, "depth", 0)
        if depth == 0:
            tls.open = _Batch()
        tls.depth = depth + 1
        ok = False
        try:
            yield self
            ok = True
        except Exception:
            ok = True
            raise
        finally:
            tls.depth = depth
            if depth == 0:
                op, tls.open = tls.open, None
                if ok:
                    self._publish_open(op)
                elif op.writer is not None:
                    op.writer.abort()

    @contextlib.contextmanager
    def loose(self) -> Iterator[ObjectStore]:
        """Inside a batch: what is stored in this block stays loose (a handful of files gains
        nothing from a pack, and a pack per small command would make every later command read
        one more index)."""
        tls = self._tls
        tls.loose = getattr(tls, "loose", 0) + 1
        try:
            yield self
        finally:
            tls.loose -= 1

    def _open_pack(self) -> _Batch | None:
        tls = self._tls
        if not getattr(tls, "depth", 0) or getattr(tls, "loose", 0) or self.local is None:
            return None
        return tls.open

    def _put_packed(
        self,
        op: _Batch,
        path: str,
        h: str,
        dst: str,
        rows: StatRows | None,
        size: int | None = None,
    ) -> bool | None:
        """`put_file` inside a batch: False when `h` is stored already, True once the file's
        bytes are in this batch's pack, None for a file that stays loose (large, unreadable:
        the loose path says why)."""
        if h in op.where or ((self._recent or len(self._load_base())) and self._packed_ok(h, op)):
            return False
        if op.has_folder(dst) and os.path.exists(dst) and self._intact(dst, h, rows):
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            if size is None:
                size = os.fstat(fd).st_size
            data = os.read(fd, size + 1) if size < PACK_MAX_OBJECT else b""
        finally:
            os.close(fd)
        if len(data) >= PACK_MAX_OBJECT or (size and not data):  # large: stays loose
            return None
        if hash_bytes(data) != h:  # the pack will vouch for these bytes: they must be `h`
            raise HashError(
                f"{path}: changed while it was being stored (its content no longer matches "
                "the hash just taken); run the command again once nothing writes to it."
            )
        self._pack_add(op, h, data)
        return True

    def _pack_add(self, op: _Batch, h: str, data: bytes | memoryview) -> None:
        local = self.local
        assert local is not None
        if op.writer is None:
            op.checked = now_ns()
            op.writer = PackWriter(local.tmp_path())
        op.where[h] = (op.writer.size, len(data))
        op.writer.add(h, data)
        if op.writer.full:
            self._publish_open(op)

    def _read_pending(self, op: _Batch, h: str) -> bytes:
        """An object of this batch's unpublished pack (we hashed it when we added it)."""
        assert op.writer is not None
        off, n = op.where[h]
        op.writer.flush()
        with open(op.writer.path, "rb") as f:
            return os.pread(f.fileno(), n, off)

    def _publish_open(self, op: _Batch) -> None:
        writer, op.writer = op.writer, None
        if writer is None:
            return
        if not len(writer):
            writer.abort()
            op.where = {}
            return
        try:
            pid, index = writer.finish()
        except BaseException:
            writer.abort()
            raise
        self._publish_local(writer.path, pid, index, op.checked)
        op.where = {}

    def _publish_local(self, tmp: str, pid: str, index: PackIndex, checked: int) -> None:
        """Publish a finished, verified pack into the local cache (pack, then index), record
        both files' stats as verified, and make its objects visible to lookups."""
        local = self.local
        assert local is not None
        # Both files get an mtime from before their bytes were hashed: the stat cache then
        # vouches for them at once (not "racy"), and any later write moves the mtime on.
        old = checked - 2 * RACY_NS
        os.utime(tmp, ns=(old, old))
        try:
            publish(self.backend, tmp, pid, index)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _unwritable(local, exc) from None
        pp, ip = local.path(pack_key(pid)), local.path(index_key(pid))
        os.utime(ip, ns=(old, old))
        keys = (StatKey.of(os.stat(pp)), StatKey.of(os.stat(ip)))
        if self.state is not None:
            with open(ip, "rb") as f:
                ih = hash_bytes(f.read())
            self.state.put_many([(pp, keys[0], pid, checked), (ip, keys[1], ih, checked)])
        with self._mu:
            self._pack_ok[pid] = keys
            self._pack_part.pop(pid, None)
            if self._base is not None:
                self._recent.append(PackSet.build([index]))

    def read_many(self, hashes: Iterable[str]) -> Iterator[tuple[str, bytes | None]]:
        """(hash, verified bytes, or None when missing or corrupt) for each of `hashes` (meant
        for small objects): packed ones pack by pack (one open and few reads per pack), a
        damaged first copy replaced by the next copy that verifies, loose ones file by file."""
        op = self._open_pack()
        packed: list = []
        locs_of: dict[str, list] = {}
        loose: list[str] = []
        for h in dict.fromkeys(hashes):
            if op is not None and h in op.where:
                yield h, self._read_pending(op, h)
                continue
            locs = self._locate(h)
            if locs:
                locs_of[h] = locs
                packed.append((h, locs[0]))
            else:
                loose.append(h)
        if packed:
            with PackReader(self.backend) as reader:
                for h, data in reader.read_many(packed):
                    if data is None and len(locs_of[h]) > 1:
                        data = reader.read(h, locs_of[h][1:])
                    if data is None:
                        loose.append(h)  # a loose copy may still be good
                    else:
                        yield h, data
        for h in loose:
            yield h, self._read_loose(h)

    def _read_loose(self, h: str) -> bytes | None:
        try:
            data = self.backend.read_bytes(object_key(h))
        except (OSError, ReproError):
            return None
        return data if hash_bytes(data) == h else None

    def object_size(self, h: str) -> int | None:
        """The size of object `h` (packed or loose), None when absent."""
        op = self._open_pack()
        if op is not None and h in op.where:
            return op.where[h][1]
        locs = self._locate(h)
        if locs:
            return locs[0].length
        try:
            return self.backend.size(object_key(h))
        except (OSError, ReproError):
            return None

    def import_pack(self, tmp_path: str, index: PackIndex) -> set[str]:
        """A whole pack downloaded to `tmp_path` (in `local.tmp_path()`), with its (decoded,
        checked) index: every object verified; published as it is when whole and intact, else
        its good objects are written into a new pack. Returns the hashes stored."""
        local = self.local
        assert local is not None
        checked = now_ns()
        try:
            with open(tmp_path, "rb") as f:
                # At most what the index says the pack holds (plus one byte: a longer file is
                # not that pack): a remote serving more than that costs no memory.
                data = f.read(min(index.pack_size, os.fstat(f.fileno()).st_size) + 1)
        except OSError:
            return set()
        view = memoryview(data)
        good = [
            (h, off, n)
            for h, off, n in index.entries
            if off + n <= len(data) and hash_bytes(view[off : off + n]) == h
        ]
        whole = (
            len(good) == len(index.entries)
            and len(data) == index.pack_size
            and hash_bytes(data) == index.pack_id
        )
        if whole and good:
            self._publish_local(tmp_path, index.pack_id, index, checked)
            return {h for h, _, _ in good}
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        if not good:
            return set()
        writer = PackWriter(local.tmp_path())
        try:
            for h, off, n in good:
                writer.add(h, view[off : off + n])
            pid, new_index = writer.finish()
        except BaseException:
            writer.abort()
            raise
        self._publish_local(writer.path, pid, new_index, checked)
        return {h for h, _, _ in good}

    def pack_loose(self, hashes: Iterable[str] | None = None) -> int:
        """Fold small loose objects (all, or `hashes`) into packs: the migration of a cache
        written before packs, in place. An object whose verified stat-cache row matches its
        stat is taken as it is (no re-hash); any other is hashed and left alone when corrupt
        (fsck's business). The loose files go only once their pack is published. Returns how
        many objects were folded."""
        local = self.local
        if local is None:
            return 0
        todo = sorted(self.loose_hashes() if hashes is None else set(hashes))
        todo = [h for h in todo if is_hash(h)]
        todo = sorted(set(todo) - self.packed_verified(todo))
        rows = StatRows(self.state, local.path(OBJECTS)) if self.state is not None else None
        folded = 0
        writer: PackWriter | None = None
        members: list[str] = []
        checked = 0
        try:
            for h in todo:
                data = self._read_vouched(local.path(object_key(h)), h, rows)
                if data is None:
                    continue
                if writer is None:
                    checked, writer, members = now_ns(), PackWriter(local.tmp_path()), []
                writer.add(h, data)
                members.append(h)
                if writer.full:
                    folded += self._publish_folded(writer, members, checked)
                    writer = None
            if writer is not None:
                folded += self._publish_folded(writer, members, checked)
                writer = None
        finally:
            if writer is not None:
                writer.abort()
        return folded

    def _publish_folded(self, writer: PackWriter, members: list[str], checked: int) -> int:
        local = self.local
        assert local is not None
        pid, index = writer.finish()
        self._publish_local(writer.path, pid, index, checked)
        for h in members:  # only now: the pack holding them is published
            with contextlib.suppress(OSError):
                os.unlink(local.path(object_key(h)))
        return len(members)

    def _read_vouched(self, p: str, h: str, rows: StatRows | None) -> bytes | None:
        """The bytes of small loose object file `p` when they are `h`: vouched for by the stat
        cache (its stat unchanged since verified), else hashed now. None when missing, large,
        not a regular file (a symlink is not followed), or corrupt."""
        import stat as statmod

        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not statmod.S_ISREG(st.st_mode) or st.st_size >= PACK_MAX_OBJECT:
                return None
            data = os.read(fd, st.st_size + 1)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            return None
        if rows is not None and rows.get(p, StatKey.of(st)) == h:
            return data
        return data if hash_bytes(data) == h else None


def is_regular_file(p: str) -> bool:
    """Whether local object file `p` is a regular file: in a hostile shared cache it may be a
    FIFO (reading it would hang), a device, or a symlink out of the cache (never followed)."""
    import stat as statmod

    try:
        return statmod.S_ISREG(os.lstat(p).st_mode)
    except OSError:
        return False


def _unwritable(local: LocalBackend, exc: OSError) -> OSError | PathError:
    """The error for a pack that cannot be published: one sentence naming the cache's packs
    folder (it is a file, read-only, or leads out of the cache), or a full disk as it is (the
    CLI says that one itself)."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc
    where = os.path.join(local.root, PACKS)
    return PathError(where, f"a pack cannot be stored there ({exc.strerror or first_line(exc)})")


# A check-in of fewer small files than this stays loose, as before packs (see `loose`).
PACK_MIN_FILES = 16


class _Batch:
    """One thread's open batch: the pack being written and where its objects are in it."""

    def __init__(self) -> None:
        self.writer: PackWriter | None = None
        self.where: dict[str, tuple[int, int]] = {}  # hash -> (offset, length) in the writer
        self.checked = 0  # when the writer started (its objects were hashed after that)
        self.verdicts: dict[str, bool | frozenset[str]] = {}  # pack id -> checked this batch
        self._folders: set[str] | None = None  # the objects/<2 hex> folders that exist

    def has_folder(self, dst: str) -> bool:
        """Whether the folder of loose object path `dst` existed when the batch first asked
        (one listing, instead of a failing stat per object of a cache without loose objects).
        A loose object appearing later in a new folder at worst gets a packed twin."""
        folder = os.path.dirname(dst)
        if self._folders is None:
            objects = os.path.dirname(folder)
            try:
                self._folders = {os.path.join(objects, n) for n in os.listdir(objects)}
            except OSError:
                self._folders = set()
        return folder in self._folders
