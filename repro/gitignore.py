"""Keep outputs and tracked data out of git, as DVC does: one `/path` line per path in the
project's root `.gitignore`, in a block repro owns."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

HEADER = "# >>> repro: outputs and tracked data (managed by repro)"
FOOTER = "# <<< repro"


def ensure_ignored(root: str, paths: Iterable[str]) -> bool:
    """Add `/path` for each path not yet listed; return whether the file changed.

    `.gitignore` may have come with `git pull`: it is read only when it is a file of the
    project (a symlink leading out of it, or into `.git`, would copy that file's bytes into
    the project; git does not follow such a link anyway, so it is replaced by a plain file),
    and it is written under a fresh temporary name that no symlink can redirect."""
    gi = os.path.join(root, ".gitignore")
    lines = _read_lines(root, gi)
    existing = set(lines)
    wanted = [f"/{p}" for p in sorted(set(paths)) if f"/{p}" not in existing]
    if not wanted:
        return False
    if HEADER in lines and FOOTER in lines[lines.index(HEADER) :]:
        end = lines.index(FOOTER, lines.index(HEADER))
        lines[end:end] = wanted
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [HEADER, *wanted, FOOTER]
    tmp = gi + ".repro-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover, or a planted symlink: never written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, gi)
    return True


def _read_lines(root: str, gi: str) -> list[str]:
    """The lines of the project's `.gitignore` ([] when absent, or when it is a symlink that
    leads out of the project or into `.git`/`.repro`). Bytes that are no UTF-8 are kept."""
    from repro.errors import PathError
    from repro.safety import Boundary

    if os.path.islink(gi) and Boundary(root).problem(os.path.realpath(gi)) is not None:
        return []
    try:
        with open(gi, encoding="utf-8", errors="surrogateescape") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
    except IsADirectoryError:
        raise PathError(
            ".gitignore: is a folder; repro keeps its ignore rules for outputs in that file."
        ) from None


def git_tracked(root: str, paths: Iterable[str]) -> set[str]:
    """Of `paths` (project-relative), those git tracks, or that hold a file git tracks: repro
    deletes and rewrites outputs and tracked data, so a committed file must never be one.
    Empty outside a git work tree or when git is not installed."""
    import subprocess

    paths = sorted(set(paths))
    if not paths or not os.path.exists(os.path.join(root, ".git")):
        return set()
    try:
        p = subprocess.run(
            ["git", "ls-files", "-z", "--", *(f":(literal){x}" for x in paths)],
            cwd=root,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if p.returncode != 0:
        return set()
    listed = [f.decode(errors="replace") for f in p.stdout.split(b"\0") if f]
    return {x for x in paths if any(f == x or f.startswith(x + "/") for f in listed)}
