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

from repro.errors import PathError
from repro.lockfile import Lock, load_lock
from repro.pipeline.envfp import env_changes
from repro.pipeline.graph import Graph, build_graph
from repro.pipeline.signature import StageInputs, compute_inputs, dep_kind
from repro.pipeline.spec import Stage, load_spec
from repro.project import Project
from repro.workspace import PathHash


@dataclass
class Reason:
    kind: str
    target: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if self.kind == "image" and self.old != self.new:
            d["old"], d["new"] = self.old, self.new  # both digests
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


def image_digest(lock: Lock, stage: Stage) -> str | None:
    """The digest the stage runs on: the locked one for a tag, or the pinned reference."""
    if not stage.image:
        return None
    return lock.images.get(stage.image, stage.image)


def image_drift(stage: Stage, lock: Lock) -> list[Reason]:
    """A locked tag that now points at another image: stale, kind `image`, both digests."""
    from repro.execution.images import is_pinned

    if not stage.image or is_pinned(stage.image) or stage.image not in lock.images:
        return []
    from repro.errors import ReproError
    from repro.execution.images import resolve

    try:
        now = resolve(stage.image)
    except ReproError:
        return []  # no engine to ask: the locked digest stands
    locked = lock.images[stage.image]
    if now == locked:
        return []
    return [Reason("image", stage.image, locked, now)]


def input_reasons(stage: Stage, inputs: StageInputs, entry: dict[str, Any] | None) -> list[Reason]:
    """Differences between current inputs and the lock entry of the last successful run."""
    if not entry:
        return [Reason("new", stage.name)]
    if entry.get("signature") == inputs.signature:
        return []
    reasons: list[Reason] = []
    if entry.get("cmd") != inputs.cmd or entry.get("wdir", ".") != inputs.wdir:
        reasons.append(Reason("cmd", stage.name, entry.get("cmd"), inputs.cmd))
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
            reasons.append(Reason("params", key, old_params.get(key), inputs.params.get(key)))
    old_env = entry.get("env") or {}
    for key in sorted(set(old_env) | set(inputs.env)):
        if old_env.get(key) != inputs.env.get(key):
            reasons.append(Reason("env", key, old_env.get(key), inputs.env.get(key)))
    for target, old, new in env_changes(entry.get("environment"), inputs.environment):
        reasons.append(Reason("env", target, old, new))
    if entry.get("image") != inputs.image:
        reasons.append(Reason("image", stage.image or "", entry.get("image"), inputs.image))
    if entry.get("seed") != inputs.seed:
        reasons.append(Reason("seed", stage.name, entry.get("seed"), inputs.seed))
    if sorted((entry.get("outs") or {}).keys()) != sorted(inputs.out_paths):
        reasons.append(Reason("outs", ", ".join(sorted(inputs.out_paths))))
    if not reasons:  # e.g. a signature format change
        reasons.append(Reason("cmd", stage.name))
    return reasons


_NONE = object()


def output_reasons(project: Project, entry: dict[str, Any] | None) -> list[Reason]:
    """Outputs missing from the workspace or changed since the lock recorded them."""
    out = []
    for path, d in sorted(((entry or {}).get("outs") or {}).items()):
        abspath = project.abs(path)
        if not os.path.lexists(abspath):
            out.append(Reason("outs", path, d.get("hash"), None))
            continue
        try:
            now = project.hasher.hash_path(abspath).hash
        except PathError:
            now = None
        if now != d.get("hash"):
            out.append(Reason("outs", path, d.get("hash"), now))
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
            raise NotFoundError(f"repro.yaml: no stage named '{t}'.")
    chosen = graph.descendants(targets) if downstream else graph.ancestors(targets)
    return [n for n in graph.order if n in chosen]


def status(project: Project, targets: list[str] | None = None) -> list[StageStatus]:
    with project.hasher.session():
        return _status(project, targets)


def _status(project: Project, targets: list[str] | None) -> list[StageStatus]:
    spec = load_spec(project)
    graph = build_graph(spec, project.root)
    lock = load_lock(project.lock_path)
    results: dict[str, StageStatus] = {}
    for name in select(graph, targets):
        stage = spec.stages[name]
        entry = lock.stages.get(name)
        if stage.frozen:
            results[name] = StageStatus(name, "up-to-date")
            continue
        stale_ups = sorted(u for u in graph.upstream[name] if results[u].state == "stale")
        reasons = [Reason("upstream", u) for u in stale_ups]
        inputs = None
        try:
            inputs = compute_inputs(project, stage, image_digest(lock, stage))
            reasons += input_reasons(stage, inputs, entry)
            reasons += image_drift(stage, lock)
        except PathError as exc:
            if not stale_ups:
                raise
            reasons.append(Reason("data", str(exc)))
        if stage.always_changed:
            reasons.append(Reason("cmd", "always_changed"))
        if entry and not any(r.kind == "new" for r in reasons):
            reasons += output_reasons(project, entry)
        results[name] = StageStatus(name, "stale" if reasons else "up-to-date", reasons, inputs)
    return list(results.values())
