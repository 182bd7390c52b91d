"""One stage's body in repro.yaml, validated into a `Stage`: its keys, paths (relative to its
`wdir`, stored project-relative POSIX), params, outputs, seed, image and environment."""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from repro.pipeline.spec_model import (
    _CONTROL_RE,
    ENV_KEYS,
    MAX_CMD_BYTES,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    OUT_FLAGS,
    PLOT_PROPS,
    STAGE_KEYS,
    EnvironmentSpec,
    Out,
    ParamRef,
    PlotDef,
    Stage,
    _line,
    _Problems,
    derive_seed,
    parse_observe,
    parse_plots,
    plot_props,
    seed_problem,
)
from repro.safety import output_problem


def _norm(project_root: str, wdir: str, p: str) -> tuple[str | None, str | None]:
    """Project-relative POSIX path for `p` given relative to `wdir`, or an error text."""
    if not isinstance(p, str) or not p.strip():
        return None, "must be a non-empty path"
    if _CONTROL_RE.search(p):
        return None, f"path {p[:100]!r} contains a control character (NUL, newline, ...)"
    if len(p.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return None, f"path '{p[:60]}...' is longer than {MAX_PATH_BYTES} bytes"
    if any(len(c.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for c in p.split("/")):
        return None, f"path '{p[:60]}...' has a name longer than {MAX_NAME_BYTES} bytes"
    p = p.strip().replace("\\", "/")
    if p.startswith("/"):
        rel = os.path.relpath(p, project_root).replace(os.sep, "/")
    else:
        rel = posixpath.normpath(posixpath.join(wdir, p))
    if rel == ".." or rel.startswith("../") or posixpath.isabs(rel):
        return None, f"path '{p}' is outside the project"
    if rel == ".":
        return None, f"path '{p}' is the project root itself"
    if rel == ".repro" or rel.startswith(".repro/"):
        return None, f"path '{p}' lies inside repro's own folder .repro/"
    return rel, None


def _str_list(value: Any, problems: _Problems, node: Any, stage: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(node, "must be a list of strings", stage, key, _line(node, key))
        return []
    return list(value)


def _parse_stage(
    name: str,
    body: Any,
    root: str,
    default_params: str,
    pipeline_seed: int | None,
    pipeline_image: str | None,
    problems: _Problems,
    line: int,
) -> Stage | None:
    if not isinstance(body, dict):
        problems.add(body, "must be a mapping with at least 'cmd'", name, line=line)
        return None
    n0 = len(problems.items)
    for k in body:
        if k not in STAGE_KEYS - {"foreach", "matrix", "do"}:
            problems.add(
                body,
                f"unknown key (allowed: {', '.join(sorted(STAGE_KEYS))})",
                name,
                str(k),
                _line(body, k) or line,
            )
    cmd = body.get("cmd")
    if isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd):
        cmd = " && ".join(cmd)
    if not isinstance(cmd, str) or not cmd.strip():
        problems.add(
            body,
            "'cmd' is required and must be a string or a list of strings",
            name,
            "cmd",
            _line(body, "cmd") or line,
        )
        cmd = ""
    elif "\x00" in cmd:
        problems.add(body, "contains a NUL byte", name, "cmd", _line(body, "cmd") or line)
    elif len(cmd.encode("utf-8", "surrogatepass")) > MAX_CMD_BYTES:
        problems.add(
            body,
            f"is {len(cmd.encode('utf-8', 'surrogatepass')):,} bytes; a command is at most "
            f"{MAX_CMD_BYTES:,} (put a long script in a file and run that)",
            name,
            "cmd",
            _line(body, "cmd") or line,
        )
    wdir = body.get("wdir", ".")
    wrel = "."
    if not isinstance(wdir, str):
        problems.add(body, "must be a path", name, "wdir", _line(body, "wdir"))
    elif wdir not in (".", ""):
        r, err = _norm(root, ".", wdir)
        if err:
            problems.add(body, err, name, "wdir", _line(body, "wdir"))
        else:
            wrel = r or "."

    def paths(key: str) -> list[str]:
        out = []
        for p in _str_list(body.get(key), problems, body, name, key):
            rel, err = _norm(root, wrel, p)
            if err:
                problems.add(body, err, name, key, _line(body, key))
            elif rel:
                out.append(rel)
        return out

    deps = paths("deps")
    outs: list[Out] = []
    plots: list[PlotDef] = []
    for key in ("outs", "metrics", "plots"):
        raw = body.get(key)
        if raw is None:
            continue
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            problems.add(body, "must be a list", name, key, _line(body, key))
            continue
        for item in raw:
            flags: dict[str, Any] = {}
            if isinstance(item, dict):
                if "path" in item:
                    p = item.get("path")
                    flags = {k: v for k, v in item.items() if k != "path"}
                elif len(item) == 1:
                    p, flags = next(iter(item.items()))
                    flags = flags or {}
                else:
                    problems.add(
                        body, "an output mapping needs one path", name, key, _line(body, key)
                    )
                    continue
            else:
                p = item
            props: dict[str, Any] = {}
            if key == "plots" and isinstance(flags, dict):
                props = {k: v for k, v in flags.items() if k in PLOT_PROPS}
                flags = {k: v for k, v in flags.items() if k not in PLOT_PROPS}
            if (
                not isinstance(flags, dict)
                or any(k not in OUT_FLAGS for k in flags)
                or any(not isinstance(v, bool) for v in flags.values())
            ):
                problems.add(
                    body,
                    f"output '{p}' takes only 'cache' and 'persist' (true/false)"
                    + (f" and {', '.join(sorted(PLOT_PROPS))}" if key == "plots" else ""),
                    name,
                    key,
                    _line(body, key),
                )
                continue
            rel, err = _norm(root, wrel, p)
            owned = output_problem(rel) if rel else None
            if owned:
                err = f"output '{p}' {owned}; it cannot be an output"
            if err:
                problems.add(body, err, name, key, _line(body, key))
                continue
            outs.append(
                Out(
                    rel,
                    bool(flags.get("cache", True)),
                    bool(flags.get("persist", False)),
                    metric=key == "metrics",
                )
            )
            if key == "plots":
                plot = _stage_plot(rel, props, name, lambda q: _norm(root, wrel, q), problems, body)
                if plot is not None:
                    plots.append(plot)
    params: list[ParamRef] = []
    raw_params = body.get("params") or []
    if not isinstance(raw_params, list):
        problems.add(
            body,
            "must be a list of keys, 'file:key' or {file: [keys]}",
            name,
            "params",
            _line(body, "params"),
        )
        raw_params = []
    for item in raw_params:
        if isinstance(item, str):
            file, _, key = item.rpartition(":") if ":" in item else (default_params, "", item)
            pairs = [(file or default_params, key)]
            if not key and file:  # `params.yaml:`: every key of the file
                pairs = [(file, WHOLE_FILE)]
        elif isinstance(item, dict):
            pairs = []
            for file, keys in item.items():
                if keys is None or keys == []:  # `- params.yaml:`: every key of the file
                    pairs.append((str(file), WHOLE_FILE))
                    continue
                ks = [keys] if isinstance(keys, str) else keys
                if not isinstance(ks, list) or not all(isinstance(k, str) for k in ks):
                    problems.add(
                        body,
                        f"params of '{file}' must be a list of keys",
                        name,
                        "params",
                        _line(body, "params"),
                    )
                    continue
                pairs += [(str(file), k) for k in ks]
        else:
            problems.add(
                body,
                "each entry is a key, 'file:key' or {file: [keys]}",
                name,
                "params",
                _line(body, "params"),
            )
            continue
        for file, key in pairs:
            frel, err = _norm(root, wrel, file)
            if key == WHOLE_FILE and not err:
                params.append(ParamRef(frel, ""))  # type: ignore[arg-type]
                continue
            if err or not key:
                problems.add(body, err or "empty param key", name, "params", _line(body, "params"))
                continue
            params.append(ParamRef(frel, key))  # type: ignore[arg-type]
    env = _str_list(body.get("env"), problems, body, name, "env")
    for v in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            problems.add(
                body, f"'{v}' is not an environment variable name", name, "env", _line(body, "env")
            )
    seed = body.get("seed")
    if seed is None:
        seed = derive_seed(pipeline_seed, name)
    elif seed_problem(seed):
        problems.add(body, seed_problem(seed), name, "seed", _line(body, "seed"))  # type: ignore[arg-type]
        seed = 0
    flags = {}
    for k in ("always_changed", "frozen", "network"):
        v = body.get(k, False)
        if not isinstance(v, bool):
            problems.add(body, "must be true or false", name, k, _line(body, k))
            v = False
        flags[k] = v
    image = body.get("image", pipeline_image)
    if image is not None and (
        not isinstance(image, str) or not image.strip() or _CONTROL_RE.search(image)
    ):
        problems.add(body, "must be an image reference string", name, "image", _line(body, "image"))
        image = None
    environment = None
    if "environment" in body:
        environment = _parse_environment(body, name, root, wrel, problems)
    desc = body.get("desc")
    if desc is not None and not isinstance(desc, str | int | float):
        problems.add(body, "must be a line of text", name, "desc", _line(body, "desc"))
    executor = body.get("executor")
    if executor is not None and (
        not isinstance(executor, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", executor)
    ):
        problems.add(
            body,
            "must be an executor's name (letters, digits, '_', '-', '.')",
            name,
            "executor",
            _line(body, "executor"),
        )
    resources = _parse_resources(body, name, problems)
    observe: tuple = ()
    if body.get("observe") is not None:
        observe = parse_observe(
            body["observe"],
            name,
            lambda p: _norm(root, wrel, p),
            problems,
            body,
            _line(body, "observe") or line,
        )
    if len(problems.items) != n0:
        return None
    return Stage(
        name=name,
        cmd=cmd,
        wdir=wrel,
        deps=deps,
        params=params,
        outs=outs,
        env=env,
        image=image,
        seed=int(seed),
        environment=environment,
        desc=str(desc) if desc else None,
        meta=_plain_meta(body.get("meta")),
        line=line,
        executor=executor,
        observe=observe,
        plots=tuple(plots),
        resources=resources,
        **flags,
    )


WHOLE_FILE = object()  # a params entry naming a file and no key: every key of it


def _plain_meta(v: Any) -> Any:
    """`meta:` as plain dicts, lists and scalars (ruamel's round-trip types do not pickle
    small, and JSON output wants plain values)."""
    if isinstance(v, dict):
        return {str(k): _plain_meta(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain_meta(x) for x in v]
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


def _parse_resources(body: Any, name: str, problems: _Problems) -> tuple[tuple[str, float], ...]:
    """`resources: {GPU: 1, memory: 16e9}`: names to amounts >= 0, as a worker advertises them
    (`dask worker --resources "GPU=1"`)."""
    raw = body.get("resources")
    if raw is None:
        return ()
    line = _line(body, "resources")
    if not isinstance(raw, dict) or not raw:
        problems.add(body, "must map resource names to amounts", name, "resources", line)
        return ()
    out = []
    for k, v in raw.items():
        ok_name = isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", k)
        ok_amount = isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < float("inf")
        if not (ok_name and ok_amount):
            problems.add(
                body,
                f"{str(k)[:40]!r} must name a resource with an amount >= 0 (GPU: 1)",
                name,
                "resources",
                line,
            )
            return ()
        out.append((k, float(v)))
    return tuple(sorted(out))


def _stage_plot(
    rel: str, props: dict, stage: str, norm: Any, problems: _Problems, body: Any
) -> PlotDef | None:
    """A `plots:` output's own plot: its x/y are fields of that file (DVC's stage plots)."""
    n0 = len(problems.items)

    def bad(key: str, msg: str) -> None:
        problems.add(body, f"plot '{rel}': {msg}", stage, f"plots.{key}", _line(body, "plots"))

    for k in ("x", "y"):
        if isinstance(props.get(k), dict):
            bad(k, "names a field of this file (a mapping of files belongs to top-level plots)")
    kwargs = plot_props(props, (rel,), norm, bad)
    return PlotDef(id=rel, stage=stage, **kwargs) if len(problems.items) == n0 else None


def parse_plots_section(doc: Any, root: str, problems: _Problems) -> tuple[PlotDef, ...]:
    """repro.yaml's top-level `plots:` (paths relative to the project root), validated."""
    if not isinstance(doc, dict) or doc.get("plots") is None:
        return ()
    norm = lambda p: _norm(root, ".", p)  # noqa: E731
    return parse_plots(doc["plots"], norm, problems, doc, _line(doc, "plots"))


def _parse_environment(
    body: Any, name: str, root: str, wrel: str, problems: _Problems
) -> EnvironmentSpec | None:
    raw = body.get("environment")
    ln = _line(body, "environment")
    if raw is True:
        return EnvironmentSpec(python=True, platform=True, all_packages=True)
    if not isinstance(raw, dict):
        problems.add(
            body,
            "must be true or a mapping with python, platform, packages, lockfiles",
            name,
            "environment",
            ln,
        )
        return None
    for k in raw:
        if k not in ENV_KEYS:
            problems.add(
                body,
                f"unknown key '{k}' (allowed: {', '.join(sorted(ENV_KEYS))})",
                name,
                "environment",
                ln,
            )
    packages = raw.get("packages", [])
    all_packages = packages == "all"
    if all_packages:
        packages = []
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        problems.add(
            body,
            "'packages' must be a list of distribution names or 'all'",
            name,
            "environment",
            ln,
        )
        packages = []
    lockfiles = []
    for p in _str_list(raw.get("lockfiles"), problems, body, name, "environment"):
        rel, err = _norm(root, wrel, p)
        if err:
            problems.add(body, err, name, "environment", ln)
        elif rel:
            lockfiles.append(rel)
    if not isinstance(raw.get("platform", False), bool):
        problems.add(body, "'platform' must be true or false", name, "environment", ln)
    interpreter, err = _interpreter_path(raw.get("python", False), root, wrel)
    if err:
        problems.add(body, f"'python' {err}", name, "environment", ln)
    return EnvironmentSpec(
        python=bool(raw.get("python", False)),
        interpreter=interpreter,
        platform=bool(raw.get("platform", False)),
        packages=tuple(sorted(set(packages))),
        all_packages=all_packages,
        lockfiles=tuple(lockfiles),
    )


def _interpreter_path(value: Any, root: str, wrel: str) -> tuple[str | None, str | None]:
    """`environment.python` given as a path (project-relative from the stage's wdir, or
    absolute: an interpreter may live outside the project), or an error text."""
    if isinstance(value, bool):
        return None, None
    if not isinstance(value, str):
        return None, "must be true, false or the path of a Python interpreter"
    if value.strip().startswith("/") and not _CONTROL_RE.search(value):
        return posixpath.normpath(value.strip()), None
    rel, err = _norm(root, wrel, value)
    if err:
        return None, f"{err} (an interpreter elsewhere takes an absolute path)"
    return rel, None
