"""Read and rewrite `repro.yaml` keeping the user's comments and key order (ruamel.yaml's
round-trip mode). Used when repro edits the file; plain reads go through `spec.load_spec`.

Also the one bounded way repro reads the files users and `git pull` hand it (repro.yaml, params
files, config): `read_bytes` (regular files only, never blocking, size-capped), `decode_text`
(UTF-8 or one sentence) and `load_yaml_text` (nesting and alias expansion bounded before any
Python object is built). Every failure is a SpecError naming the file."""

from __future__ import annotations

import io
import os
from typing import Any

from repro.errors import SpecError, first_line
from repro.readfile import MAX_BYTES, decode_text, read_bytes

# Bounds on what a file we parse may cost. ruamel's pure-Python parser reads only a few hundred
# KB per second, so a YAML file over 1 MiB would take many seconds (a real repro.yaml of 1 MiB
# holds ~10,000 stages); JSON and TOML parse faster. Nesting deeper than MAX_DEPTH is refused
# before Python's recursion limit is reached, and aliases may not expand the document past
# MAX_NODES values (a "billion laughs" file is a few hundred bytes that expand to 10^9).
MAX_DEPTH = 100
MAX_NODES = 1_000_000


class _Bound(Exception):
    """Raised inside the YAML composer; turned into a SpecError naming the file."""


def read_text(path: str, label: str, kind: str = "yaml") -> str:
    return decode_text(read_bytes(path, label, MAX_BYTES[kind]), label)


def _children(node: Any) -> list:
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_nodes(root: Any, limit: int = MAX_NODES) -> None:
    """Refuse a composed YAML graph that expands past `limit` values once its aliases are
    followed, or that holds itself (an alias inside the node it names), or a string that is not
    valid Unicode. Iterative and linear in the number of distinct nodes, so checking a bomb
    costs no more than reading it."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > limit:
                raise _Bound(
                    f"its aliases expand to over {limit:,} values (line {_mark(node)}); "
                    "refusing to expand it"
                )
            size[key] = total
            continue
        if key in size:
            continue
        if key in open_:
            raise _Bound(f"an alias at line {_mark(node)} refers to a node that contains it")
        value = node.value
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Bound(
                    f"line {_mark(node)} holds a string that is not valid Unicode"
                ) from None
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def _mark(node: Any) -> int:
    mark = getattr(node, "start_mark", None)
    return (getattr(mark, "line", 0) or 0) + 1


def _bounded(y: Any) -> Any:
    """Make ruamel's loader `y` refuse deep nesting and alias bombs while composing (before any
    Python object is built from the document)."""
    from ruamel.yaml.composer import Composer

    class BoundedComposer(Composer):
        def compose_document(self) -> Any:
            node = super().compose_document()
            if node is not None:
                check_nodes(node)
            return node

    y.max_depth = MAX_DEPTH
    y.Composer = BoundedComposer
    return y


def load_yaml_text(text: str, label: str, typ: str = "safe", y: Any = None) -> Any:
    """Parse YAML text with the bounds above; every failure is a SpecError naming `label`."""
    from ruamel.yaml.composer import MaxDepthExceededError
    from ruamel.yaml.error import YAMLError

    if y is None:
        from ruamel.yaml import YAML

        y = YAML(typ=typ, pure=True)
    try:
        return _bounded(y).load(text)
    except MaxDepthExceededError as exc:
        line = _yaml_error(exc).split(":", 1)[0]
        raise SpecError(f"{label}: nested deeper than {MAX_DEPTH} levels ({line}).") from None
    except YAMLError as exc:
        raise SpecError(f"{label}: not valid YAML ({_yaml_error(exc)}).") from None
    except _Bound as exc:
        raise SpecError(f"{label}: {exc}.") from None
    except RecursionError:
        raise SpecError(f"{label}: nested too deeply to read.") from None
    except MemoryError:
        raise SpecError(f"{label}: too large to load into memory.") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor choking on a value
        raise SpecError(f"{label}: not valid YAML ({first_line(exc)}).") from None


def _yaml():  # imported lazily: ruamel costs ~30 ms of start-up
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def load_rt(path: str) -> Any:
    """The document as ruamel's commented map (an empty map when the file is empty)."""
    from ruamel.yaml.comments import CommentedMap

    label = os.path.basename(path)
    try:
        text = read_text(path, label)
    except FileNotFoundError:
        text = ""
    doc = load_yaml_text(text, label, y=_yaml()) if text.strip() else None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise SpecError(f"{os.path.basename(path)}: the top level must be a mapping.")
    return doc


def _yaml_error(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def save_rt(path: str, doc: Any) -> None:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def dump_yaml(doc: Any) -> str:
    """Readable YAML of plain data (for `repro show`)."""
    from ruamel.yaml import YAML

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()
