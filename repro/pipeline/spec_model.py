"""The parsed pipeline (`Spec`, `Stage`, `Out`, ...), the bounds repro.yaml must keep, and the
problem list every part of the parser reports into.

Split from repro/pipeline/spec.py (which re-exports every name here): the rest of repro reads
these dataclasses; only the parser builds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TOP_KEYS = {"stages", "data", "seed", "image", "params", "plots", "vars", "metrics"}
STAGE_KEYS = {
    "cmd",
    "deps",
    "params",
    "outs",
    "metrics",
    "plots",
    "wdir",
    "env",
    "image",
    "seed",
    "always_changed",
    "frozen",
    "environment",
    "network",
    "desc",
    "meta",
    "vars",
    "executor",
    "resources",
    "observe",
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
    # `observe:` checks run after the command (repro.pipeline.checks); not part of the
    # signature. A tuple default: specs pickled by an older repro still read as "no checks".
    observe: tuple[Check, ...] = ()
    # `plots:` outputs drawn by `repro plots` (repro/plots.py); not part of the signature.
    plots: tuple[PlotDef, ...] = ()
    # `resources: {GPU: 1, memory: 16e9}`: what a worker must offer (Dask worker resources);
    # sorted (name, amount) pairs, a tuple for the same reason as `observe`. Not signed.
    resources: tuple[tuple[str, float], ...] = ()
    # `meta:` anything the user keeps beside the stage (DVC's); shown by `stage list`, not signed.
    meta: Any = None

    @property
    def out_paths(self) -> list[str]:
        return [o.path for o in self.outs]


@dataclass
class Spec:
    path: str
    stages: dict[str, Stage]
    data: list[str]
    seed: int | None = None
    # Top-level `metrics:`: metric files no stage declares (project-relative POSIX).
    metrics: list[str] = field(default_factory=list)
    # Files the parse read besides repro.yaml (the default params file, `vars:` files, whole-file
    # params): absolute paths; the parse cache is stale when any of them changes.
    sources: tuple[str, ...] = ()

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


# --- `observe:` checks --------------------------------------------------------------------------
CHECK_KINDS = ("metric", "cmd", "schema")
CHECK_KEYS = {"name", *CHECK_KINDS, "min", "max", "timeout", "columns", "on_fail", "severity"}
# Keys that belong to one kind of check only.
_CHECK_KIND_KEYS = {"min": "metric", "max": "metric", "timeout": "cmd", "columns": "schema"}
CHECK_TABLES = (".csv", ".tsv", ".tab", ".psv", ".parquet", ".json")
MAX_CHECK_NAME = 200


@dataclass(frozen=True)
class Check:
    """One `observe:` entry of a stage: an observation made after its command succeeded.
    Paths are project-relative POSIX; `columns` pairs a name with its type (None: any)."""

    name: str
    kind: str  # metric | cmd | schema
    index: int
    path: str | None = None  # metric file or schema table
    key: str | None = None  # the metric's flat key
    min: float | None = None
    max: float | None = None
    cmd: str | None = None
    timeout: float | None = None
    columns: tuple[tuple[str, str | None], ...] = ()
    on_fail: str = "fail"  # fail | warn
    severity: str = "major"  # major | minor


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v  # not NaN


def parse_observe(
    raw: Any,
    stage: str,
    norm: Any,
    problems: _Problems,
    node: Any,
    line: int,
) -> tuple[Check, ...]:
    """The stage's `observe:` list, each entry validated; problems name the check's index and
    key (`observe[1].min`). `norm(path) -> (rel, error)` resolves a path from the stage's wdir."""
    if not isinstance(raw, list):
        problems.add(node, "must be a list of checks (each a mapping)", stage, "observe", line)
        return ()
    checks: list[Check] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        check = _parse_check(i, item, stage, norm, problems, raw)
        if check is None:
            continue
        if check.name in names:
            ln = _line(item) or line
            problems.add(
                item, f"check name '{check.name}' is used twice", stage, f"observe[{i}].name", ln
            )
            continue
        names.add(check.name)
        checks.append(check)
    return tuple(checks)


