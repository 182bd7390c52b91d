"""Container images: resolve a reference to an immutable digest through the docker SDK.

A pinned reference (`name@sha256:…`) is its own digest. A tag resolves to the registry digest the
engine knows for it (`RepoDigests`), or, for an image that was never pushed, to its image id —
itself a content digest (sha256 of the image config). `repro lock` writes the results to
`repro.lock`; runs use the locked digest, never the moving tag.
"""

from __future__ import annotations

import os
from typing import Any

from repro.errors import MissingExtraError, ReproError, first_line
from repro.pipeline.probes import Probes, is_pinned


class ImageError(ReproError):
    """An image that cannot be resolved or run, or no engine to ask."""


def client() -> Any:
    try:
        import docker
    except ImportError:
        raise MissingExtraError("running stages in containers", "docker") from None
    try:
        c = docker.DockerClient(
            base_url=os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
            version="auto",
            timeout=60,
        )
        c.ping()
        return c
    except Exception as exc:
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise ImageError(
            f"no Docker engine answers at {host} ({first_line(exc)}); start one or set DOCKER_HOST."
        ) from None


def resolve(ref: str, docker_client: Any | None = None, stage: str | None = None) -> str:
    """The digest `ref` stands for now."""
    if is_pinned(ref):
        return ref
    c = docker_client or client()
    import docker.errors

    try:
        image = c.images.get(ref)
    except docker.errors.ImageNotFound:
        try:
            return c.images.get_registry_data(ref).id
        except Exception as exc:
            who = f"stage '{stage}': " if stage else ""
            raise ImageError(
                f"{who}image '{ref}' is not present and cannot be resolved from a "
                f"registry ({first_line(exc)})."
            ) from None
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    for rd in image.attrs.get("RepoDigests") or []:
        if rd.split("@", 1)[0] == repo:
            return rd
    return image.id  # local, never pushed: lock by image id


def lock_images(project: Any, update: bool = False) -> dict[str, tuple[str | None, str]]:
    """Resolve every stage's image reference; returns ref -> (old digest, new digest).
    Writes `repro.lock`, so it holds the project lock like every other writer."""
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot):
        return _lock_images(project, update)


def _lock_images(project: Any, update: bool) -> dict[str, tuple[str | None, str]]:
    from repro.lockfile import load_lock, save_lock
    from repro.pipeline.spec import load_spec

    spec = load_spec(project)
    lock = load_lock(project.lock_path)
    refs = sorted({st.image for st in spec.stages.values() if st.image})
    changes: dict[str, tuple[str | None, str]] = {}
    c = None
    for ref in refs:
        old = lock.images.get(ref)
        if old and not update:
            changes[ref] = (old, old)
            continue
        if c is None and not is_pinned(ref):
            c = client()
        new = resolve(ref, c)
        changes[ref] = (old, new)
        lock.images[ref] = new
    for ref in list(lock.images):
        if ref not in refs:
            del lock.images[ref]
    save_lock(project.lock_path, lock)
    return changes


_IMAGE_PROBE = (
    "import json, sys, platform\n"
    "from importlib import metadata\n"
    "pk = {}\n"
    "for d in metadata.distributions():\n"
    "    n = d.metadata['Name']\n"
    "    if n: pk.setdefault(n.lower().replace('_', '-').replace('.', '-'), d.version)\n"
    "print(json.dumps({'python': platform.python_version(),"
    " 'platform': sys.platform + '-' + platform.machine(), 'packages': pk}))\n"
)


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def probe_image(digest: str) -> dict[str, Any]:
    """The environment inside an image (Python, platform, distributions), read by a
    short-lived container with no network; the planner caches it per digest."""
    import json

    script = (
        f"if command -v python3 >/dev/null 2>&1; then python3 -c {_sh_quote(_IMAGE_PROBE)}; "
        'else echo \'{"python": null, "platform": null, "packages": {}}\'; fi'
    )
    out = client().containers.run(
        digest, ["sh", "-c", script], remove=True, network_mode="none", stdout=True, stderr=False
    )
    return json.loads(out.decode().strip().splitlines()[-1])


def _resolve_or_unknown(ref: str) -> str | None:
    try:
        return resolve(ref)
    except ReproError:
        return None  # no engine to ask: the locked digest stands


def docker_probes() -> Probes:
    """The probes the commands hand the planner: ask the Docker engine (lazily: nothing is
    contacted until a stage with an image needs it)."""
    return Probes(resolve_image=_resolve_or_unknown, probe_image=probe_image)
