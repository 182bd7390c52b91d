"""`vars:`, `${...}` interpolation, and `foreach`/`matrix`: stamping stages out of one body, within
bounds that keep a hostile repro.yaml from hanging repro (see MAX_STAGES, MAX_STAMPED_VALUES).

The rules are DVC's (docs/repro-yaml.md): `${a.b}` or `${a[0]}` reads the context (the default
params file, then each `vars:` entry, then a stage's own `vars:`, then the foreach/matrix item); a
string that is exactly one `${...}` takes the value itself, type and all; `\\${...}` is a literal
`${...}`. One departure, so that existing commands keep working: an ALL-CAPS name that the
context lacks (`${HOME}`) is left for the shell, as `$HOME` always is."""

from __future__ import annotations

import itertools
import math
import os
import re
from typing import Any

from repro.pipeline.spec_model import (
    MAX_STAGES,
    MAX_STAMPED_VALUES,
    _line,
    _Problems,
)

# `${inner}`, with an optional backslash before it (the escape).
_TOKEN_RE = re.compile(r"(\\)?\$\{([^{}]*)\}")
_SHELL_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_PATH_RE = re.compile(r"[A-Za-z0-9_\-]+(?:\[\d+\])*(?:\.[A-Za-z0-9_\-]+(?:\[\d+\])*)*")
MAX_INTERPOLATED_BYTES = 1_000_000  # one string after interpolation


class InterpolationError(KeyError):
    """A `${...}` that cannot be filled in: `args[0]` is the expression, `reason` says why."""

    def __init__(self, expr: str, reason: str) -> None:
        super().__init__(expr)
        self.reason = reason


def resolve(ctx: Any, expr: str) -> Any:
    """The value `a.b[0].c` names in `ctx`; InterpolationError when it names nothing."""
    if not _PATH_RE.fullmatch(expr):
        raise InterpolationError(expr, "is not a key name (letters, digits, '_', '-', '.', [N])")
    cur = ctx
    for part in re.split(r"\.|(?=\[)", expr):
        if part.startswith("["):
            part = part[1:-1]
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise InterpolationError(expr, "names nothing")
    return cur


def _to_text(expr: str, v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, dict | list):
        kind = "mapping" if isinstance(v, dict) else "list"
        raise InterpolationError(
            expr, f"is a {kind}; only a whole value (`key: ${{{expr}}}`) can take one"
        )
    return str(v)