def _parse_check(
    i: int, item: Any, stage: str, norm: Any, problems: _Problems, seq: Any
) -> Check | None:
    n0 = len(problems.items)
    item_line = _seq_line(seq, i)

    def bad(key: str | None, msg: str) -> None:
        where = f"observe[{i}]" + (f".{key}" if key else "")
        problems.add(item, msg, stage, where, (_line(item, key) if key else 0) or item_line)

    if not isinstance(item, dict):
        bad(None, "must be a mapping with one of 'metric', 'cmd' or 'schema'")
        return None
    for k in item:
        if k not in CHECK_KEYS:
            bad(str(k), f"unknown key (allowed: {', '.join(sorted(CHECK_KEYS))})")
    kinds = [k for k in CHECK_KINDS if k in item]
    if len(kinds) != 1:
        bad(None, "needs exactly one of 'metric', 'cmd' or 'schema'" + _found(kinds))
        return None
    kind = kinds[0]
    for k, owner in _CHECK_KIND_KEYS.items():
        if k in item and owner != kind:
            bad(k, f"belongs to a '{owner}' check, not a '{kind}' one")
    on_fail = item.get("on_fail", "fail")
    if on_fail not in ("fail", "warn"):
        bad("on_fail", f"must be 'fail' or 'warn', not {on_fail!r}")
    severity = item.get("severity", "major")
    if severity not in ("major", "minor"):
        bad("severity", f"must be 'major' or 'minor', not {severity!r}")
    fields: dict[str, Any] = {}
    if kind == "metric":
        fields = _metric_fields(item, norm, bad)
    elif kind == "cmd":
        fields = _cmd_fields(item, bad)
    else:
        fields = _schema_fields(item, norm, bad)
    name = item.get("name")
    if name is None:
        name = _default_name(kind, item)
    elif (
        not isinstance(name, str)
        or not name.strip()
        or _CONTROL_RE.search(name)
        or len(name) > MAX_CHECK_NAME
    ):
        bad("name", f"must be a line of text of at most {MAX_CHECK_NAME} characters")
    if len(problems.items) != n0:
        return None
    return Check(
        name=name.strip(), kind=kind, index=i, on_fail=on_fail, severity=severity, **fields
    )


def _found(kinds: list[str]) -> str:
    return f" (found {' and '.join(repr(k) for k in kinds)})" if kinds else ""


def _seq_line(seq: Any, i: int) -> int:
    lc = getattr(seq, "lc", None)
    try:
        return int(lc.item(i)[0]) + 1 if lc is not None else 0
    except Exception:
        return 0


def _default_name(kind: str, item: dict) -> str:
    value = str(item.get(kind) or "").strip()
    if kind == "cmd":
        return value if len(value) <= 60 else value[:57] + "..."
    return value if kind == "metric" else f"schema of {value}"


def _metric_fields(item: dict, norm: Any, bad: Any) -> dict[str, Any]:
    spec = item.get("metric")
    if not isinstance(spec, str) or ":" not in spec:
        bad("metric", "must be 'FILE:KEY' (e.g. metrics.json:accuracy)")
        return {}
    file, _, key = spec.rpartition(":")
    if not file.strip() or not key.strip():
        bad("metric", "must be 'FILE:KEY' (e.g. metrics.json:accuracy)")
        return {}
    rel, err = norm(file.strip())
    if err:
        bad("metric", err)
    lo, hi = item.get("min"), item.get("max")
    for k, v in (("min", lo), ("max", hi)):
        if v is not None and not _is_number(v):
            bad(k, "must be a number")
    if lo is None and hi is None:
        bad("metric", "needs 'min', 'max' or both")
    elif _is_number(lo) and _is_number(hi) and lo > hi:
        bad("min", f"{lo} is above max {hi}")
    return {"path": rel, "key": key.strip(), "min": lo, "max": hi}


