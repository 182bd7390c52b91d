"""Remember parsed files by their stat, so a no-op `repro run` or `repro status` does not pay
for YAML parsing (and ruamel's import) every time. Entries live in `.repro/tmp/parse/` and are
keyed by the file's path, inode, size, mtime_ns and ctime_ns plus a version tag, and by the same
stamp of every file the parse read besides (`deps`: repro.yaml's `vars:` and params files)."""

from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
VERSION = "3"  # bumped whenever a parser's output changes (3: vars, whole-file params, deps)


def _stat(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # absent: creating it later makes the entry stale
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cached_parse(
    tmp_dir: str,
    path: str,
    parse: Callable[[], T],
    tag: str = "",
    deps: Callable[[T], Iterable[str]] | None = None,
) -> T:
    """`parse()`'s value, reused while `path` (and every file `deps(value)` names) is as it was
    when the value was made."""
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
            saved_stamp, saved_deps, value = pickle.load(f)
        if saved_stamp == stamp and all(_stat(p) == s for p, s in saved_deps):
            return value
    except Exception:
        pass
    started = time.time_ns()
    value = parse()
    dep_stamps = [(p, _stat(p)) for p in (deps(value) if deps else ())]
    # A file the parse read may have changed while it ran (its stat is taken only now): one
    # changed within the last 2 s is not trusted to a cache entry; the next call parses again.
    if any(s is not None and s[2] >= started - 2_000_000_000 for _, s in dep_stamps):
        return value
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = cache + f".{os.getpid()}"
        with open(tmp, "wb") as f:
            pickle.dump((stamp, dep_stamps, value), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache)
    return value


def load_any(path: str, label: str | None = None) -> Any:
    """Parse a YAML, JSON or TOML file by its extension, within specio's bounds (size, nesting,
    alias expansion). Every failure but a missing file is a SpecError naming `label` (default:
    the file's name); FileNotFoundError passes through."""
    from repro.errors import SpecError
    from repro.pipeline.specio import MAX_BYTES, decode_text, load_yaml_text, read_bytes

    label = label or os.path.basename(path)
    ext = os.path.splitext(path)[1].lower()
    kind = {".json": "json", ".toml": "toml"}.get(ext, "yaml")
    text = decode_text(read_bytes(path, label, MAX_BYTES[kind]), label)
    if kind == "yaml":
        return load_yaml_text(text, label)
    try:
        if kind == "json":
            import json

            doc = json.loads(text)
        else:
            import tomllib

            doc = tomllib.loads(text)
    except RecursionError:
        raise SpecError(f"{label}: nested too deeply to read.") from None
    except MemoryError:
        raise SpecError(f"{label}: too large to load into memory.") from None
    except ValueError as exc:  # json.JSONDecodeError, tomllib.TOMLDecodeError, huge ints
        what = "JSON" if kind == "json" else "TOML"
        raise SpecError(f"{label}: not valid {what} ({str(exc).splitlines()[0][:200]}).") from None
    _check_depth(doc, label)
    return doc


def _check_depth(doc: Any, label: str) -> None:
    """Refuse JSON or TOML nested deeper than YAML may be (specio.MAX_DEPTH): every reader of
    the value after this (the canonical encoding included) recurses."""
    from repro.errors import SpecError
    from repro.pipeline.specio import MAX_DEPTH

    stack = [(doc, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(f"{label}: nested deeper than {MAX_DEPTH} levels.")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
