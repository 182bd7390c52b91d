"""The trust boundary: checks for everything read from outside before repro acts on it.

A remote's listing, a `repro.lock` that came with `git pull`, a snapshot or tree from a shared
cache, and the workspace's symlinks are untrusted (DESIGN.md, "Trust boundaries"). Every path
read from them goes through `safe_rel`, every hash through `safe_hash`, every remote key through
`safe_key`, and every write into the workspace through `inside_project`, which refuses a target
whose parent chain is a symlink leading out of the project. A violation raises
`UntrustedInputError` naming the source, and is raised before anything is written.

This module depends on nothing but `repro.errors`, so every layer can use it.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from repro.errors import UntrustedInputError

_HEX32 = re.compile(r"[0-9a-f]{32}")
_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}")

# Folders no record may name (repro's and git's own), and files no output or tracked data may be.
OWNED_DIRS = (".git", ".repro")
OWNED_FILES = ("repro.yaml", "repro.lock", ".gitignore")


def is_hash(value: object) -> bool:
    return isinstance(value, str) and _HEX32.fullmatch(value) is not None


def safe_hash(value: object, source: str, field: str = "hash") -> str:
    """`value` when it is exactly 32 lowercase hex characters."""
    if not is_hash(value):
        raise UntrustedInputError(source, field, value, "is not a hash (32 lowercase hex)")
    return value  # type: ignore[return-value]


# Code points HFS+ ignores in names (git's list, CVE-2014-9390): `.g\u200cit` is `.git` there.
_IGNORABLE_RANGES = ((0x200B, 0x2010), (0x202A, 0x202F), (0x2060, 0x2065), (0x206A, 0x2070))
_IGNORABLE = dict.fromkeys([0xFEFF, *(c for a, b in _IGNORABLE_RANGES for c in range(a, b))])
NAME_MAX = 255  # bytes in one path component (every common filesystem)
PATH_MAX = 4095  # bytes in a whole path


def _fold(name: str) -> str:
    """`name` as a case-insensitive filesystem (macOS, Windows) sees it: case folded, the
    code points HFS+ ignores removed, trailing dots and spaces dropped (NTFS)."""
    return name.translate(_IGNORABLE).casefold().rstrip(". ")


_GIT_NAMES = (".git", "git~1")  # `GIT~1` is `.git`'s short name on NTFS


def _is_owned_dir(part: str) -> bool:
    folded = _fold(part)
    return folded in OWNED_DIRS or folded in _GIT_NAMES


def _too_long(path: str) -> str | None:
    # Four UTF-8 bytes per character at most: a short path needs no encoding to be checked.
    if len(path) * 4 <= NAME_MAX:
        return None
    raw = path.encode("utf-8", "surrogateescape")
    if len(raw) > PATH_MAX:
        return f"is longer than {PATH_MAX} bytes"
    if any(len(part) > NAME_MAX for part in raw.split(b"/")):
        return f"has a name longer than {NAME_MAX} bytes"
    return None


def rel_problem(path: object, owned: bool = True) -> str | None:
    """Why `path` is not a safe relative POSIX path, or None when it is. With `owned`, a path
    into `.git` or `.repro` is refused too (project paths; a tree's entries may hold `.git`),
    spelled in any case (`.GIT` is `.git` on macOS and Windows). A name no filesystem can hold
    is refused here, before anything is written, rather than failing halfway."""
    if not isinstance(path, str):
        return "is not a string"
    if not path or path == ".":
        return "is empty"
    if "\x00" in path:
        return "contains a NUL byte"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "is absolute"
    parts = path.split("/")
    if ".." in parts:
        return "climbs out of the project"
    if posixpath.normpath(path) != path:
        return "is not normalised"
    long = _too_long(path)
    if long is not None:
        return long
    if owned and (_is_owned_dir(parts[0]) or any(_fold(p) in _GIT_NAMES for p in parts)):
        return "lies inside repro's or git's own folder"
    return None


def output_problem(path: object) -> str | None:
    """Why `path` may not be an output or tracked data (which repro deletes and rewrites), or
    None: the rules of `rel_problem`, and none of the files repro and git own (in any case)."""
    problem = rel_problem(path)
    if problem is None and _fold(posixpath.basename(path)) in OWNED_FILES:  # type: ignore[arg-type]
        problem = "is a file repro or git owns"
    return problem


def safe_rel(path: object, source: str, field: str = "path", output: bool = False) -> str:
    """`path` when it is relative, normalised, without `..`, NUL, backslash or an owned folder.
    With `output`, also refuse the files repro and git own (`repro.yaml`, `repro.lock`,
    `.gitignore`): nothing may overwrite them as an output or tracked data."""
    problem = output_problem(path) if output else rel_problem(path)
    if problem is not None:
        raise UntrustedInputError(source, field, path, problem)
    return path  # type: ignore[return-value]


def safe_key(key: str, folder: str, source: str) -> str:
    """A key listed on a remote under `folder`: only the shapes the layout allows."""
    name = key[len(folder) + 1 :] if key.startswith(folder + "/") else None
    ok = False
    if name is not None:
        if folder == "objects":
            ok = len(name) == 33 and name[2] == "/" and is_hash(name[:2] + name[3:])
        elif folder in ("runs", "snapshots"):
            ok = is_hash(name)
        elif folder == "records":
            ok = _RUN_ID.fullmatch(name) is not None
    if not ok:
        raise UntrustedInputError(source, "key", key, f"is not a valid {folder} key")
    return key


def plain_problem(value: object, where: str = "", depth: int = 0) -> tuple[str, object, str] | None:
    """(where, what, why) `value` is not plain JSON data (mappings with text keys, lists, text,
    numbers, true/false, null), or None. A record from a shared cache is written back as JSON
    and printed: bytes or a number where a key goes would crash the command halfway."""
    if value is None or isinstance(value, str | bool | int | float):
        return None
    if depth > 32:
        return where, value, "is nested too deeply"
    if isinstance(value, list):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    elif isinstance(value, dict):
        bad = next((k for k in value if not isinstance(k, str)), None)
        if bad is not None:
            return where, bad, "has a key that is not text"
        items = [(f"{where}.{k}" if where else k, v) for k, v in value.items()]
    else:
        return where, value, f"holds {type(value).__name__} data, not JSON data"
    for at, item in items:
        found = plain_problem(item, at, depth + 1)
        if found is not None:
            return found
    return None


_SCALARS = (str, bool, int, float, type(None))


def _plain(value: object, depth: int = 0) -> bool:
    """`plain_problem(value) is None`, without composing where (the common, good case)."""
    if isinstance(value, dict):
        return depth <= 32 and all(
            isinstance(k, str) and (isinstance(v, _SCALARS) or _plain(v, depth + 1))
            for k, v in value.items()
        )
    if isinstance(value, list):
        return depth <= 32 and all(isinstance(v, _SCALARS) or _plain(v, depth + 1) for v in value)
    return isinstance(value, _SCALARS)


def safe_plain(value: object, source: str, field: str) -> object:
    """`value` when it is plain JSON data (see `plain_problem`)."""
    found = None if _plain(value) else plain_problem(value, field)
    if found is not None:
        where, what, problem = found
        raise UntrustedInputError(source, where, repr(what)[:60], problem)
    return value


def safe_int(value: object, source: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UntrustedInputError(source, field, value, "is not a whole number")
    return value


def safe_path_hash(d: object, source: str, field: str) -> dict[str, Any]:
    """A recorded `{hash, size, isdir, nfiles, ...}` entry, its fields checked."""
    if not isinstance(d, dict):
        raise UntrustedInputError(source, field, d, "is not a mapping")
    safe_hash(d.get("hash"), source, f"{field}.hash")
    if "size" in d:
        safe_int(d["size"], source, f"{field}.size")
    if "nfiles" in d:
        safe_int(d["nfiles"], source, f"{field}.nfiles")
    if "isdir" in d and not isinstance(d["isdir"], bool):
        raise UntrustedInputError(source, f"{field}.isdir", d["isdir"], "is not true or false")
    return d


def _real(path: str) -> str:
    return os.path.realpath(path)


def _within(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


class Boundary:
    """Where the project ends on disk. Answers "does writing at this path stay inside?" with
    one `realpath` per distinct folder (memoised), so a checkout of 100k files in a few folders
    costs a few calls, not 100k. Inside means inside the root and not inside `.git` or
    `.repro`: a symlink `data -> .git` must not let a checkout rewrite git's hooks or config."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.root_real = _real(self.root)
        self._ok: dict[str, str] = {}  # folder -> its real path, for folders found inside

    def problem(self, real: str) -> str | None:
        """Why a real (resolved) path is no place for repro to write, or None."""
        if not _within(real, self.root_real):
            return "leads out of the project"
        first = real[len(self.root_real) :].lstrip(os.sep).split(os.sep, 1)[0]
        if first and _is_owned_dir(first):  # `.GIT` too: the same folder on macOS and Windows
            return "leads into repro's or git's own folder"
        return None

    def _folder(self, folder: str) -> tuple[str, str | None]:
        """(real path, why writing in `folder` is refused or None)."""
        real = self._ok.get(folder)
        if real is not None:
            return real, None
        real = _real(folder)
        problem = self.problem(real)
        if problem is None:
            self._ok[folder] = real
        return real, problem

    def folder_inside(self, folder: str) -> bool:
        return self._folder(folder)[1] is None

    def check_write(self, path: str, source: str, folder: bool = False) -> str:
        """`path` (absolute) when writing or deleting there cannot touch anything outside the
        project or inside `.git`/`.repro`: its parent chain, and for a folder target the folder
        itself, resolve there. A file target that is itself a symlink is fine: it is replaced,
        never written through."""
        parent_real, problem = self._folder(os.path.dirname(path))
        real = os.path.join(parent_real, os.path.basename(path))
        if problem is None:
            if folder:
                real, problem = self._folder(path)
            else:
                problem = self.problem(real)
        if problem is not None:
            rel = os.path.relpath(path, self.root).replace(os.sep, "/")
            raise UntrustedInputError(
                source, "path", rel, f"goes through a symlink that {problem} (to {real})"
            )
        return path

    def forget(self) -> None:
        """Drop memoised answers (after the workspace's folders were changed)."""
        self._ok.clear()
