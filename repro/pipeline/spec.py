"""Read and validate `repro.yaml` into plain dataclasses.

Every problem is reported at once, each as one sentence naming the file, line, stage and key;
nothing runs when any is found. `foreach` and `matrix` stamp out stages from a list, as in DVC
(`name@item`, `name@a-b`). Paths in a stage are relative to its `wdir` and are stored relative to
the project root, POSIX style.

The parts live beside this module and every name stays importable from here: the dataclasses and
bounds in spec_model.py, `foreach`/`matrix` in spec_expand.py, one stage's validation in
spec_stage.py. This module reads the file, walks its top level, and checks the workspace.
"""

from __future__ import annotations

import os
import posixpath
from typing import TYPE_CHECKING

from repro.errors import SpecError
from repro.pipeline.spec_expand import (
    _expand,
    _interpolate,
    _LinedDict,
    _too_many,
    _weight,
    vars_context,
)
from repro.pipeline.spec_model import (
    _CONTROL_RE,
    _NAME_RE,
    _VAR_RE,
    DEFAULT_PARAMS,
    ENV_KEYS,
    MAX_CMD_BYTES,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    MAX_SEED,
    MAX_STAGES,
    MAX_STAMPED_VALUES,
    OUT_FLAGS,
    STAGE_KEYS,
    TOP_KEYS,
    EnvironmentSpec,
    Out,
    ParamRef,
    Spec,
    Stage,
    _line,
    _Problems,
    derive_seed,
    overlaps,
    seed_problem,
)
from repro.pipeline.spec_stage import (
    _interpreter_path,
    _norm,
    _parse_environment,
    _parse_stage,
    _str_list,
    parse_plots_section,
)

if TYPE_CHECKING:  # parsing repro.yaml needs a root and a tmp folder, not the store
    from repro.project import Project

__all__ = [
    "DEFAULT_PARAMS",
    "ENV_KEYS",
    "MAX_CMD_BYTES",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MAX_SEED",
    "MAX_STAGES",
    "MAX_STAMPED_VALUES",
    "OUT_FLAGS",
    "STAGE_KEYS",
    "TOP_KEYS",
    "EnvironmentSpec",
    "Out",
    "ParamRef",
    "Spec",
    "Stage",
    "check_workspace",
    "derive_seed",
    "load_spec",
    "overlaps",
    "parse_spec",
    "seed_problem",
]
# The private helpers stay importable from here too (as before the split).
_PRIVATE = (
    _CONTROL_RE,
    _NAME_RE,
    _VAR_RE,
    _LinedDict,
    _expand,
    _interpolate,
    _interpreter_path,
    _parse_environment,
    _too_many,
    _weight,
)


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
    metrics: list[str] = []
    for p in _str_list(doc.get("metrics"), problems, doc, "", "metrics"):
        rel, err = _norm(root, ".", p)
        if err:
            problems.add(doc, err, key="metrics", line=_line(doc, "metrics"))
        elif rel:
            metrics.append(rel)
    ctx, sources, source = vars_context(doc, root, default_params, problems)
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
        stamped = _expand(name, raw_body, problems, ctx, source)
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
    parse_plots_section(doc, root, problems)  # checked at load, like every other key
    if problems.items:
        raise SpecError("\n".join(problems.items))
    sources += _whole_file_params(stages, root)
    return Spec(fname, stages, data, seed, metrics, tuple(dict.fromkeys(sources)))


def _whole_file_params(stages: dict[str, Stage], root: str) -> list[str]:
    """Replace each whole-file params entry (`- params.yaml:`) by one entry per top-level key
    of the file as it is now, so that status names the key that changed. A file that does not
    exist yet (a stage makes it) stays one entry for the whole file. Returns the files read:
    the parse is redone when they change (a key added)."""
    from repro.pipeline.parsecache import load_any

    read: list[str] = []
    docs: dict[str, object] = {}
    for st in stages.values():
        if not any(r.key == "" for r in st.params):
            continue
        refs: list[ParamRef] = []
        for ref in st.params:
            if ref.key != "":
                refs.append(ref)
                continue
            path = os.path.join(root, ref.file)
            read.append(path)
            if ref.file not in docs:
                try:
                    docs[ref.file] = load_any(path, ref.file)
                except FileNotFoundError:
                    docs[ref.file] = None
            doc = docs[ref.file]
            if not isinstance(doc, dict) or not doc:
                refs.append(ref)
                continue
            refs += [ParamRef(ref.file, str(k)) for k in doc if "." not in str(k)]
        st.params = list(dict.fromkeys(refs))
    return read


def load_spec(project: Project) -> Spec:
    """The validated spec, parsed at most once per change of `repro.yaml`."""
    from repro.pipeline.parsecache import cached_parse

    path = project.spec_path
    spec = cached_parse(
        project.tmp_dir,
        path,
        lambda: parse_spec(path, project.root),
        "spec",
        deps=lambda s: s.sources,
    )
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