def _interpolate(value: Any, ctx: dict[str, Any]) -> Any:
    """Fill in every `${...}` in the strings of `value` from `ctx` (see the module's rules)."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        m = _TOKEN_RE.fullmatch(value.strip())
        if m and not m.group(1):
            expr = m.group(2).strip()
            try:
                return resolve(ctx, expr)
            except InterpolationError:
                if not _SHELL_NAME_RE.fullmatch(expr):
                    raise
                return value
        total = 0

        def sub(m: re.Match) -> str:
            nonlocal total
            if m.group(1):
                text = m.group(0)[1:]
            else:
                expr = m.group(2).strip()
                try:
                    text = _to_text(expr, resolve(ctx, expr))
                except InterpolationError:
                    if not _SHELL_NAME_RE.fullmatch(expr):
                        raise
                    text = m.group(0)
            total += len(text)
            if total > MAX_INTERPOLATED_BYTES:
                raise InterpolationError(
                    m.group(2).strip(), f"makes a text over {MAX_INTERPOLATED_BYTES:,} characters"
                )
            return text

        return _TOKEN_RE.sub(sub, value)
    if isinstance(value, dict):
        return _LinedDict(
            {k: _interpolate(v, ctx) for k, v in value.items()}, getattr(value, "lc", None)
        )
    if isinstance(value, list):
        return _LinedList([_interpolate(v, ctx) for v in value], getattr(value, "lc", None))
    return value


def interpolate_body(
    name: str, body: Any, ctx: dict[str, Any], problems: _Problems, source: str
) -> Any:
    """A plain stage's body with its `${...}` filled in, key by key so that a problem names
    the key; None (problems recorded) when any cannot be."""
    if not isinstance(body, dict):
        return body
    out = {}
    ok = True
    for k, v in body.items():
        if k == "vars":
            out[k] = v
            continue
        try:
            out[k] = _interpolate(v, ctx)
        except InterpolationError as exc:
            problems.add(body, _why(exc, source), name, str(k), _line(body, k))
            ok = False
    return _LinedDict(out, getattr(body, "lc", None)) if ok else None


def _why(exc: InterpolationError, source: str) -> str:
    expr = exc.args[0]
    if exc.reason == "names nothing":
        return (
            f"'${{{expr}}}' names nothing in {source} (a shell variable is written $NAME, "
            f"or \\${{...}} for a literal)"
        )
    return f"'${{{expr}}}' {exc.reason}"


def merge_vars(into: dict[str, Any], new: Any, origin: str, seen: dict[str, str]) -> str | None:
    """Merge one `vars` source into the context; an error text when it redefines a key another
    source gave (DVC refuses that too), naming both sources."""
    if not isinstance(new, dict):
        return f"{origin} must be a mapping of names to values"

    def walk(dst: dict, src: dict, prefix: str) -> str | None:
        for k, v in src.items():
            key = f"{prefix}{k}"
            if k in dst:
                if isinstance(dst[k], dict) and isinstance(v, dict):
                    err = walk(dst[k], v, key + ".")
                    if err:
                        return err
                    continue
                other = seen.get(key, "another source")
                return f"'{key}' from {origin} is already defined by {other}"
            dst[k] = _copy(v)
            seen[key] = origin
        return None

    return walk(into, new, "")


def _copy(v: Any) -> Any:
    return {str(k): _copy(x) for k, x in v.items()} if isinstance(v, dict) else v


def vars_context(
    doc: Any, root: str, default_params: str, problems: _Problems
) -> tuple[dict[str, Any], list[str], str]:
    """The interpolation context of repro.yaml: the default params file when it exists, then
    each top-level `vars:` entry (a file, `file:key1,key2`, or an inline mapping). Returns the
    context, the files read (absolute; the parse cache watches them) and their names for
    messages."""
    ctx: dict[str, Any] = {}
    seen: dict[str, str] = {}
    files: list[str] = [os.path.join(root, default_params)]
    loaded: set[str] = set()
    names: list[str] = []
    line = _line(doc, "vars") if isinstance(doc, dict) else 0

    def load(rel: str, keys: list[str] | None, must: bool) -> None:
        path = os.path.join(root, rel)
        if path not in files:
            files.append(path)
        try:
            data = _load_file(path, rel)
        except FileNotFoundError:
            if must:
                problems.add(doc, f"vars file '{rel}' does not exist", key="vars", line=line)
            return
        except Exception as exc:  # SpecError from the loader: its one sentence
            if must:  # a broken default params file is reported where a stage reads it
                problems.add(doc, str(exc).rstrip("."), key="vars", line=line)
            return
        if not must and not isinstance(data, dict):
            return  # an empty or odd default params file gives no values, and no error here
        if keys is not None:
            if not isinstance(data, dict) or any(k not in data for k in keys):
                missing = [k for k in keys if not isinstance(data, dict) or k not in data]
                problems.add(doc, f"'{missing[0]}' is not a key of {rel}", key="vars", line=line)
                return
            data = {k: data[k] for k in keys}
        if rel in loaded:  # the default params file named again: its values are in already
            return
        loaded.add(rel)
        err = merge_vars(ctx, data, rel, seen)
        if err:
            problems.add(doc, err, key="vars", line=line)
        names.append(rel)

    load(default_params, None, must=False)
    raw = doc.get("vars") if isinstance(doc, dict) else None
    if raw is not None and not isinstance(raw, list):
        problems.add(doc, "must be a list of files and mappings", key="vars", line=line)
        raw = []
    for item in raw or []:
        if isinstance(item, dict):
            err = merge_vars(ctx, item, "inline vars", seen)
            if err:
                problems.add(doc, err, key="vars", line=line)
            elif "the inline vars" not in names:
                names.append("the inline vars")
        elif isinstance(item, str) and item.strip():
            file, _, keys = item.partition(":")
            if os.path.isabs(file) or ".." in file.replace("\\", "/").split("/"):
                problems.add(
                    doc, f"vars file '{file}' is outside the project", key="vars", line=line
                )
                continue
            ks = [k.strip() for k in keys.split(",") if k.strip()] if keys else None
            load(file.strip(), ks, must=True)
        else:
            problems.add(doc, "each entry is a file name or a mapping", key="vars", line=line)
    if not names:
        source = f"{default_params} (absent) or vars"
    else:
        source = ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]
    return ctx, files, source


def stage_context(
    name: str, body: Any, ctx: dict[str, Any], problems: _Problems
) -> dict[str, Any] | None:
    """The context for one stage: repro.yaml's, plus the stage's own inline `vars:`."""
    raw = body.get("vars") if isinstance(body, dict) else None
    if raw is None:
        return ctx
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
        problems.add(body, "must be a list of mappings", name, "vars", _line(body, "vars"))
        return None
    out = _copy(ctx)
    seen: dict[str, str] = {}
    for v in raw:
        err = merge_vars(out, v, f"stage '{name}' vars", seen)
        if err:
            problems.add(body, err, name, "vars", _line(body, "vars"))
            return None
    return out


def _load_file(path: str, rel: str) -> Any:
    from repro.pipeline.parsecache import load_any

    return load_any(path, rel)


def _weight(value: Any, limit: int) -> int:
    """How much stamping out one copy of `value` costs: one per value, plus one per 100
    characters of text; counting stops once past `limit`."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        v = stack.pop()
        total += 1
        if isinstance(v, str):
            total += len(v) // 100
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return total


