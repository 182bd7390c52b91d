"""`foreach` and `matrix`: stamping stages out of one body, with `${item}` interpolation, within
bounds that keep a hostile repro.yaml from hanging repro (see MAX_STAGES, MAX_STAMPED_VALUES)."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from repro.pipeline.spec_model import (
    _VAR_RE,
    MAX_STAGES,
    MAX_STAMPED_VALUES,
    _line,
    _Problems,
)


def _interpolate(value: Any, ctx: dict[str, Any]) -> Any:
    """Replace `${name}` and `${name.key}` in every string of `value` from `ctx`."""
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            cur: Any = ctx
            for part in m.group(1).split("."):
                if isinstance(cur, dict) and part in cur:
                    cur = cur[part]
                elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                    cur = cur[int(part)]
                else:
                    raise KeyError(m.group(1))
            return str(cur)

        return _VAR_RE.sub(sub, value)
    if isinstance(value, dict):
        return _LinedDict(
            {k: _interpolate(v, ctx) for k, v in value.items()}, getattr(value, "lc", None)
        )
    if isinstance(value, list):
        return [_interpolate(v, ctx) for v in value]
    return value


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


def _expand(name: str, body: Any, problems: _Problems) -> list[tuple[str, Any]]:
    """Stamp out `foreach` / `matrix` stages; other stages pass through."""
    if not isinstance(body, dict):
        return [(name, body)]
    if "foreach" in body:
        items = body["foreach"]
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
                out.append((f"{name}@{key}", _interpolate(do, item)))
            except KeyError as exc:
                problems.add(
                    body,
                    f"'${{{exc.args[0]}}}' names nothing in the foreach item",
                    name,
                    "do",
                    _line(body, "do"),
                )
                return []
        return out
    if "matrix" in body:
        matrix = body["matrix"]
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
            {k: v for k, v in body.items() if k != "matrix"}, getattr(body, "lc", None)
        )
        out = []
        for combo in itertools.product(*(matrix[k] for k in keys)):
            item = dict(zip(keys, combo, strict=True))
            try:
                stamped = _interpolate(rest, {"item": item, **item})
                out.append((f"{name}@{'-'.join(str(c) for c in combo)}", stamped))
            except KeyError as exc:
                problems.add(
                    body, f"'${{{exc.args[0]}}}' names no matrix key", name, "cmd", _line(body)
                )
                return []
        return out
    return [(name, body)]