def _cmd_fields(item: dict, bad: Any) -> dict[str, Any]:
    cmd = item.get("cmd")
    if isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd):
        cmd = " && ".join(cmd)
    if not isinstance(cmd, str) or not cmd.strip():
        bad("cmd", "must be a non-empty string or list of strings")
    elif "\x00" in cmd:
        bad("cmd", "contains a NUL byte")
    elif len(cmd.encode("utf-8", "surrogatepass")) > MAX_CMD_BYTES:
        bad("cmd", f"is longer than {MAX_CMD_BYTES:,} bytes (put it in a script file)")
    timeout = item.get("timeout")
    if timeout is not None and (not _is_number(timeout) or not 0 < timeout <= 7 * 86400):
        bad("timeout", "must be a number of seconds above 0 (at most a week)")
    return {"cmd": cmd, "timeout": float(timeout) if _is_number(timeout) else None}


def _schema_fields(item: dict, norm: Any, bad: Any) -> dict[str, Any]:
    path = item.get("schema")
    rel, err = norm(path) if isinstance(path, str) else (None, "must be the path of a table")
    if err:
        bad("schema", err)
    elif not str(rel).lower().endswith(CHECK_TABLES):
        bad("schema", f"'{path}' is not a table repro reads ({', '.join(CHECK_TABLES)})")
    raw = item.get("columns")
    columns: list[tuple[str, str | None]] = []
    if isinstance(raw, list) and all(isinstance(c, str) and c for c in raw):
        columns = [(c, None) for c in raw]
    elif isinstance(raw, dict) and all(
        isinstance(c, str) and c and isinstance(t, str) and t.strip() for c, t in raw.items()
    ):
        columns = [(c, t.strip()) for c, t in raw.items()]
    if not columns:
        bad("columns", "must be a non-empty list of column names or a mapping of names to types")
    elif len({c for c, _ in columns}) != len(columns):
        bad("columns", "names a column twice")
    return {"path": rel, "columns": tuple(columns)}


# --- `plots:` (DVC's): a stage's plot outputs and the top-level plot definitions ---------------
PLOT_TEMPLATES = (
    "linear",
    "simple",
    "scatter",
    "smooth",
    "confusion",
    "confusion_normalized",
    "bar_horizontal",
    "bar_horizontal_sorted",
)
PLOT_PROPS = {"x", "y", "template", "title", "x_label", "y_label"}
PLOT_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
PLOT_DATA = (".csv", ".tsv", ".json")
MAX_PLOT_TEXT = 200


@dataclass(frozen=True)
class PlotDef:
    """One plot `repro plots` draws: its id (the file's path, or a name of the user's choice),
    the data files it reads (or the one image), and which fields go on each axis as (file,
    field) pairs. No `x`: the row's position (`step`, as DVC); no `y`: the file's last field."""

    id: str
    files: tuple[str, ...]
    x: tuple[tuple[str, str], ...] = ()
    y: tuple[tuple[str, str], ...] = ()
    template: str = "linear"
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None
    stage: str | None = None  # the stage whose `plots:` output it is; None: top-level

    @property
    def image(self) -> bool:
        return len(self.files) == 1 and self.files[0].lower().endswith(PLOT_IMAGES)


def _plot_text(v: Any) -> bool:
    return (
        isinstance(v, str)
        and bool(v.strip())
        and len(v) <= MAX_PLOT_TEXT
        and not (_CONTROL_RE.search(v))
    )


