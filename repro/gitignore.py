"""Keep outputs and tracked data out of git, as DVC does: one `/path` line per path in the
project's root `.gitignore`, in a block repro owns."""

from __future__ import annotations

import os
from collections.abc import Iterable

HEADER = "# >>> repro: outputs and tracked data (managed by repro)"
FOOTER = "# <<< repro"


def ensure_ignored(root: str, paths: Iterable[str]) -> bool:
    """Add `/path` for each path not yet listed; return whether the file changed."""
    gi = os.path.join(root, ".gitignore")
    try:
        with open(gi) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
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
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, gi)
    return True


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
