"""Remember parsed files by their stat, so a no-op `repro run` or `repro status` does not pay
for YAML parsing (and ruamel's import) every time. Entries live in `.repro/tmp/parse/` and are
keyed by the file's path, inode, size, mtime_ns and ctime_ns plus a version tag."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
VERSION = "1"


def cached_parse(tmp_dir: str, path: str, parse: Callable[[], T], tag: str = "") -> T:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return parse()
    stamp = (VERSION, tag, path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    import xxhash

    name = xxhash.xxh3_64_hexdigest(repr((VERSION, tag, path)).encode())
    cache = os.path.join(tmp_dir, "parse", name)
    try:
        with open(cache, "rb") as f:
            saved_stamp, value = pickle.load(f)
        if saved_stamp == stamp:
            return value
    except Exception:
        pass
    value = parse()
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = cache + f".{os.getpid()}"
        with open(tmp, "wb") as f:
            pickle.dump((stamp, value), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache)
    return value


def load_any(path: str) -> Any:
    """Parse a YAML, JSON or TOML file by its extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".json":
        import json

        with open(path) as f:
            return json.load(f)
    if ext == ".toml":
        import tomllib

        with open(path, "rb") as f:
            return tomllib.load(f)
    from ruamel.yaml import YAML

    with open(path) as f:
        return YAML(typ="safe", pure=True).load(f)
