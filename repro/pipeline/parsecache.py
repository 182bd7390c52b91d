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
VERSION = "2"  # bumped whenever a parser's output changes (2: canonical param values)


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
