"""Param values: a stage depends on the values of the keys it names, not on whole files."""

from __future__ import annotations

from typing import Any

from repro.errors import SpecError
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
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def load_params_file(project: Project, rel: str) -> Any:
    path = project.abs(rel)

    def parse() -> Any:
        try:
            return _plain(load_any(path))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise SpecError(f"{rel}: cannot be parsed ({str(exc).splitlines()[0]}).") from None

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
        value = lookup(docs[ref.file], ref.key)
        if value is _MISSING:
            raise SpecError(
                f"repro.yaml: stage '{stage.name}', key 'params': '{ref.key}' is not in {ref.file}."
            )
        out[param_id(ref)] = value
    return out


def param_id(ref: ParamRef) -> str:
    return f"{ref.file}:{ref.key}"
