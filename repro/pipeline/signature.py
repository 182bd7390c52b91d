"""Stage signatures: the hash of everything that can change a stage's result.

DESIGN.md fixes the contents: format version, command, working dir, each dependency's path and
hash, each param's key and value, declared env vars, the image digest, the seed, the declared
environment fingerprint, and the output paths. Paths are project-relative POSIX strings, so the
signature is the same in every clone directory and on every machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from repro.canonical import hash_record
from repro.enums import ReasonKind
from repro.model import PathHash
from repro.pipeline.params import stage_params
from repro.pipeline.probes import CACHED, Probes
from repro.pipeline.spec import Stage
from repro.project import Project

SIGNATURE_FORMAT = 1
CODE_EXTENSIONS = {
    ".py",
    ".pyx",
    ".ipynb",
    ".sh",
    ".bash",
    ".r",
    ".jl",
    ".js",
    ".ts",
    ".sql",
    ".scala",
    ".java",
    ".c",
    ".cc",
    ".cpp",
    ".h",
    ".hpp",
    ".rs",
    ".go",
    ".rb",
    ".pl",
    ".m",
    ".lua",
    ".mk",
    ".cfg",
    ".toml",
    ".ini",
}


def dep_kind(path: str) -> ReasonKind:
    """`code` for source files (by extension, or an executable name with no extension such as
    a Makefile), `data` for everything else."""
    base = path.rsplit("/", 1)[-1]
    ext = os.path.splitext(base)[1].lower()
    code = ext in CODE_EXTENSIONS or base in ("Makefile", "Dockerfile")
    return ReasonKind.CODE if code else ReasonKind.DATA


@dataclass
class StageInputs:
    """The resolved inputs of one stage, as they are now."""

    deps: dict[str, PathHash]
    params: dict[str, Any]
    env: dict[str, str | None]
    image: str | None
    seed: int
    environment: dict[str, Any] | None
    out_paths: list[str]
    cmd: str
    wdir: str
    signature: str = field(default="")

    def record(self) -> dict[str, Any]:
        return {
            "format": SIGNATURE_FORMAT,
            "cmd": self.cmd,
            "wdir": self.wdir,
            "deps": [[p, h.hash] for p, h in sorted(self.deps.items())],
            "params": dict(sorted(self.params.items())),
            "env": dict(sorted(self.env.items())),
            "image": self.image,
            "seed": self.seed,
            "environment": self.environment,
            "outs": sorted(self.out_paths),
        }


def compute_inputs(
    project: Project,
    stage: Stage,
    image_digest: str | None = None,
    probes: Probes = CACHED,
) -> StageInputs:
    """Hash the stage's dependencies (stat cache first), read its params, and sign it all."""
    hasher = project.hasher
    deps: dict[str, PathHash] = {}
    for rel in stage.deps:
        deps[rel] = PathHash.of(hasher.hash_path(project.abs(rel)))
    environment = None
    if stage.environment is not None:
        environment = stage_fingerprint(project, stage, image_digest, probes)
    inputs = StageInputs(
        deps=deps,
        params=stage_params(project, stage),
        env={name: os.environ.get(name) for name in stage.env},
        image=image_digest if stage.image else None,
        seed=stage.seed,
        environment=environment,
        out_paths=stage.out_paths,
        cmd=stage.cmd,
        wdir=stage.wdir,
    )
    inputs.signature = hash_record(inputs.record())
    return inputs


def stage_fingerprint(
    project: Project, stage: Stage, image_digest: str | None = None, probes: Probes = CACHED
) -> dict[str, Any]:
    """The declared environment of the interpreter the stage will run: probed inside its
    image, or the Python its command starts on the PATH the executor gives it (or the one
    `environment.python` names); lock files by what they resolve to on that platform. An image
    is probed only through `probes` (injected: the default answers from the cache alone)."""
    from repro.pipeline import envfp, lockfiles
    from repro.seeds import stage_env

    spec = stage.environment
    assert spec is not None
    cache_dir = os.path.join(project.tmp_dir, "envfp")
    probed: dict[str, Any] = {}
    if stage.image and image_digest:
        probed = envfp.image_environment(project.tmp_dir, image_digest, probes.probe_image)
    elif envfp.needs_probe(spec):
        env = {**os.environ, **stage_env(stage.seed), "REPRO_STAGE": stage.name}  # as the runner
        cwd = project.abs(stage.wdir) if stage.wdir != "." else project.root
        probed = envfp.stage_environment(
            spec,
            stage.cmd,
            root=project.root,
            cwd=cwd if os.path.isdir(cwd) else project.root,
            env=env,
            cache_dir=cache_dir,
            stage=stage.name,
        )
    locks = {}
    for rel in spec.lockfiles:
        path = project.abs(rel)
        content = project.hasher.hash_path(path).hash
        locks[rel] = lockfiles.lockfile_fingerprint(
            path, rel, content, probed.get("platform"), cache_dir
        )
    return envfp.fingerprint_from(probed, spec, locks)