def _too_many(body: Any, name: str, key: str, count: int, weight: int, problems: _Problems) -> bool:
    """Refuse a foreach/matrix that would stamp out more stages (or more stuff) than repro
    can plan in a few seconds; the error names the stage and the key."""
    if count > MAX_STAGES:
        problems.add(
            body,
            f"expands to {count:,} stages; at most {MAX_STAGES:,} are allowed",
            name,
            key,
            _line(body, key),
        )
        return True
    if count * weight > MAX_STAMPED_VALUES:
        problems.add(
            body,
            f"expands to {count:,} stages of {weight:,} values each; at most "
            f"{MAX_STAMPED_VALUES:,} values in all are stamped out",
            name,
            key,
            _line(body, key),
        )
        return True
    return False


class _LinedDict(dict):
    """A plain dict that remembers the ruamel line info of the map it was stamped from."""

    def __init__(self, data: dict, lc: Any) -> None:
        super().__init__(data)
        self.lc = lc


class _LinedList(list):
    """A plain list that remembers the ruamel line info of its sequence (errors name lines)."""

    def __init__(self, data: list, lc: Any) -> None:
        super().__init__(data)
        self.lc = lc


def _expand(
    name: str,
    body: Any,
    problems: _Problems,
    ctx: dict[str, Any] | None = None,
    source: str = "params.yaml or vars",
) -> list[tuple[str, Any]]:
    """Stamp out `foreach` / `matrix` stages and fill in every `${...}` from `ctx` (plus the
    item); a plain stage is interpolated as is."""
    ctx = {} if ctx is None else ctx
    if not isinstance(body, dict):
        return [(name, body)]
    sctx = stage_context(name, body, ctx, problems)
    if sctx is None:
        return []
    if "foreach" not in body and "matrix" not in body:
        done = interpolate_body(name, body, sctx, problems, source)
        return [] if done is None else [(name, done)]
    if "foreach" in body:
        return _foreach(name, body, sctx, problems, source)
    return _matrix(name, body, sctx, problems, source)


def _whole(name: str, body: Any, key: str, value: Any, ctx: dict, problems: _Problems) -> Any:
    """`foreach: ${models}`: a list or mapping taken from the context."""
    try:
        return _interpolate(value, ctx)
    except InterpolationError as exc:
        problems.add(body, _why(exc, "params.yaml or vars"), name, key, _line(body, key))
        return None


def _foreach(
    name: str, body: Any, ctx: dict[str, Any], problems: _Problems, source: str
) -> list[tuple[str, Any]]:
    items = _whole(name, body, "foreach", body["foreach"], ctx, problems)
    do = body.get("do")
    if not isinstance(do, dict):
        problems.add(
            body, "a 'foreach' stage needs a 'do:' mapping", name, "do", _line(body, "foreach")
        )
        return []
    if isinstance(items, dict):
        pairs = [(str(k), {"key": k, "item": v}) for k, v in items.items()]
    elif isinstance(items, list):
        pairs = []
        for it in items:
            if isinstance(it, dict):
                pairs.append(("-".join(str(v) for v in it.values()), {"item": it, **it}))
            else:
                pairs.append((str(it), {"item": it}))
    else:
        problems.add(
            body,
            "'foreach' must be a list or a mapping",
            name,
            "foreach",
            _line(body, "foreach"),
        )
        return []
    lim = MAX_STAMPED_VALUES
    weight = _weight(do, lim) + max((_weight(p[1], lim) for p in pairs), default=0)
    if _too_many(body, name, "foreach", len(pairs), weight, problems):
        return []
    out = []
    for key, item in pairs:
        try:
            out.append((f"{name}@{key}", _interpolate(do, {**ctx, **item})))
        except InterpolationError as exc:
            problems.add(
                body, _why(exc, f"the foreach item or {source}"), name, "do", _line(body, "do")
            )
            return []
    return out


def _matrix(
    name: str, body: Any, ctx: dict[str, Any], problems: _Problems, source: str
) -> list[tuple[str, Any]]:
    matrix = body["matrix"]
    if isinstance(matrix, dict):
        matrix = {k: _whole(name, body, "matrix", v, ctx, problems) for k, v in matrix.items()}
    if (
        not isinstance(matrix, dict)
        or not matrix
        or not all(isinstance(v, list) and v for v in matrix.values())
    ):
        problems.add(
            body,
            "'matrix' must map names to non-empty lists",
            name,
            "matrix",
            _line(body, "matrix"),
        )
        return []
    keys = list(matrix)
    count = math.prod(len(matrix[k]) for k in keys)
    lim = MAX_STAMPED_VALUES
    weight = _weight(body, lim) + sum(max(_weight(v, lim) for v in matrix[k]) for k in keys)
    if _too_many(body, name, "matrix", count, weight, problems):
        return []
    rest = _LinedDict(
        {k: v for k, v in body.items() if k not in ("matrix", "vars")}, getattr(body, "lc", None)
    )
    out = []
    for combo in itertools.product(*(matrix[k] for k in keys)):
        item = dict(zip(keys, combo, strict=True))
        try:
            stamped = _interpolate(rest, {**ctx, "item": item, **item})
            out.append((f"{name}@{'-'.join(str(c) for c in combo)}", stamped))
        except InterpolationError as exc:
            problems.add(body, _why(exc, f"the matrix keys or {source}"), name, "cmd", _line(body))
            return []
    return out
