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


def rel_problem(path: object, owned: bool = True) -> str | None:
    """Why `path` is not a safe relative POSIX path, or None when it is. With `owned`, a path
    into `.git` or `.repro` is refused too (project paths; a tree's entries may hold `.git`)."""
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
    if owned and (parts[0] in OWNED_DIRS or ".git" in parts):
        return "lies inside repro's or git's own folder"
    return None


def output_problem(path: object) -> str | None:
    """Why `path` may not be an output or tracked data (which repro deletes and rewrites), or
    None: the rules of `rel_problem`, and none of the files repro and git own."""
    problem = rel_problem(path)
    if problem is None and posixpath.basename(path) in OWNED_FILES:  # type: ignore[arg-type]
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
    costs a few calls, not 100k."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.root_real = _real(self.root)
        self._ok: set[str] = set()

    def folder_inside(self, folder: str) -> bool:
        if folder in self._ok:
            return True
        if not _within(_real(folder), self.root_real):
            return False
        self._ok.add(folder)
        return True

    def check_write(self, path: str, source: str, folder: bool = False) -> str:
        """`path` (absolute) when writing or deleting there cannot touch anything outside the
        project: its parent chain, and for a folder target the folder itself, resolve inside.
        A file target that is itself a symlink is fine: it is replaced, never written through."""
        parent = os.path.dirname(path)
        if not self.folder_inside(parent) or (folder and not self.folder_inside(path)):
            rel = os.path.relpath(path, self.root).replace(os.sep, "/")
            raise UntrustedInputError(
                source,
                "path",
                rel,
                f"goes through a symlink that leads out of the project "
                f"(to {_real(path if folder else parent)})",
            )
        return path

    def forget(self) -> None:
        """Drop memoised answers (after the workspace's folders were changed)."""
        self._ok.clear()
