"""Walk a folder into (relative POSIX path, absolute path, stat) entries.

Symlinks are followed: a link to a file counts as that file's content, a link to a folder as that
folder's files; a link cycle, a dangling link or a special file (socket, FIFO, device) is an error
naming the path. Empty folders add nothing.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Iterator
from dataclasses import dataclass

from repro.errors import PathError
from repro.hashing.ignore import DEFAULT_DIRS, IGNORE_FILE, Matcher, default_files_re


@dataclass(frozen=True, slots=True)
class WalkEntry:
    rel: str  # POSIX path relative to the walked folder
    abs: str
    st: os.stat_result


def link_leaves(path: str, inside: str | None) -> str | None:
    """Where the symlink `path` leads when that is outside the folder `inside` (a real path),
    or into its `.git` or `.repro` through a link, else None. Data reached through such a link
    is not the project's: hashing it would send files from elsewhere on this machine (or git's
    config, with its credentials) into the cache and on to remotes."""
    if inside is None:
        return None
    real = os.path.realpath(path)
    base = inside.rstrip(os.sep) + os.sep
    if real != inside and not real.startswith(base):
        return real
    first = real[len(base) :].split(os.sep, 1)[0] if real != inside else ""
    if first in OWNED and not any(part in OWNED for part in path.split(os.sep)):
        return real  # a link into git's or repro's own folder (named directly, it is allowed)
    return None


OWNED = (".git", ".repro")


def outside_link_error(path: str, real: str, inside: str) -> PathError:
    rel = os.path.relpath(path, inside) if path.startswith(inside) else path
    out = real != inside and not real.startswith(inside.rstrip(os.sep) + os.sep)
    where = "outside the project" if out else "into .git or .repro"
    return PathError(
        f"{rel}: is a symlink that leads {where} (to {real}); repro does not "
        "follow it. Set follow_symlinks = true under [core] in .repro/config.toml to allow it."
    )


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link, from d_type when it is not one
    except OSError:
        return False


def walk_files(
    root: str,
    inside: str | None = None,
    rules: tuple[Matcher, str] | None = None,
) -> list[WalkEntry]:
    """Every regular file below `root`, sorted by relative path (see `iter_walk`)."""
    return list(iter_walk(root, inside, rules))


def iter_walk(
    root: str,
    inside: str | None = None,
    rules: tuple[Matcher, str] | None = None,
) -> Iterator[WalkEntry]:
    """Every regular file below `root`, in order of relative path, one folder's listing held
    at a time (a million files stream through with flat memory). With `inside` (a real path),
    a symlink leading out of that folder is an error instead of being followed. With `rules`
    (the matcher in force above `root` and `root`'s path relative to the rules' base), ignored
    files and folders are left out, and `.reproignore` files met on the way are read (see
    `ignore.py`).

    The order is the sort of the relative paths as strings: each folder's entries are visited
    sorted by name, a folder's name taken with its trailing "/" (so `a-b` comes before `a/x`,
    as in the sorted list of paths)."""
    seen: set[tuple[int, int]] = set()
    st_root = os.stat(root)
    seen.add((st_root.st_dev, st_root.st_ino))
    base = rules[1] if rules is not None else ""
    first = _listing(root, "", rules[0] if rules is not None else None, base, inside)
    stack: list[Iterator[tuple[str, str, str, os.stat_result, Matcher | None]]] = [first]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        _key, rel, path, st, matcher = item
        if statmod.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                raise PathError(path, "symlink cycle")
            seen.add(key)
            stack.append(_listing(path, rel + "/", matcher, base, inside))
        else:
            yield WalkEntry(rel, path, st)


def _listing(
    folder: str, prefix: str, matcher: Matcher | None, base: str, inside: str | None
) -> Iterator[tuple[str, str, str, os.stat_result, Matcher | None]]:
    """One folder's kept entries (files and folders), stat'ed, sorted by walk order."""
    try:
        with os.scandir(folder) as it:
            listed = list(it)
    except OSError as exc:
        raise PathError(folder, f"cannot list folder ({exc.strerror})") from None
    if matcher is not None and any(e.name == IGNORE_FILE for e in listed):
        matcher = matcher.enter(folder, base + prefix)
    kept = []
    # With no `.reproignore` in force (the usual case), the rules are the built-in ones, which
    # look at the name only: tested inline, without a call per entry into the matcher.
    by_name = matcher is not None and not matcher.layers
    dirs, name_re = DEFAULT_DIRS, default_files_re()
    for entry in listed:
        name = entry.name
        rel = prefix + name
        # Before the stat: an ignored dangling link (an editor's `.#name` lock) is no error.
        if by_name:
            if name_re.match(name) is not None or (name in dirs and _is_dir(entry)):
                continue
        elif matcher is not None and matcher.ignored(base + rel, name, _is_dir(entry)):
            continue
        try:
            if entry.is_symlink():
                try:
                    st = os.stat(entry.path)
                except FileNotFoundError:
                    raise PathError(entry.path, "dangling symlink") from None
                real = link_leaves(entry.path, inside)
                if real is not None:
                    raise outside_link_error(entry.path, real, inside or "")
            else:
                st = entry.stat()
        except OSError as exc:
            if isinstance(exc, PathError):
                raise
            raise PathError(entry.path, f"cannot stat ({exc.strerror})") from None
        if statmod.S_ISDIR(st.st_mode):
            kept.append((entry.name + "/", rel, entry.path, st, matcher))
        elif statmod.S_ISREG(st.st_mode):
            kept.append((entry.name, rel, entry.path, st, matcher))
        else:
            raise PathError(entry.path, "not a regular file or folder")
    kept.sort(key=_first)
    return iter(kept)


def _first(item: tuple) -> str:
    return item[0]
