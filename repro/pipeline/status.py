"""Which stages are stale, and why: the planner's view, with no side effects.

A stage is up to date when its current inputs sign to the signature in `repro.lock` and its
outputs in the workspace still hash to what the lock recorded. Otherwise each difference becomes
a reason with a kind (DESIGN.md: code, data, params, env, image, seed, cmd, outs, upstream, new)
and a target (which file, param, variable, package or upstream stage).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from repro.enums import ReasonKind
from repro.errors import PathError
from repro.lockfile import Lock, load_lock
from repro.model import PathHash
from repro.pipeline.envfp import env_changes
from repro.pipeline.graph import Graph, build_graph
from repro.pipeline.probes import CACHED, Probes, is_pinned
from repro.pipeline.signature import StageInputs, compute_inputs, dep_kind
from repro.pipeline.spec import Stage, load_spec
from repro.project import Project


@dataclass
class Reason:
    kind: ReasonKind
    target: str
    old: Any = None
    new: Any = None
    count: int | None = None  # kind `missing`: files not in the local cache
    size: int | None = None  # kind `missing`: their bytes
    versions: bool = False  # kind `env` from the fingerprint: old and new go in the JSON

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if (self.kind == ReasonKind.IMAGE or self.versions) and self.old != self.new:
            d["old"], d["new"] = self.old, self.new  # both digests, or both versions
        if self.kind == ReasonKind.MISSING:
            d.update(count=self.count or 0, bytes=self.size or 0, fix="repro pull")
        return d


@dataclass
class StageStatus:
    name: str
    state: str  # "up-to-date" | "stale"
    reasons: list[Reason] = field(default_factory=list)
    inputs: StageInputs | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass
class DataStatus:
    """Tracked data (`repro add`): up to date when the workspace holds what repro.lock says."""

    path: str
    state: str  # "up-to-date" | "stale"
    reasons: list[Reason] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "state": self.state,
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass
class StatusReport:
    stages: list[StageStatus]
    data: list[DataStatus]

    @property
    def stale(self) -> bool:
        return any(r.state == "stale" for r in [*self.stages, *self.data])

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [r.to_dict() for r in self.stages],
            "data": [r.to_dict() for r in self.data],
        }


def _missing_reason(project: Project, rel: str, d: dict[str, Any]) -> Reason | None:
    """Kind `missing` when the local cache lacks content of recorded path `rel`."""
    from repro.workspace import absent

    lacking = absent(project, rel, d)
    if not lacking:
        return None
    return Reason(ReasonKind.MISSING, rel, count=lacking.count, size=lacking.bytes)


def data_status(project: Project, paths: list[str], lock: Lock) -> list[DataStatus]:
    """Each tracked path against repro.lock: edited (kind `data`, the path), absent from the
    workspace (kind `missing` when the local cache lacks it too: pull), or never recorded."""
    out = []
    for rel in paths:
        locked = lock.data.get(rel)
        p = project.abs(rel)
        reasons: list[Reason] = []
        if not locked:
            reasons.append(Reason(ReasonKind.NEW, rel))
        elif not os.path.lexists(p):
            missing = _missing_reason(project, rel, locked)
            reasons.append(missing or Reason(ReasonKind.DATA, rel, locked.get("hash"), None))
        else:
            now = project.hasher.hash_path(p).hash
            if now != locked.get("hash"):
                reasons.append(Reason(ReasonKind.DATA, rel, locked.get("hash"), now))
        out.append(DataStatus(rel, "stale" if reasons else "up-to-date", reasons))
    return out


def recorded_paths(lock: Lock) -> dict[str, dict[str, Any]]:
    """Every path repro.lock can put back from the cache: tracked data and cached outputs."""
    out = dict(lock.data)
    for entry in lock.stages.values():
        out.update({p: d for p, d in (entry.get("outs") or {}).items() if d.get("cache", True)})
    return out


def _recorded_hash(project: Project, rel: str, recorded: dict[str, dict[str, Any]]):
    """What repro.lock says `rel` holds: its own entry, or its entry in a recorded folder's
    tree when the tree is in the local cache. None when that cannot be known here."""
    from repro.errors import MissingObjectError
    from repro.model import PathHash

    if rel in recorded:
        return PathHash.from_dict(recorded[rel])
    for top, d in recorded.items():
        if d.get("isdir") and rel.startswith(top + "/"):
            inner = rel[len(top) + 1 :]
            try:
                entry = project.cache.get_tree(d["hash"]).as_dict().get(inner)
            except MissingObjectError:
                return None
            return PathHash(entry.hash, entry.size) if entry is not None else None
    return None


class _Overlay:
    """A view of the project in which absent paths that repro.lock records hash to what it
    recorded: a fresh clone (before `repro pull`) or a dry run is planned as if they were
    there, without fetching anything."""

    def __init__(self, project: Project, recorded: dict[str, Any]) -> None:
        self._project = project
        self._recorded = {os.path.normpath(project.abs(p)): h for p, h in recorded.items()}
        self.hasher = _OverlayHasher(project.hasher, self._recorded)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._project, name)


class _OverlayHasher:
    def __init__(self, hasher: Any, recorded: dict[str, Any]) -> None:
        self._hasher = hasher
        self._recorded = recorded

    def hash_path(self, path: str, *args: Any, **kwargs: Any) -> Any:
        h = self._recorded.get(os.path.normpath(path))
        if h is not None and not os.path.lexists(path):
            from repro.hashing.engine import HashResult

            return HashResult(path, h.hash, h.size, h.isdir, count=h.nfiles)
        return self._hasher.hash_path(path, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hasher, name)


def plan_inputs(
    project: Project, stage: Stage, lock: Lock, image: str | None, probes: Probes = CACHED
) -> tuple[StageInputs | None, list[Reason]]:
    """The stage's inputs, with dependencies absent from the workspace taken from what
    repro.lock recorded for them. Returns (inputs, reasons): kind `missing` for recorded
    dependencies the local cache lacks too; inputs None when a dependency is absent and
    recorded nowhere (the caller decides whether that is an error). Images are asked of
    `probes` (injected by the caller; the default starts nothing)."""
    recorded = recorded_paths(lock)
    stand_in: dict[str, Any] = {}
    reasons: list[Reason] = []
    for rel in stage.deps:
        if os.path.lexists(project.abs(rel)):
            continue
        h = _recorded_hash(project, rel, recorded)
        if h is None:
            return None, reasons
        stand_in[rel] = h
        if rel in recorded:
            missing = _missing_reason(project, rel, recorded[rel])
            if missing is not None:
                reasons.append(missing)
    view: Any = _Overlay(project, stand_in) if stand_in else project
    return compute_inputs(view, stage, image, probes), reasons


def as_upstream(spec: Any, graph: Graph, name: str, reasons: list[Reason]) -> list[Reason]:
    """A changed dependency that an upstream stage makes is reported as that stage (kind
    `upstream`, target the stage), by `status` and `run` alike: one cause, one name."""
    out: list[Reason] = []
    for r in reasons:
        owner = (
            spec.output_owner(r.target) if r.kind in (ReasonKind.CODE, ReasonKind.DATA) else None
        )
        if owner and owner != name and owner in graph.upstream[name]:
            r = Reason(ReasonKind.UPSTREAM, owner)
        if all((r.kind, r.target) != (o.kind, o.target) for o in out):
            out.append(r)
    return out


def relative_message(project: Project, text: str) -> str:
    """An error text with the project's absolute root taken out: messages name
    project-relative paths, the same on every clone."""
    return text.replace(project.root.rstrip("/") + "/", "").replace(project.root, ".")


def image_digest(lock: Lock, stage: Stage) -> str | None:
    """The digest the stage runs on: the locked one for a tag, or the pinned reference."""
    if not stage.image:
        return None
    return lock.images.get(stage.image, stage.image)


def image_drift(stage: Stage, lock: Lock, probes: Probes = CACHED) -> list[Reason]:
    """A locked tag that now points at another image: stale, kind `image`, both digests.
    What the tag points at is asked of `probes` (None: no one can tell, the locked digest
    stands)."""
    if not stage.image or is_pinned(stage.image) or stage.image not in lock.images:
        return []
    now = probes.resolve_image(stage.image)
    locked = lock.images[stage.image]
    if now is None or now == locked:
        return []
    return [Reason(ReasonKind.IMAGE, stage.image, locked, now)]


def input_reasons(stage: Stage, inputs: StageInputs, entry: dict[str, Any] | None) -> list[Reason]:
    """Differences between current inputs and the lock entry of the last successful run."""
    if not entry:
        return [Reason(ReasonKind.NEW, stage.name)]
    if entry.get("signature") == inputs.signature:
        return []
    reasons: list[Reason] = []
    if entry.get("cmd") != inputs.cmd or entry.get("wdir", ".") != inputs.wdir:
        reasons.append(Reason(ReasonKind.CMD, stage.name, entry.get("cmd"), inputs.cmd))
    old_deps = entry.get("deps") or {}
    for path, h in inputs.deps.items():
        old = old_deps.get(path)
        if old is None or old.get("hash") != h.hash:
            reasons.append(Reason(dep_kind(path), path, old and old.get("hash"), h.hash))
    for path in old_deps:
        if path not in inputs.deps:
            reasons.append(Reason(dep_kind(path), path, old_deps[path].get("hash"), None))
    old_params = entry.get("params") or {}
    for key in sorted(set(old_params) | set(inputs.params)):
        if old_params.get(key, _NONE) != inputs.params.get(key, _NONE):
            reasons.append(
                Reason(ReasonKind.PARAMS, key, old_params.get(key), inputs.params.get(key))
            )
    old_env = entry.get("env") or {}
    for key in sorted(set(old_env) | set(inputs.env)):
        if old_env.get(key) != inputs.env.get(key):
            reasons.append(Reason(ReasonKind.ENV, key, old_env.get(key), inputs.env.get(key)))
    old_fp, new_fp = entry.get("environment") or {}, inputs.environment or {}
    locks = set(old_fp.get("lockfiles") or {}) | set(new_fp.get("lockfiles") or {})
    for target, old, new in env_changes(old_fp, new_fp):  # versions, not lock-file hashes
        reasons.append(Reason(ReasonKind.ENV, target, old, new, versions=target not in locks))
    if entry.get("image") != inputs.image:
        reasons.append(
            Reason(ReasonKind.IMAGE, stage.image or "", entry.get("image"), inputs.image)
        )
    if entry.get("seed") != inputs.seed:
        reasons.append(Reason(ReasonKind.SEED, stage.name, entry.get("seed"), inputs.seed))
    if sorted((entry.get("outs") or {}).keys()) != sorted(inputs.out_paths):
        reasons.append(Reason(ReasonKind.OUTS, ", ".join(sorted(inputs.out_paths))))
    if not reasons:  # e.g. a signature format change
        reasons.append(Reason(ReasonKind.CMD, stage.name))
    return reasons


_NONE = object()


def output_reasons(project: Project, entry: dict[str, Any] | None) -> list[Reason]:
    """Outputs missing from the workspace (kind `missing` when the local cache lacks them
    too) or changed since the lock recorded them."""
    out = []
    for path, d in sorted(((entry or {}).get("outs") or {}).items()):
        abspath = project.abs(path)
        if not os.path.lexists(abspath):
            missing = _missing_reason(project, path, d) if d.get("cache", True) else None
            out.append(missing or Reason(ReasonKind.OUTS, path, d.get("hash"), None))
            continue
        try:
            now = project.hasher.hash_path(abspath).hash
        except PathError:
            now = None
        if now != d.get("hash"):
            out.append(Reason(ReasonKind.OUTS, path, d.get("hash"), now))
    return out


def lock_entry(inputs: StageInputs, stage: Stage, outs: dict[str, PathHash]) -> dict[str, Any]:
    cache_flags = {o.path: o for o in stage.outs}
    return {
        "signature": inputs.signature,
        "cmd": inputs.cmd,
        "wdir": inputs.wdir,
        "deps": {p: h.to_dict() for p, h in sorted(inputs.deps.items())},
        "params": dict(sorted(inputs.params.items())),
        "env": inputs.env,
        "image": inputs.image,
        "seed": inputs.seed,
        "environment": inputs.environment,
        "outs": {
            p: {
                **h.to_dict(),
                **({} if cache_flags[p].cache else {"cache": False}),
                **({"metric": True} if cache_flags[p].metric else {}),
            }
            for p, h in sorted(outs.items())
        },
    }


def select(graph: Graph, targets: list[str] | None, downstream: bool = False) -> list[str]:
    """Stage names to consider, in order: the targets and what they need (or what follows)."""
    if not targets:
        return list(graph.order)
    from repro.errors import NotFoundError

    for t in targets:
        if t not in graph.stages:
            raise NotFoundError("stage", t, where="repro.yaml")
    chosen = graph.descendants(targets) if downstream else graph.ancestors(targets)
    return [n for n in graph.order if n in chosen]


def status(
    project: Project, targets: list[str] | None = None, probes: Probes = CACHED
) -> list[StageStatus]:
    return report(project, targets, probes).stages


def report(
    project: Project, targets: list[str] | None = None, probes: Probes = CACHED
) -> StatusReport:
    """Stages and tracked data: what is stale, and why (`repro status`). Images are asked of
    `probes` only: the command passes ones that ask the Docker engine; the default answers
    from the cache and otherwise leaves a moved tag unseen."""
    with project.hasher.session():
        return _status(project, targets, probes)


def overlaps(a: str, b: str) -> bool:
    """Whether project paths `a` and `b` are one path or one holds the other."""
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def data_paths(spec: Any, names: list[str], targets: list[str] | None) -> list[str]:
    """Tracked data to report: all of it, or what the selected stages read."""
    if not targets:
        return list(spec.data)
    deps = [d for n in names for d in spec.stages[n].deps]
    return [p for p in spec.data if any(overlaps(p, d) for d in deps)]


def _status(project: Project, targets: list[str] | None, probes: Probes) -> StatusReport:
    spec = load_spec(project)
    graph = build_graph(spec, project.root)
    lock = load_lock(project.lock_path)
    results: dict[str, StageStatus] = {}
    names = select(graph, targets)
    for name in names:
        stage = spec.stages[name]
        entry = lock.stages.get(name)
        if stage.frozen and entry is not None:
            # Frozen keeps the recorded result; a stage that never ran has none to keep, so it
            # is `new` below and `repro run` runs it once.
            results[name] = StageStatus(name, "up-to-date")
            continue
        # An upstream stage that lacks only local content is not going to change: pulling it
        # is the fix, and this stage is judged by what the lock recorded for it.
        stale_ups = sorted(
            u
            for u in graph.upstream[name]
            if results[u].state == "stale"
            and any(r.kind != ReasonKind.MISSING for r in results[u].reasons)
        )
        reasons = [Reason(ReasonKind.UPSTREAM, u) for u in stale_ups]
        inputs = None
        try:
            image = image_digest(lock, stage)
            inputs, missing = plan_inputs(project, stage, lock, image, probes)
            reasons += missing
            if inputs is None:
                inputs = compute_inputs(project, stage, image, probes)  # raises
            reasons = as_upstream(spec, graph, name, reasons + input_reasons(stage, inputs, entry))
            reasons += image_drift(stage, lock, probes)
        except PathError as exc:
            if not stale_ups:
                raise PathError(relative_message(project, exc.message)) from None
            reasons.append(Reason(ReasonKind.DATA, relative_message(project, str(exc))))
        if stage.always_changed:
            reasons.append(Reason(ReasonKind.CMD, "always_changed"))
        if entry and not any(r.kind == ReasonKind.NEW for r in reasons):
            reasons += output_reasons(project, entry)
        results[name] = StageStatus(name, "stale" if reasons else "up-to-date", reasons, inputs)
    data = data_status(project, data_paths(spec, names, targets), lock)
    return StatusReport(list(results.values()), data)
