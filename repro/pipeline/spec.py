"""Read and validate `repro.yaml` into plain dataclasses.

Every problem is reported at once, each as one sentence naming the file, line, stage and key;
nothing runs when any is found. `foreach` and `matrix` stamp out stages from a list, as in DVC
(`name@item`, `name@a-b`). Paths in a stage are relative to its `wdir` and are stored relative to
the project root, POSIX style.
"""

from __future__ import annotations

import itertools
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from repro.errors import SpecError
from repro.safety import output_problem

if TYPE_CHECKING:  # parsing repro.yaml needs a root and a tmp folder, not the store
    from repro.project import Project

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
    "executor",
    "foreach",
    "matrix",
    "do",
}
OUT_FLAGS = {"cache", "persist"}
ENV_KEYS = {"python", "packages", "lockfiles", "platform"}
DEFAULT_PARAMS = "params.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-@]*$")
_VAR_RE = re.compile(r"\$\{\s*([A-Za-z0-9_.]+)\s*\}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Bounds that keep a hostile or mistaken repro.yaml from hanging repro (see specio for the file's
# own bounds). PYTHONHASHSEED accepts exactly this seed range; Linux refuses one argument over
# 128 KiB, and a command that long belongs in a script file anyway.
MAX_SEED = 2**32 - 1
MAX_CMD_BYTES = 100_000
MAX_STAGES = 10_000
MAX_STAMPED_VALUES = 1_000_000  # foreach/matrix: stages stamped x values in the stamped body
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


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
    # `python: PATH`: the interpreter to fingerprint (project-relative POSIX, or absolute);
    # None: the command's own interpreter, found on the stage's PATH.
    interpreter: str | None = None


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
    executor: str | None = None  # the executor's name; None: chosen by --executor, config, image

    @property
    def out_paths(self) -> list[str]:
        return [o.path for o in self.outs]


@dataclass
class Spec:
    path: str
    stages: dict[str, Stage]
    data: list[str]
    seed: int | None = None

    def output_owner(self, rel: str) -> str | None:
        """The stage whose output is `rel`, contains it, or lies inside it."""
        for st in self.stages.values():
            for o in st.outs:
                if overlaps(o.path, rel):
                    return st.name
        return None


def overlaps(a: str, b: str) -> bool:
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def seed_problem(value: Any) -> str | None:
    """Why `value` cannot be a seed, or None: an integer in [0, 2^32-1], the range
    PYTHONHASHSEED (which every stage's process gets) accepts."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "must be an integer"
    if not 0 <= value <= MAX_SEED:
        return f"{value} is out of range: a seed is between 0 and {MAX_SEED}"
    return None


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
    from repro.pipeline.specio import load_yaml_text, read_text

    fname = os.path.relpath(text_path, root) if text_path.startswith(root) else text_path
    problems = _Problems(fname)
    try:
        text = read_text(text_path, fname)
    except FileNotFoundError:
        raise SpecError(f"{fname}: not found (run 'repro init').") from None
    doc = load_yaml_text(text, fname, typ="rt")
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
    if seed is not None and seed_problem(seed):
        problems.add(doc, seed_problem(seed), key="seed", line=_line(doc, "seed"))  # type: ignore[arg-type]
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
        stamped = _expand(name, raw_body, problems)
        if len(stages) + len(stamped) > MAX_STAGES:
            raise SpecError(
                f"{fname}: defines over {MAX_STAGES:,} stages (foreach and matrix included); "
                "split the pipeline."
            )
        for sname, body in stamped:
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
    return Spec(fname, stages, data, seed)


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
        executor=executor,
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


def load_spec(project: Project) -> Spec:
    """The validated spec, parsed at most once per change of `repro.yaml`."""
    from repro.pipeline.parsecache import cached_parse

    path = project.spec_path
    spec = cached_parse(project.tmp_dir, path, lambda: parse_spec(path, project.root), "spec")
    check_workspace(spec, project.root)
    return spec


def check_workspace(spec: Spec, root: str) -> None:
    """Refuse a working dir that is a file, and an output whose parent folder is a file: both
    would fail only mid-run. Checked on every load (the workspace changes; repro.yaml's parse is
    cached by its stat)."""
    problems: list[str] = []

    def where(st: Stage, key: str) -> str:
        line = f", line {st.line}" if st.line else ""
        return f"{spec.path}{line}: stage '{st.name}', key '{key}'"

    def blocker(rel: str) -> str | None:
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            p = os.path.join(root, *parts[:i])
            if not os.path.lexists(p):
                return None
            if not os.path.isdir(p):
                return sub
        return None

    for st in spec.stages.values():
        if st.wdir != ".":
            b = blocker(st.wdir)
            if b is not None:
                problems.append(f"{where(st, 'wdir')}: '{b}' is a file, not a folder.")
                continue
        for o in st.outs:
            parent = posixpath.dirname(o.path)
            b = blocker(parent) if parent else None
            if b is not None:
                problems.append(
                    f"{where(st, 'metrics' if o.metric else 'outs')}: '{o.path}' cannot be "
                    f"made: '{b}' is a file, not a folder."
                )
    if problems:
        raise SpecError("\n".join(problems))
