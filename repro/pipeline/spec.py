"""Read and validate `repro.yaml` into plain dataclasses.

Every problem is reported at once, each as one sentence naming the file, line, stage and key;
nothing runs when any is found. `foreach` and `matrix` stamp out stages from a list, as in DVC
(`name@item`, `name@a-b`). Paths in a stage are relative to its `wdir` and are stored relative to
the project root, POSIX style.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from repro.errors import SpecError
from repro.project import SPEC_FILE, Project
from repro.safety import output_problem

TOP_KEYS = {"stages", "data", "seed", "image", "params"}
STAGE_KEYS = {
    "cmd",
    "deps",
    "params",
    "outs",
    "metrics",
    "wdir",
    "env",
    "image",
    "seed",
    "always_changed",
    "frozen",
    "environment",
    "network",
    "desc",
    "foreach",
    "matrix",
    "do",
}
OUT_FLAGS = {"cache", "persist"}
ENV_KEYS = {"python", "packages", "lockfiles", "platform"}
DEFAULT_PARAMS = "params.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-@]*$")
_VAR_RE = re.compile(r"\$\{\s*([A-Za-z0-9_.]+)\s*\}")


@dataclass(frozen=True)
class Out:
    path: str  # project-relative POSIX
    cache: bool = True
    persist: bool = False
    metric: bool = False


@dataclass(frozen=True)
class ParamRef:
    file: str  # project-relative POSIX
    key: str  # dotted


@dataclass(frozen=True)
class EnvironmentSpec:
    """What of the software environment counts in the signature."""

    python: bool = False
    platform: bool = False
    packages: tuple[str, ...] = ()
    all_packages: bool = False
    lockfiles: tuple[str, ...] = ()


@dataclass
class Stage:
    name: str
    cmd: str
    wdir: str = "."
    deps: list[str] = field(default_factory=list)
    params: list[ParamRef] = field(default_factory=list)
    outs: list[Out] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    image: str | None = None
    seed: int = 0
    always_changed: bool = False
    frozen: bool = False
    network: bool = False
    environment: EnvironmentSpec | None = None
    desc: str | None = None
    line: int = 0

    @property
    def out_paths(self) -> list[str]:
        return [o.path for o in self.outs]


@dataclass
class Spec:
    path: str
    stages: dict[str, Stage]
    data: list[str]
    seed: int | None = None
    image: str | None = None

    def output_owner(self, rel: str) -> str | None:
        """The stage whose output is `rel`, contains it, or lies inside it."""
        for st in self.stages.values():
            for o in st.outs:
                if overlaps(o.path, rel):
                    return st.name
        return None


def overlaps(a: str, b: str) -> bool:
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def derive_seed(pipeline_seed: int | None, name: str) -> int:
    """A stage's seed when it sets none: from the pipeline seed and the stage name (stable
    across machines; 31 bits so every library accepts it)."""
    import xxhash

    return xxhash.xxh3_64_intdigest(f"{pipeline_seed or 0}:{name}".encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
class _Problems:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[str] = []

    def add(
        self,
        node: Any,
        msg: str,
        stage: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        if line is None:
            line = _line(node)
        where = self.file + (f", line {line}" if line else "")
        what = []
        if stage:
            what.append(f"stage '{stage}'")
        if key:
            what.append(f"key '{key}'")
        self.items.append(f"{where}: {', '.join(what) + ': ' if what else ''}{msg}")


def _line(node: Any, key: Any = None) -> int:
    lc = getattr(node, "lc", None)
    if lc is None:
        return 0
    try:
        if key is not None:
            return int(lc.key(key)[0]) + 1
        return int(lc.line) + 1
    except Exception:
        return 0


def _norm(project_root: str, wdir: str, p: str) -> tuple[str | None, str | None]:
    """Project-relative POSIX path for `p` given relative to `wdir`, or an error text."""
    if not isinstance(p, str) or not p.strip():
        return None, "must be a non-empty path"
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


def _str_list(value: Any, problems: _Problems, node: Any, stage: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(node, "must be a list of strings", stage, key, _line(node, key))
        return []
    return list(value)


def parse_spec(text_path: str, root: str) -> Spec:
    """Parse and validate `repro.yaml` at `text_path` (no graph checks: see graph.py)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    fname = os.path.relpath(text_path, root) if text_path.startswith(root) else text_path
    problems = _Problems(fname)
    try:
        with open(text_path) as f:
            doc = YAML(typ="rt").load(f)
    except FileNotFoundError:
        raise SpecError(f"{fname}: not found (run 'repro init').") from None
    except YAMLError as exc:
        from repro.pipeline.specio import _yaml_error

        raise SpecError(f"{fname}: not valid YAML ({_yaml_error(exc)}).") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SpecError(f"{fname}: the top level must be a mapping with 'stages:'.")
    for k in doc:
        if k not in TOP_KEYS:
            problems.add(
                doc,
                f"unknown top-level key (allowed: {', '.join(sorted(TOP_KEYS))})",
                key=str(k),
                line=_line(doc, k),
            )
    seed = doc.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.add(doc, "must be an integer", key="seed", line=_line(doc, "seed"))
        seed = None
    image = doc.get("image")
    if image is not None and not isinstance(image, str):
        problems.add(
            doc, "must be an image reference string", key="image", line=_line(doc, "image")
        )
        image = None
    default_params = doc.get("params", DEFAULT_PARAMS)
    if not isinstance(default_params, str):
        problems.add(doc, "must be a file name", key="params", line=_line(doc, "params"))
        default_params = DEFAULT_PARAMS
    data: list[str] = []
    for p in _str_list(doc.get("data"), problems, doc, "", "data"):
        rel, err = _norm(root, ".", p)
        if err:
            problems.add(doc, err, key="data", line=_line(doc, "data"))
        elif rel:
            data.append(rel)
    stages_doc = doc.get("stages") or {}
    if not isinstance(stages_doc, dict):
        problems.add(
            doc,
            "must be a mapping of stage names to stages",
            key="stages",
            line=_line(doc, "stages"),
        )
        stages_doc = {}
    stages: dict[str, Stage] = {}
    for raw_name, raw_body in stages_doc.items():
        name = str(raw_name)
        if not _NAME_RE.match(name) or "@" in name:
            problems.add(
                stages_doc,
                "stage names use letters, digits, '_', '-' and '.'",
                name,
                line=_line(stages_doc, raw_name),
            )
            continue
        for sname, body in _expand(name, raw_body, problems):
            st = _parse_stage(
                sname,
                body,
                root,
                default_params,
                seed,
                image,
                problems,
                _line(stages_doc, raw_name),
            )
            if st is not None:
                if sname in stages:
                    problems.add(body, "defined twice", sname, line=st.line)
                stages[sname] = st
    if problems.items:
        raise SpecError("\n".join(problems.items))
    return Spec(fname, stages, data, seed, image)


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
    for key in ("outs", "metrics"):
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
            if (
                not isinstance(flags, dict)
                or any(k not in OUT_FLAGS for k in flags)
                or any(not isinstance(v, bool) for v in flags.values())
            ):
                problems.add(
                    body,
                    f"output '{p}' takes only 'cache' and 'persist' (true/false)",
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
        elif isinstance(item, dict):
            pairs = []
            for file, keys in item.items():
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
            if err or not key:
                problems.add(body, err or "empty param key", name, "params", _line(body, "params"))
                continue
            params.append(ParamRef(frel, key))  # type: ignore[arg-type]
    env = _str_list(body.get("env"), problems, body, name, "env")
    for v in env:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", v):
            problems.add(
                body, f"'{v}' is not an environment variable name", name, "env", _line(body, "env")
            )
    seed = body.get("seed")
    if seed is None:
        seed = derive_seed(pipeline_seed, name)
    elif not isinstance(seed, int) or isinstance(seed, bool):
        problems.add(body, "must be an integer", name, "seed", _line(body, "seed"))
        seed = 0
    flags = {}
    for k in ("always_changed", "frozen", "network"):
        v = body.get(k, False)
        if not isinstance(v, bool):
            problems.add(body, "must be true or false", name, k, _line(body, k))
            v = False
        flags[k] = v
    image = body.get("image", pipeline_image)
    if image is not None and (not isinstance(image, str) or not image.strip()):
        problems.add(body, "must be an image reference string", name, "image", _line(body, "image"))
        image = None
    environment = None
    if "environment" in body:
        environment = _parse_environment(body, name, root, wrel, problems)
    desc = body.get("desc")
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
        line=line,
        **flags,
    )


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
    for k in ("python", "platform"):
        if not isinstance(raw.get(k, False), bool):
            problems.add(body, f"'{k}' must be true or false", name, "environment", ln)
    return EnvironmentSpec(
        python=bool(raw.get("python", False)),
        platform=bool(raw.get("platform", False)),
        packages=tuple(sorted(set(packages))),
        all_packages=all_packages,
        lockfiles=tuple(lockfiles),
    )


def load_spec(project: Project) -> Spec:
    """The validated spec, parsed at most once per change of `repro.yaml`."""
    from repro.pipeline.parsecache import cached_parse

    path = os.path.join(project.root, SPEC_FILE)
    return cached_parse(project.tmp_dir, path, lambda: parse_spec(path, project.root), "spec")
