"""`repro stage add`: write a stage into `repro.yaml`, keeping the user's comments and order.

The new file is validated (spec and graph) before it replaces the old one: a bad stage changes
nothing on disk.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from repro.errors import SpecError
from repro.pipeline.specio import load_rt, save_rt
from repro.project import Project

if TYPE_CHECKING:
    from repro.pipeline.spec import Stage


def stage_add(
    project: Project,
    name: str,
    cmd: str,
    deps: list[str],
    outs: list[str],
    params: list[str],
    metrics: list[str],
    image: str | None = None,
    seed: int | None = None,
    wdir: str | None = None,
    env: list[str] | None = None,
    force: bool = False,
    more: StageFlags | None = None,
) -> None:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from repro.pipeline.spec import seed_problem

    if seed is not None and seed_problem(seed):
        raise SpecError(f"--seed: {seed_problem(seed)}; nothing was added.")
    doc = load_rt(project.spec_path)
    stages = doc.get("stages")
    if stages is not None and not isinstance(stages, dict):
        raise SpecError(
            "repro.yaml: key 'stages' must be a mapping of stage names to stages; fix it "
            "before adding a stage."
        )
    if stages is None:
        stages = CommentedMap()
        doc["stages"] = stages
    if name in stages and not force:
        raise SpecError(f"repro.yaml: stage '{name}' exists already (use --force to replace it).")
    more = more or StageFlags()
    body = CommentedMap()
    if more.desc:
        body["desc"] = more.desc
    body["cmd"] = cmd
    if wdir:
        body["wdir"] = wdir

    def seq(items: list[str]) -> CommentedSeq:
        s = CommentedSeq(items)
        return s

    for key, items in (
        ("deps", deps),
        ("params", split_params(params)),
        ("outs", outs),
        ("metrics", metrics),
        ("env", env or []),
    ):
        if items:
            body[key] = seq(list(items))
    _add_flagged_outs(body, more)
    if more.always_changed:
        body["always_changed"] = True
    if image:
        body["image"] = image
    if seed is not None:
        body["seed"] = seed
    stages[name] = body
    # Validate the would-be file before writing it.
    from repro.pipeline.graph import build_graph
    from repro.pipeline.spec import check_workspace, parse_spec

    os.makedirs(project.tmp_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="repro-", suffix=".yaml", dir=project.tmp_dir)
    os.close(fd)
    try:
        save_rt(tmp, doc)
        try:
            spec = parse_spec(tmp, project.root)
        except SpecError as exc:  # name the file the user knows, not the would-be copy
            label = os.path.relpath(tmp, project.root).replace(os.sep, "/")
            msg = exc.message.replace(label, "repro.yaml")
            raise SpecError(msg + "; nothing was added.") from None
        spec.path = "repro.yaml"
        build_graph(spec, project.root)
        check_workspace(spec, project.root)
        _check_params(project, spec.stages[name])
        os.replace(tmp, project.spec_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class StageFlags:
    """The `stage add` flags DVC users reach for: a description, `always_changed`, outputs
    kept out of the cache (`-O`), outputs kept across runs (`--outs-persist`), plots."""

    desc: str | None = None
    always_changed: bool = False
    outs_no_cache: list[str] = field(default_factory=list)
    outs_persist: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)


def _add_flagged_outs(body: Any, more: StageFlags) -> None:
    """`-O p` -> `outs: [{p: {cache: false}}]`, `--outs-persist p` -> `{p: {persist: true}}`,
    `--plots p` -> `plots: [p]`, in repro.yaml's own (DVC's) forms."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    flagged = [(p, {"cache": False}) for p in more.outs_no_cache]
    flagged += [(p, {"persist": True}) for p in more.outs_persist]
    if flagged:
        outs = body.get("outs") or CommentedSeq()
        for p, flags in flagged:
            entry = CommentedMap()
            entry[p] = CommentedMap(flags)
            outs.append(entry)
        body["outs"] = outs
    if more.plots:
        body["plots"] = CommentedSeq(list(more.plots))


def split_params(items: list[str]) -> list[str]:
    """DVC's `-p` syntax: `-p a,b` names two keys of the default params file, `-p file:a,b`
    two keys of `file`. Each becomes its own entry (`a`, `file:a`)."""
    out: list[str] = []
    for item in items:
        file, sep, keys = item.rpartition(":") if ":" in item else ("", "", item)
        for key in keys.split(","):
            key = key.strip()
            entry = f"{file}{sep}{key}" if sep else key
            if key and entry not in out:
                out.append(entry)
            elif not key:
                raise SpecError(f"-p {item!r}: an empty param key; nothing was added.")
    return out


def _check_params(project: Project, stage: Stage) -> None:
    """Refuse a param key its file does not hold (as an unknown dependency is refused): every
    later status and run would fail on it."""
    from repro.pipeline.params import stage_params

    try:
        stage_params(project, stage)
    except SpecError as exc:
        raise SpecError(exc.message.rstrip(".") + "; nothing was added.") from None
