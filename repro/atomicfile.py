"""Replacing a file whole: write a new temporary file beside it, then rename it over the old one.

A reader (node_exporter, git running a hook, `repro alerts retry`) never sees half a file, a kill
leaves the old one in place, and the temporary file is created exclusively under a random name,
so a symlink planted at a predictable name is never written through."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path: str, data: bytes, mode: int | None = None, prefix: str = ".tmp-") -> None:
    """Make `path` hold `data` (with permission bits `mode`, when given) in one rename."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
