"""The small workspace commands a DVC user reaches for: `stage list`, `stage remove`, `remove`,
`move`, `commit`, `freeze`/`unfreeze`.

Each edits `repro.yaml` through ruamel (the user's comments and order survive), validates the
would-be file before it replaces the old one, and keeps `repro.lock` and the project's
`.gitignore` in step with it: bad input changes nothing on disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from repro.errors import NotFoundError, PathError, SpecError
from repro.gitignore import FOOTER, HEADER
from repro.lockfile import load_lock, save_lock
from repro.pipeline.specio import load_rt, save_rt
from repro.project import Project


@dataclass
class StageInfo:
    """One row of `repro stage list`."""

    name: str
    cmd: str
    deps: int
    outs: int
    desc: str | None
    frozen: bool
    meta: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_list(project: Project) -> list[StageInfo]:
    """The stages of `repro.yaml` in file order (foreach/matrix stages expanded)."""
    from repro.pipeline.spec import load_spec

    spec = load_spec(project)
    return [
        StageInfo(
            name,
            st.cmd,
            len(st.deps),
            len(st.outs),
            getattr(st, "desc", None),
            bool(getattr(st, "frozen", False)),
            getattr(st, "meta", None),
        )
        for name, st in spec.stages.items()
    ]


# -- repro.yaml edits ---------------------------------------------------------------------------
def _stages_map(doc: Any, name: str) -> Any:
    """The raw `stages:` mapping holding `name`, or NotFoundError (a stamped foreach/matrix
    stage is named by its template, which is what the file holds)."""
    stages = doc.get("stages")
    if not isinstance(stages, dict) or name not in stages:
        raise NotFoundError(
            "stage", name, where="repro.yaml", hint="'repro stage list' shows the stages"
        )
    return stages


def _save_validated(project: Project, doc: Any, what: str) -> None:
    """Write `doc` as `repro.yaml` once the would-be file parses and forms a graph."""
    from repro.pipeline.graph import build_graph
    from repro.pipeline.spec import parse_spec

    os.makedirs(project.tmp_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="repro-", suffix=".yaml", dir=project.tmp_dir)
    os.close(fd)
    try:
        save_rt(tmp, doc)
        try:
            spec = parse_spec(tmp, project.root)
            spec.path = "repro.yaml"
            build_graph(spec, project.root)
        except SpecError as exc:
            label = os.path.relpath(tmp, project.root).replace(os.sep, "/")
            msg = exc.message.replace(label, "repro.yaml").rstrip(".")
            raise SpecError(f"{msg}; nothing was {what}.") from None
        os.replace(tmp, project.spec_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def set_frozen(project: Project, name: str, frozen: bool) -> bool:
    """Freeze (never run; its recorded result stands) or unfreeze a stage. Returns whether
    `repro.yaml` changed."""
    doc = load_rt(project.spec_path)
    body = _stages_map(doc, name)[name]
    if not isinstance(body, dict):
        raise SpecError(f"repro.yaml: stage '{name}' is not a mapping; fix it first.")
    if bool(body.get("frozen", False)) == frozen:
        return False
    if frozen:
        body["frozen"] = True
    else:
        del body["frozen"]
    _save_validated(project, doc, "frozen" if frozen else "unfrozen")
    return True


def stage_remove(project: Project, name: str, outs: bool = False) -> list[str]:
    """Take a stage out of `repro.yaml` and `repro.lock`, and its outputs' `.gitignore` lines.
    Its outputs stay in the workspace unless `outs`. Returns the output paths."""
    from repro.pipeline.runlock import run_lock
    from repro.pipeline.spec import load_spec

    spec = load_spec(project)
    doc = load_rt(project.spec_path)
    stages = _stages_map(doc, name)
    paths = [o.path for o in spec.stages[name].outs] if name in spec.stages else []
    with run_lock(project.dot):
        del stages[name]
        _save_validated(project, doc, "removed")
        lock = load_lock(project.lock_path)
        if lock.stages.pop(name, None) is not None:
            save_lock(project.lock_path, lock)
        unignore(project.root, paths)
        if outs:
            for rel in paths:
                _delete(project, rel)
    return paths


def _delete(project: Project, rel: str) -> None:
    """Delete an output, never through a folder link that leads out of the project."""
    path = project.abs(rel)
    problem = project.boundary.problem(os.path.realpath(os.path.dirname(path)))
    if problem:
        raise PathError(rel, problem)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _tracked_entry(project: Project, path: str, verb: str) -> tuple[str, Any, int]:
    """(rel, the `data:` list, the index of rel in it) for tracked data `path`."""
    rel = project.rel(path, f"path to {verb}")
    doc = load_rt(project.spec_path)
    data = doc.get("data")
    if not isinstance(data, list) or rel not in data:
        from repro.pipeline.spec import load_spec

        owner = load_spec(project).output_owner(rel)
        if owner:
            raise PathError(
                f"{rel}: is an output of stage '{owner}', not tracked data; edit the stage "
                "in repro.yaml (or 'repro stage remove')."
            )
        raise PathError(f"{rel}: is not tracked data in repro.yaml ('repro add' tracks it).")
    return rel, doc, data.index(rel)


def remove_data(project: Project, path: str) -> str:
    """Untrack data: drop it from `data:`, `repro.lock` and `.gitignore`; the file stays."""
    from repro.pipeline.runlock import run_lock

    rel, doc, i = _tracked_entry(project, path, "untrack")
    with run_lock(project.dot):
        del doc["data"][i]
        _save_validated(project, doc, "untracked")
        lock = load_lock(project.lock_path)
        if lock.data.pop(rel, None) is not None:
            save_lock(project.lock_path, lock)
        unignore(project.root, [rel])
    return rel


def move_data(project: Project, src: str, dst: str) -> tuple[str, str]:
    """Move tracked data: the file or folder, its `data:` entry, its lock entry and its
    `.gitignore` line. Everything is checked before the move."""
    from repro.gitignore import ensure_ignored, git_tracked
    from repro.pipeline.runlock import run_lock
    from repro.pipeline.spec import load_spec
    from repro.safety import output_problem

    rel, doc, i = _tracked_entry(project, src, "move")
    new = project.rel(dst, "destination")
    if os.path.isdir(project.abs(new)) and not os.path.islink(project.abs(new)):
        new = f"{new}/{rel.rsplit('/', 1)[-1]}"  # `mv file dir/` as the shell does
    problem = output_problem(new)
    if problem:
        raise PathError(f"{dst}: {problem}; nothing was moved.")
    if os.path.lexists(project.abs(new)):
        raise PathError(f"{new}: exists already; nothing was moved.")
    if new in doc["data"] or load_spec(project).output_owner(new):
        raise PathError(f"{new}: is tracked or an output already; nothing was moved.")
    if git_tracked(project.root, [new]):
        raise PathError(f"{new}: is tracked by git; nothing was moved.")
    if not os.path.lexists(project.abs(rel)):
        raise PathError(f"{rel}: not in the workspace ('repro checkout' puts it back).")
    with run_lock(project.dot):
        doc["data"][i] = new
        _save_validated(project, doc, "moved")
        os.makedirs(os.path.dirname(project.abs(new)) or project.root, exist_ok=True)
        os.rename(project.abs(rel), project.abs(new))
        lock = load_lock(project.lock_path)
        if rel in lock.data:
            lock.data[new] = lock.data.pop(rel)
            save_lock(project.lock_path, lock)
        unignore(project.root, [rel])
        ensure_ignored(project.root, [new])
    return rel, new


# -- commit ---------------------------------------------------------------------------------------
@dataclass
class Committed:
    stage: str
    signature: str
    outs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def commit(project: Project, stage: str | None = None) -> list[Committed]:
    """Record the workspace's outputs as the result of `stage` (or of every stage, in DAG
    order) without running it: hash its inputs and outputs, store the outputs, write the run
    cache entry and the lock. For a change that cannot alter the result (a comment)."""
    from repro.gitignore import ensure_ignored
    from repro.model import PathHash
    from repro.pipeline import runcache
    from repro.pipeline.graph import build_graph
    from repro.pipeline.runlock import run_lock
    from repro.pipeline.signature import compute_inputs
    from repro.pipeline.spec import load_spec
    from repro.pipeline.status import image_digest, lock_entry
    from repro.records import new_run_id
    from repro.workspace import check_in

    spec = load_spec(project)
    graph = build_graph(spec, project.root)
    if stage is not None and stage not in spec.stages:
        raise NotFoundError(
            "stage", stage, where="repro.yaml", hint="'repro stage list' shows the stages"
        )
    names = [stage] if stage else list(graph.order)
    for name in names:
        for o in spec.stages[name].outs:
            if not os.path.lexists(project.abs(o.path)):
                raise PathError(
                    f"{o.path}: output of stage '{name}' is not in the workspace; nothing was "
                    "committed ('repro run' makes it)."
                )
    done: list[Committed] = []
    run_id = new_run_id()
    with run_lock(project.dot):
        lock = load_lock(project.lock_path)
        for name in names:
            st = spec.stages[name]
            inputs = compute_inputs(project, st, image_digest(lock, st))
            outs = {}
            for o in st.outs:
                r = project.hasher.hash_path(project.abs(o.path), files=True)
                if o.cache:
                    check_in(project, r, link=True)
                outs[o.path] = PathHash.of(r)
            runcache.put_entry(project.cache.backend, inputs.signature, name, outs, run_id)
            lock.stages[name] = lock_entry(inputs, st, outs)
            ensure_ignored(project.root, [o.path for o in st.outs if o.cache])
            done.append(Committed(name, inputs.signature, sorted(outs)))
        save_lock(project.lock_path, lock)
    return done


# -- .gitignore ---------------------------------------------------------------------------------
def unignore(root: str, paths: list[str]) -> bool:
    """Drop `/path` lines from repro's block of the project's `.gitignore` (lines the user
    wrote outside it are theirs and stay). Returns whether the file changed."""
    gi = os.path.join(root, ".gitignore")
    if os.path.islink(gi):
        return False  # never written through a link (repro.gitignore replaces such a file)
    try:
        with open(gi, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, IsADirectoryError):
        return False
    if HEADER not in lines or FOOTER not in lines[lines.index(HEADER) :]:
        return False
    start = lines.index(HEADER)
    end = lines.index(FOOTER, start)
    drop = {f"/{p}" for p in paths}
    block = [x for x in lines[start + 1 : end] if x not in drop]
    if len(block) == end - start - 1:
        return False
    lines[start + 1 : end] = block
    tmp = gi + ".repro-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, gi)
    return True