def plot_props(
    props: dict, files: tuple[str, ...], norm: Any, bad: Any, allowed: set[str] = PLOT_PROPS
) -> dict[str, Any]:
    """The validated keyword arguments of a PlotDef from one entry's properties. `files`: the
    entry's own data file(s) (a `y: {file: field}` mapping names its own); `bad(key, msg)`
    records a problem; `norm(path) -> (rel, error)` resolves a path."""
    out: dict[str, Any] = {}
    for k in props:
        if k not in allowed:
            bad(str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    template = props.get("template", "linear")
    if template not in PLOT_TEMPLATES:
        bad("template", f"unknown template {template!r} (one of: {', '.join(PLOT_TEMPLATES)})")
    else:
        out["template"] = template
    for k in ("title", "x_label", "y_label"):
        if props.get(k) is not None:
            if _plot_text(props[k]):
                out[k] = props[k].strip()
            else:
                bad(k, f"must be a line of text of at most {MAX_PLOT_TEXT} characters")
    y = _plot_fields(props.get("y"), files, norm, bad, "y", lists=True)
    yfiles = tuple(dict.fromkeys(f for f, _ in y)) or files
    x = _plot_fields(props.get("x"), yfiles, norm, bad, "x", lists=False)
    for f, _ in x:
        if f not in yfiles:
            bad("x", f"names file '{f}', which the plot does not draw (declare it under 'y')")
    if not yfiles:
        bad("y", "needs a data file: give the plot a file's path, or 'y: {FILE: FIELD}'")
    for f in yfiles:
        if not f.lower().endswith(PLOT_DATA + PLOT_IMAGES):
            bad("y", f"'{f}' is not a file repro plots (CSV, TSV, JSON or an image)")
        elif f.lower().endswith(PLOT_IMAGES) and (len(yfiles) > 1 or x or y):
            bad("y", f"'{f}' is an image: it takes no x or y fields")
    out.update(files=yfiles, x=x, y=y)
    return out


def _plot_fields(
    raw: Any, files: tuple[str, ...], norm: Any, bad: Any, key: str, lists: bool
) -> tuple[tuple[str, str], ...]:
    """`x`/`y` as (file, field) pairs: a field (for each of `files`), a list of fields (y), or
    a mapping of files to a field (or list of fields)."""
    if raw is None:
        return ()
    shape = (
        "a field name, a list of them, or {FILE: FIELD}"
        if lists
        else "a field name or {FILE: FIELD}"
    )

    def names(v: Any) -> list[str] | None:
        vs = v if lists and isinstance(v, list) else [v]
        return [n.strip() for n in vs] if vs and all(_plot_text(n) for n in vs) else None

    if isinstance(raw, dict):
        pairs: list[tuple[str, str]] = []
        for f, v in raw.items():
            rel, err = norm(f) if isinstance(f, str) else (None, "must be a path")
            fields = names(v)
            if err or fields is None:
                bad(key, err or f"must be {shape}")
                continue
            pairs += [(rel, n) for n in fields]
        return tuple(pairs)
    fields = names(raw)
    if fields is None:
        bad(key, f"must be {shape}")
        return ()
    return tuple((f, n) for f in files for n in fields)


def parse_plots(raw: Any, norm: Any, problems: _Problems, node: Any, line: int) -> tuple:
    """The top-level `plots:` list (DVC's form): each entry a path, `{PATH: {props}}`, or
    `{ID: {x: ..., y: {FILE: FIELD}}}`; problems name the entry (`plots[1].template`)."""
    if not isinstance(raw, list):
        problems.add(node, "must be a list of plots (paths or mappings)", key="plots", line=line)
        return ()
    defs: list[PlotDef] = []
    ids: set[str] = set()
    for i, item in enumerate(raw):
        n0 = len(problems.items)
        item_line = _seq_line(raw, i) or line

        def bad(key: str | None, msg: str, i: int = i, ln: int = item_line) -> None:
            problems.add(node, msg, key=f"plots[{i}]" + (f".{key}" if key else ""), line=ln)

        if isinstance(item, str):
            name, props = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, props = next(iter(item.items()))
            props = {} if props is None else props
        else:
            bad(None, "must be a path or a mapping of one plot id to its properties")
            continue
        if not _plot_text(name) or not isinstance(props, dict):
            bad(None, "must be a path or a mapping of one plot id to its properties")
            continue
        files: tuple[str, ...] = ()
        pid = name.strip()
        if not isinstance(props.get("y"), dict):
            rel, err = norm(pid)
            if err:
                bad(None, err)
                continue
            files, pid = (rel,), rel
        kwargs = plot_props(props, files, norm, bad)
        if pid in ids:
            bad(None, f"plot '{pid}' is defined twice")
        ids.add(pid)
        if len(problems.items) == n0:
            defs.append(PlotDef(id=pid, **kwargs))
    return tuple(defs)
