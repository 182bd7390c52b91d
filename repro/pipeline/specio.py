"""Read and rewrite `repro.yaml` keeping the user's comments and key order (ruamel.yaml's
round-trip mode). Used when repro edits the file; plain reads go through `spec.load_spec`."""

from __future__ import annotations

import io
import os
from typing import Any

from repro.errors import SpecError


def _yaml():  # imported lazily: ruamel costs ~30 ms of start-up
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def load_rt(path: str) -> Any:
    """The document as ruamel's commented map (an empty map when the file is empty)."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        with open(path) as f:
            doc = _yaml().load(f)
    except FileNotFoundError:
        doc = None
    except YAMLError as exc:
        raise SpecError(f"{os.path.basename(path)}: not valid YAML ({_yaml_error(exc)}).") from None
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
