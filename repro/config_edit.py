"""Edit `.repro/config.toml` (or `config.local.toml`) by dotted key, keeping the user's
comments and layout: `repro config --set/--unset` go through tomlkit, never a dump of a dict.

The lowest layer: it knows TOML, not what the keys mean. The caller passes `check`, which is
handed the would-be config as plain data and returns why it is wrong (or None); a wrong value
leaves the file as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from repro.errors import SpecError, UsageError

Check = Callable[[dict[str, Any]], "str | None"]


def split_key(key: str) -> list[str]:
    """`cache.link` -> ['cache', 'link']; a key needs a section and a name."""
    parts = key.split(".")
    if len(parts) < 2 or not all(p.strip() for p in parts):
        raise UsageError(f"config key {key!r}: give SECTION.NAME, such as cache.link.")
    return parts


def parse_value(text: str) -> Any:
    """A value as TOML reads it (`true`, `3`, `["copy"]`, `"x"`); anything else is a string,
    so `--set core.remote origin` needs no quotes."""
    import tomlkit

    try:
        return tomlkit.parse(f"v = {text}").unwrap()["v"]
    except Exception:  # tomlkit's parse errors have no common public base
        return text


def _load(path: str) -> Any:
    import tomlkit

    try:
        with open(path, encoding="utf-8") as f:
            return tomlkit.parse(f.read())
    except FileNotFoundError:
        return tomlkit.document()
    except UnicodeDecodeError:
        raise SpecError(f"{os.path.basename(path)}: not UTF-8 text.") from None
    except Exception as exc:  # tomlkit.exceptions.ParseError
        raise SpecError(f"{os.path.basename(path)}: not valid TOML ({exc}).") from None


def get_value(data: dict[str, Any], key: str) -> Any:
    """The value at dotted `key` in plain data, or KeyError."""
    node: Any = data
    for part in split_key(key):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf as (dotted key, value), tables walked, lists kept whole."""
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out += flatten(v, name)
        else:
            out.append((name, v))
    return out


def set_value(path: str, key: str, value: Any, check: Check, label: str) -> None:
    """Set dotted `key` to `value` in the file at `path` (created if absent), if `check` agrees."""
    import tomlkit

    parts = split_key(key)
    doc = _load(path)
    node: Any = doc
    for part in parts[:-1]:
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
        if not isinstance(node, dict):
            raise UsageError(f"{label}: key {part!r} of {key!r} is a value, not a table.")
    node[parts[-1]] = value
    _write_checked(path, doc, check, label)


def unset_value(path: str, key: str, check: Check, label: str) -> None:
    """Remove dotted `key`. A table left empty stays: it may hold the user's comments."""
    parts = split_key(key)
    doc = _load(path)
    chain: list[Any] = [doc]
    for part in parts[:-1]:
        node = chain[-1]
        if not isinstance(node, dict) or part not in node:
            raise UsageError(f"{label}: no key {key!r} to unset.")
        chain.append(node[part])
    if not isinstance(chain[-1], dict) or parts[-1] not in chain[-1]:
        raise UsageError(f"{label}: no key {key!r} to unset.")
    del chain[-1][parts[-1]]
    _write_checked(path, doc, check, label)


def _write_checked(path: str, doc: Any, check: Check, label: str) -> None:
    import tomlkit

    problem = check(doc.unwrap())
    if problem:
        raise SpecError(f"{label}: {problem}; nothing was changed.")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(tomlkit.dumps(doc))
    os.replace(tmp, path)
