"""`repro import-dvc`: carry a DVC project over to repro.

repro.yaml's stage format is DVC's (cmd, deps, params, outs/metrics/plots with cache and
persist, wdir, frozen, always_changed, desc, meta, vars, foreach/do, matrix), so dvc.yaml's
stages are copied key by key; what repro has no place for is dropped and listed, one line each.
`*.dvc` files become tracked data (`repro add`) when their data is in the workspace, with the
source of a `dvc import-url` recorded as repro's external source; `.dvc/config` remotes become
repro remotes. dvc.lock records md5 hashes, which repro does not use: its stage results are not
carried over (the first `repro run` records them), and the lines say so.

Nothing is written until repro.yaml has been built and validated; a bad DVC project changes
nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from repro.errors import SpecError, UsageError
from repro.project import Project

# keys of a DVC stage repro takes as they are (others are listed as not carried over)
STAGE_KEYS = (
    "cmd",
    "wdir",
    "deps",
    "params",
    "outs",
    "metrics",
    "plots",
    "frozen",
    "always_changed",
    "desc",
    "meta",
    "vars",
)
TOP_KEYS = ("vars", "params", "metrics", "plots")
OUT_FLAGS = ("cache", "persist")
PLOT_PROPS = ("x", "y", "template", "title", "x_label", "y_label")
SKIP_DIRS = {".git", ".dvc", ".repro", "node_modules", ".venv"}
MAX_DVC_FILES = 10_000


@dataclass
class DvcImport:
    stages: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    remotes: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": self.stages,
            "data": self.data,
            "remotes": self.remotes,
            "external": self.external,
            "skipped": self.skipped,
        }


def _load_yaml(path: str, label: str) -> Any:
    from ruamel.yaml import YAML, YAMLError

    from repro.pipeline.specio import read_text

    try:
        return YAML(typ="safe", pure=True).load(read_text(path, label))
    except YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{label}: cannot be parsed as YAML ({first}).") from None


# -- dvc.yaml -> repro.yaml ----------------------------------------------------------------
def _out(item: Any, key: str, where: str, skipped: list[str]) -> Any:
    """One entry of outs/metrics/plots: a path, or {path: flags} with only what repro takes."""
    if not isinstance(item, dict) or len(item) != 1:
        return item
    path, flags = next(iter(item.items()))
    if not isinstance(flags, dict):
        return path
    allowed = OUT_FLAGS + (PLOT_PROPS if key == "plots" else ())
    kept = {k: v for k, v in flags.items() if k in allowed}
    for k in sorted(set(flags) - set(kept)):
        skipped.append(f"{where}: {key} '{path}': option '{k}' (repro has no such option)")
    if "${" in str(path):  # a stamped path: repro interpolates the `path:` form's value
        return {"path": path, **kept}
    return {path: kept} if kept else path


def _stage(name: str, body: Any, wdir: str | None, skipped: list[str]) -> dict[str, Any] | None:
    where = f"dvc.yaml: stage '{name}'"
    if not isinstance(body, dict):
        skipped.append(f"{where}: is not a mapping")
        return None
    if "foreach" in body or "matrix" in body:
        out: dict[str, Any] = {k: body[k] for k in ("foreach", "matrix") if k in body}
        if "do" in body:
            do = _stage(name, body["do"], wdir, skipped)
            if do is None:
                return None
            out["do"] = do
        else:
            rest = {k: v for k, v in body.items() if k not in ("foreach", "matrix")}
            out.update(_stage(name, rest, wdir, skipped) or {})
        return out
    stage: dict[str, Any] = {}
    for k, v in body.items():
        if k not in STAGE_KEYS:
            skipped.append(f"{where}: key '{k}' (repro has no such stage key)")
        elif k == "cmd" and isinstance(v, list):
            stage["cmd"] = " && ".join(str(c) for c in v)  # DVC runs a list one after another
        elif k in ("outs", "metrics", "plots") and isinstance(v, list):
            stage[k] = [_out(item, k, where, skipped) for item in v]
        else:
            stage[k] = v
    if wdir:
        inner = stage.get("wdir")
        stage["wdir"] = os.path.normpath(os.path.join(wdir, inner)) if inner else wdir
        stage["wdir"] = stage["wdir"].replace(os.sep, "/")
    return stage


def _pipeline(doc: Any, wdir: str | None, skipped: list[str]) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SpecError("dvc.yaml: is not a mapping of top-level keys.")
    out: dict[str, Any] = {}
    for k in doc:
        if k not in (*TOP_KEYS, "stages"):
            skipped.append(f"dvc.yaml: top-level '{k}' (repro has no such section)")
    for k in TOP_KEYS:
        if doc.get(k) is not None:
            out[k] = doc[k]
    stages = doc.get("stages") or {}
    if not isinstance(stages, dict):
        raise SpecError("dvc.yaml: 'stages' is not a mapping of stage names.")
    out["stages"] = {}
    for name, body in stages.items():
        stage = _stage(str(name), body, wdir, skipped)
        if stage is not None:
            out["stages"][str(name)] = stage
    return out


# -- *.dvc files -> tracked data ------------------------------------------------------------
def _dvc_files(src: str) -> list[str]:
    found: list[str] = []
    for dirpath, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        found += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".dvc")]
        if len(found) > MAX_DVC_FILES:
            raise UsageError(f"{src}: holds over {MAX_DVC_FILES:,} .dvc files; import a subfolder.")
    return found


@dataclass
class _Tracked:
    rel: str
    url: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def _tracked(project: Project, dvc_file: str, skipped: list[str]) -> list[_Tracked]:
    label = os.path.relpath(dvc_file, project.root).replace(os.sep, "/")
    doc = _load_yaml(dvc_file, label)
    outs = doc.get("outs") if isinstance(doc, dict) else None
    if not isinstance(outs, list):
        skipped.append(f"{label}: has no 'outs' list")
        return []
    source: dict[str, Any] = {}
    deps = doc.get("deps") or []
    if isinstance(deps, list) and deps and isinstance(deps[0], dict):
        dep = deps[0]
        if "repo" in dep:
            skipped.append(f"{label}: 'dvc import' from a git repository (repro has no such link)")
        elif isinstance(dep.get("path"), str) and "://" in dep["path"]:
            source = {"url": dep["path"]}
            for key, ours in (("etag", "etag"), ("size", "size"), ("version_id", "version_id")):
                if dep.get(key) is not None:
                    source[ours] = dep[key]
    tracked = []
    for out in outs:
        path = out.get("path") if isinstance(out, dict) else None
        if not isinstance(path, str):
            skipped.append(f"{label}: an out without a path")
            continue
        full = os.path.normpath(os.path.join(os.path.dirname(dvc_file), path))
        try:
            rel = project.rel(full, f"{label} out")
        except Exception as exc:  # a path out of the project: say so, carry the rest
            skipped.append(f"{label}: {exc}")
            continue
        tracked.append(_Tracked(rel, source.get("url"), source))
    return tracked


# -- .dvc/config -> remotes -----------------------------------------------------------------
def _remotes(project: Project, src: str, skipped: list[str]) -> list[str]:
    import configparser

    from repro.remote import add_remote

    path = os.path.join(src, ".dvc", "config")
    if not os.path.isfile(path):
        return []
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        skipped.append(f".dvc/config: cannot be read ({type(exc).__name__})")
        return []
    default = parser.get("core", "remote", fallback=None)
    names = []
    for section in parser.sections():
        head, _, rest = section.partition(" ")
        if head.strip("'\"") != "remote" or not rest:
            continue
        name = rest.strip("'\"")
        url = parser.get(section, "url", fallback="")
        if "://" in url and url.split("://")[0] not in ("s3", "gs", "gcs", "az", "azure", "file"):
            skipped.append(f".dvc/config: remote '{name}' ({url.split('://')[0]}: not supported)")
            continue
        if "://" not in url and not os.path.isabs(url):
            url = os.path.normpath(os.path.join(src, ".dvc", url))
        url = url.replace("azure://", "az://", 1)
        opts = []
        for key, value in parser.items(section):
            if key == "endpointurl":
                opts.append(f"endpoint_url={value}")
            elif key != "url":
                skipped.append(f".dvc/config: remote '{name}' option '{key}'")
        if name in (project.config.get("remote") or {}):
            skipped.append(f".dvc/config: remote '{name}' (repro has a remote of that name)")
            continue
        add_remote(project, name, url, default=name == default, options=opts)
        names.append(name)
    return names


# -- the command ----------------------------------------------------------------------------
def _spec_exists(project: Project) -> bool:
    from repro.pipeline.specio import load_rt

    if not os.path.exists(project.spec_path):
        return False
    doc = load_rt(project.spec_path)
    return bool(doc) and any(doc.get(k) for k in doc)


def _write_spec(project: Project, pipeline: dict[str, Any]) -> None:
    """Write repro.yaml and validate it as repro reads it; put the old file back on error."""
    from repro.pipeline.graph import build_graph
    from repro.pipeline.spec import load_spec
    from repro.pipeline.specio import save_rt

    before = None
    if os.path.exists(project.spec_path):
        with open(project.spec_path, encoding="utf-8") as f:
            before = f.read()
    save_rt(project.spec_path, pipeline)
    try:
        build_graph(load_spec(project), project.root)  # overlapping outputs, cycles
    except BaseException:
        if before is None:
            os.unlink(project.spec_path)
        else:
            with open(project.spec_path, "w", encoding="utf-8") as f:
                f.write(before)
        raise


def import_dvc(project: Project, path: str = ".", force: bool = False) -> DvcImport:
    """Read the DVC project at `path` (the repro project's root or a folder in it) and write
    repro.yaml, tracked data in repro.lock and remotes in .repro/config.toml."""
    from repro.pipeline.runlock import run_lock

    src = os.path.abspath(path)
    if not os.path.isdir(src):
        raise UsageError(f"{path}: no such folder.")
    rel_src = os.path.relpath(src, project.root)
    if rel_src.startswith(".."):
        raise UsageError(f"{path}: lies outside the repro project ({project.root}).")
    dvc_yaml = os.path.join(src, "dvc.yaml")
    dvc_files = _dvc_files(src)
    if (
        not os.path.isfile(dvc_yaml)
        and not dvc_files
        and not os.path.isdir(os.path.join(src, ".dvc"))
    ):
        raise UsageError(f"{path}: holds no DVC project (no dvc.yaml, .dvc files or .dvc/).")
    if _spec_exists(project) and not force:
        raise UsageError("repro.yaml: exists already; --force overwrites it with the import.")
    result = DvcImport()
    skipped = result.skipped
    doc = _load_yaml(dvc_yaml, "dvc.yaml") if os.path.isfile(dvc_yaml) else None
    pipeline = _pipeline(doc, None if rel_src == "." else rel_src.replace(os.sep, "/"), skipped)
    tracked = [t for f in dvc_files for t in _tracked(project, f, skipped)]
    present = [t for t in tracked if os.path.lexists(project.abs(t.rel))]
    for t in tracked:
        if t not in present:
            skipped.append(
                f"{t.rel}: not in the workspace ('dvc pull' it, then 'repro add {t.rel}')"
            )
    if os.path.isfile(os.path.join(src, "dvc.lock")):
        skipped.append(
            "dvc.lock: stage results (md5 hashes) are not carried over; the first "
            "'repro run' records them"
        )
    with run_lock(project.dot):
        _write_spec(project, pipeline)
        result.stages = list(pipeline.get("stages") or {})
        if present:
            result.data, result.external = _add_data(project, present, skipped)
        result.remotes = _remotes(project, src, skipped)
        _ignore_rules(project, src, skipped)
    return result


def _ignore_rules(project: Project, src: str, skipped: list[str]) -> None:
    """.dvcignore has .reproignore's syntax (gitignore's): copied when repro has none."""
    dvcignore = os.path.join(src, ".dvcignore")
    if not os.path.isfile(dvcignore):
        return
    ours = os.path.join(project.root, ".reproignore")
    if os.path.exists(ours) or src != project.root:
        skipped.append(".dvcignore: copy its rules into .reproignore yourself")
        return
    shutil.copyfile(dvcignore, ours)


def _add_data(
    project: Project, present: list[_Tracked], skipped: list[str]
) -> tuple[list[str], list[str]]:
    """`repro add` the .dvc-tracked paths; a `dvc import-url` source becomes an external one."""
    from repro.data import add
    from repro.lockfile import EXTERNAL_SCHEMES, load_lock, save_lock

    added = add(project, [t.rel for t in present])
    lock = load_lock(project.lock_path)
    external = []
    for t, a in zip(present, added, strict=True):
        if not t.url:
            continue
        scheme = t.url.split("://", 1)[0].lower()
        if scheme not in EXTERNAL_SCHEMES:
            skipped.append(
                f"{t.rel}.dvc: source {t.url[:120]!r} ({scheme}: repro does not fetch it)"
            )
            continue
        lock.external[t.rel] = {**t.source, "hash": a.hash.hash}
        external.append(t.rel)
    save_lock(project.lock_path, lock)
    return [a.path for a in added], external
