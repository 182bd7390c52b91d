"""Param values: a stage depends on the values of the keys it names, not on whole files."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from repro.errors import SpecError, first_line
from repro.pipeline.parsecache import cached_parse, load_any
from repro.pipeline.spec import ParamRef, Stage
from repro.project import Project

_MISSING = object()


def lookup(doc: Any, dotted: str) -> Any:
    cur = doc
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _plain(v: Any) -> Any:
    """A param value in its canonical form: only what JSON (repro.lock) and msgpack (signatures,
    snapshots) hold, so that every value a params file can hold signs and locks alike.

    Dates, times and timestamps (YAML and TOML have them natively) become their ISO 8601 text,
    sets sorted lists, binary its base64 text, integers beyond 64 bits their decimal text, NaN
    the text 'NaN', and a string that is not valid Unicode its escaped text. Accepting them,
    rather than refusing the file, keeps ordinary params files (`start = 2024-01-01` in TOML)
    working; the stage itself still reads the native value from the file."""
    if isinstance(v, dict):
        return {_key(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, set | frozenset):
        return sorted((_plain(x) for x in v), key=lambda x: (type(x).__name__, repr(x)))
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v) if -(2**63) <= v < 2**64 else str(v)
    if isinstance(v, float):
        return float(v) if v == v else "NaN"  # NaN equals nothing: it would never be up to date
    if isinstance(v, str):
        try:
            v.encode("utf-8")
            return str(v)
        except UnicodeEncodeError:
            return v.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(v, datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, bytes | bytearray):
        return base64.b64encode(bytes(v)).decode("ascii")
    return str(v)


def _key(k: Any) -> str:
    v = _plain(k)
    return v if isinstance(v, str) else str(v)


def load_params_file(project: Project, rel: str) -> Any:
    path = project.abs(rel)

    def parse() -> Any:
        try:
            return _plain(load_any(path, rel))
        except (FileNotFoundError, SpecError):
            raise
        except RecursionError:
            raise SpecError(f"{rel}: nested too deeply to read.") from None
        except Exception as exc:
            raise SpecError(f"{rel}: cannot be parsed ({first_line(exc)}).") from None

    return cached_parse(project.tmp_dir, path, parse, "params")


def stage_params(project: Project, stage: Stage) -> dict[str, Any]:
    """`{"file:key": value}` for every param the stage names."""
    out: dict[str, Any] = {}
    docs: dict[str, Any] = {}
    for ref in stage.params:
        if ref.file not in docs:
            try:
                docs[ref.file] = load_params_file(project, ref.file)
            except FileNotFoundError:
                raise SpecError(
                    f"repro.yaml: stage '{stage.name}', key 'params': params file "
                    f"'{ref.file}' does not exist."
                ) from None
        # key "": a whole-file entry whose file did not exist when repro.yaml was parsed.
        value = docs[ref.file] if ref.key == "" else lookup(docs[ref.file], ref.key)
        if value is _MISSING:
            raise SpecError(
                f"repro.yaml: stage '{stage.name}', key 'params': '{ref.key}' is not in {ref.file}."
            )
        out[param_id(ref)] = value
    return out


def param_id(ref: ParamRef) -> str:
    return f"{ref.file}:{ref.key}"
