"""Environment fingerprints: the software a stage runs on, as part of its signature.

A stage declares what counts (`environment:` in repro.yaml): the Python version, the platform,
the versions of named distributions or of all installed ones, and lock files (whose hashes count
like dependencies). A library upgrade then makes the stage stale, kind `env`.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

from repro.pipeline.spec import EnvironmentSpec


@lru_cache(maxsize=1)
def installed_distributions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[_norm(name)] = dist.version
    return dict(sorted(out.items()))


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def python_version() -> str:
    v = sys.version_info  # (the platform module costs 2 ms of start-up)
    return f"{v.major}.{v.minor}.{v.micro}"


def platform_tag() -> str:
    import os

    return f"{sys.platform}-{os.uname().machine}"


def fingerprint(spec: EnvironmentSpec, lockfile_hashes: dict[str, str]) -> dict[str, Any]:
    """What the stage's signature records of its environment."""
    fp: dict[str, Any] = {}
    if spec.python:
        fp["python"] = python_version()
    if spec.platform:
        fp["platform"] = platform_tag()
    if spec.all_packages:
        fp["packages"] = installed_distributions()
    elif spec.packages:
        dists = installed_distributions()
        fp["packages"] = {p: dists.get(_norm(p)) for p in spec.packages}
    if spec.lockfiles:
        fp["lockfiles"] = dict(sorted(lockfile_hashes.items()))
    return fp


def current_environment() -> dict[str, Any]:
    """`repro env`: the fingerprint of this interpreter, everything included."""
    return {
        "python": python_version(),
        "platform": platform_tag(),
        "executable": sys.executable,
        "packages": installed_distributions(),
    }


def env_changes(
    old: dict[str, Any] | None, new: dict[str, Any] | None
) -> list[tuple[str, Any, Any]]:
    """(target, old, new) for each difference: `python`, `platform`, a package name, a lock file."""
    old, new = old or {}, new or {}
    out = []
    for key in ("python", "platform"):
        if old.get(key) != new.get(key):
            out.append((key, old.get(key), new.get(key)))
    for key in ("packages", "lockfiles"):
        a, b = old.get(key) or {}, new.get(key) or {}
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                out.append((name, a.get(name), b.get(name)))
    return out


_PROBE = (
    "import json, sys, platform\n"
    "from importlib import metadata\n"
    "pk = {}\n"
    "for d in metadata.distributions():\n"
    "    n = d.metadata['Name']\n"
    "    if n: pk[n.lower().replace('_', '-').replace('.', '-')] = d.version\n"
    "print(json.dumps({'python': platform.python_version(),"
    " 'platform': sys.platform + '-' + platform.machine(), 'packages': pk}))\n"
)


def image_environment(tmp_dir: str, digest: str) -> dict[str, Any]:
    """The environment inside an image (Python, platform, distributions), probed once per
    digest with a short-lived container and remembered in `.repro/tmp/envfp/`."""
    import json
    import os

    path = os.path.join(tmp_dir, "envfp", digest.replace("/", "_").replace(":", "_") + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    from repro.execution.images import client

    script = (
        f"if command -v python3 >/dev/null 2>&1; then python3 -c {_sh_quote(_PROBE)}; "
        'else echo \'{"python": null, "platform": null, "packages": {}}\'; fi'
    )
    out = client().containers.run(
        digest, ["sh", "-c", script], remove=True, network_mode="none", stdout=True, stderr=False
    )
    env = json.loads(out.decode().strip().splitlines()[-1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(env, f, sort_keys=True)
    return env


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def fingerprint_from(
    env: dict[str, Any], spec: EnvironmentSpec, lockfile_hashes: dict[str, str]
) -> dict[str, Any]:
    """`fingerprint` over a probed environment (an image's) instead of this interpreter."""
    fp: dict[str, Any] = {}
    if spec.python:
        fp["python"] = env.get("python")
    if spec.platform:
        fp["platform"] = env.get("platform")
    dists = env.get("packages") or {}
    if spec.all_packages:
        fp["packages"] = dict(sorted(dists.items()))
    elif spec.packages:
        fp["packages"] = {p: dists.get(_norm(p)) for p in spec.packages}
    if spec.lockfiles:
        fp["lockfiles"] = dict(sorted(lockfile_hashes.items()))
    return fp
