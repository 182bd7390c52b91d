"""Environment fingerprints: the software a stage runs on, as part of its signature.

A stage declares what counts (`environment:` in repro.yaml): the Python version, the platform,
the versions of named distributions or of all installed ones, and lock files. A library upgrade
then makes the stage stale, kind `env`.

What is fingerprinted is the interpreter the stage will run, not repro's own: repro usually
lives in a virtualenv of its own while the stage runs the project's `python`. That interpreter
is resolved (an explicit `environment: {python: PATH}`, else the command's interpreter on the
stage's PATH) and probed in a subprocess; the probe is remembered in `.repro/tmp/envfp/` under
the stat of the interpreter and of every folder on its `sys.path`, so an unchanged environment
costs a few stats and an install or upgrade (which touches those folders) is seen.

Lock files count by the set of (name, version, artifact hashes) they resolve to for this
platform, so a re-lock that changes nothing real (comments, order, a timestamp) changes nothing
(their parsers live in `repro.pipeline.lockfiles`). An image is probed only by the probe its
caller injects (`repro.pipeline.probes`); this module never starts a container.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from repro.errors import ReproError, first_line
from repro.pipeline.spec import EnvironmentSpec

PROBE_VERSION = 1
PROBE_TIMEOUT = 60


class EnvProbeError(ReproError):
    """The stage's interpreter is missing or cannot report its environment."""


@lru_cache(maxsize=1)
def installed_distributions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(_norm(name), dist.version)  # the first on sys.path is what imports
    return dict(sorted(out.items()))


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def python_version() -> str:
    v = sys.version_info  # (the platform module costs 2 ms of start-up)
    return f"{v.major}.{v.minor}.{v.micro}"


def platform_tag() -> str:
    return f"{sys.platform}-{os.uname().machine}"


def fingerprint(spec: EnvironmentSpec, lockfile_hashes: dict[str, str]) -> dict[str, Any]:
    """What the stage's signature records of repro's own interpreter (the Python API's
    fallback when a stage has no interpreter of its own to probe)."""
    return fingerprint_from(current_environment(), spec, lockfile_hashes)


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


def needs_probe(spec: EnvironmentSpec) -> bool:
    return bool(spec.python or spec.platform or spec.packages or spec.all_packages)


# -- the stage's interpreter -------------------------------------------------------------------

_PY_RE = re.compile(r"python(\d+(\.\d+)?)?$")
_ASSIGN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS = {"exec", "env", "time", "nice", "nohup", "command"}


def command_interpreter(cmd: str) -> str | None:
    """The Python word a command starts with (`python`, `python3.11`, `.venv/bin/python`), or
    None when it starts with something else. Leading `VAR=value` words and wrappers such as
    `exec` and `env` are passed over, as the shell would."""
    import shlex

    try:
        words = shlex.split(cmd, comments=True)
    except ValueError:
        return None
    for w in words:
        if _ASSIGN_RE.match(w) or w in _WRAPPERS or w.startswith("-"):
            continue
        return w if _PY_RE.match(w.rsplit("/", 1)[-1]) else None
    return None


def _which(word: str, env: dict[str, str], cwd: str) -> str | None:
    """`word` as `sh` in `cwd` with `env` would find it: a path is taken relative to `cwd`,
    a bare name is looked up on the stage's PATH (relative PATH entries from `cwd`)."""
    import shutil

    if "/" in word:
        p = os.path.normpath(os.path.join(cwd, word))
        return p if os.path.isfile(p) and os.access(p, os.X_OK) else None
    dirs = [os.path.join(cwd, d) for d in env.get("PATH", os.defpath).split(os.pathsep) if d]
    found = shutil.which(word, path=os.pathsep.join(dirs))
    return os.path.normpath(os.path.abspath(found)) if found else None


def stage_interpreter(
    spec: EnvironmentSpec, cmd: str, root: str, cwd: str, env: dict[str, str], stage: str
) -> str | None:
    """The absolute path of the Python the stage will run, or None when it runs none."""
    if spec.interpreter:
        p = os.path.normpath(os.path.join(root, spec.interpreter))
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            raise EnvProbeError(
                f"stage '{stage}': environment.python '{spec.interpreter}' is not an executable "
                "file; create that environment or correct the path in repro.yaml."
            )
        return p
    word = command_interpreter(cmd)
    if word:
        found = _which(word, env, cwd)
        if found:
            return found
    for name in ("python3", "python"):
        found = _which(name, env, cwd)
        if found:
            return found
    return None


# -- probing it --------------------------------------------------------------------------------

_PROBE = r"""
import json, os, sys, platform
cwd = os.getcwd()
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != cwd]
from importlib import metadata
pk = {}
for d in metadata.distributions():
    try:
        n = d.metadata['Name']
    except Exception:
        n = None
    if n:
        pk.setdefault(n.lower().replace('_', '-').replace('.', '-'), d.version)
paths = [os.path.abspath(p) for p in sys.path]
try:
    import site
    if site.ENABLE_USER_SITE:
        paths.append(os.path.abspath(site.getusersitepackages()))
except Exception:
    pass
print(json.dumps({'python': platform.python_version(),
                  'platform': sys.platform + '-' + platform.machine(),
                  'packages': pk, 'paths': sorted(set(paths))}))
"""

_ENV_KEYS = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONUSERBASE", "PYENV_VERSION")
_MEMO: dict[tuple, dict[str, Any]] = {}


def probe_interpreter(
    interp: str, env: dict[str, str], cwd: str, cache_dir: str, stage: str
) -> dict[str, Any]:
    """Python version, platform and distributions of `interp` as the stage's process sees
    them. Remembered (in this process and in `cache_dir`) under a stamp of stats that any
    install, upgrade or removal changes; a subprocess runs only when the stamp moved."""
    from repro.canonical import hash_record

    key = (interp, *(env.get(k) for k in _ENV_KEYS))
    path = os.path.join(cache_dir, f"py-{hash_record(['probe', PROBE_VERSION, *key])}.json")
    cached = _MEMO.get(key) or _read_json(path)
    if not (cached and isinstance(cached.get("stamp"), list) and valid_env(cached["env"], True)):
        cached = None  # `.repro/tmp` may be shared or tampered with: a bad entry is re-probed
    if cached and cached["stamp"] == _stamp(interp, cached["env"].get("paths", [])):
        _MEMO[key] = cached
        return cached["env"]
    probed = _run_probe(interp, env, cwd, stage)
    entry = {"stamp": _stamp(interp, probed["paths"]), "env": probed}
    _MEMO[key] = entry
    _write_json(path, entry)
    return probed


def probe_timeout() -> float:
    """Seconds a probe may take (a cold conda interpreter can be slow to list its packages);
    `REPRO_ENV_PROBE_TIMEOUT` overrides the default."""
    try:
        return max(0.1, float(os.environ.get("REPRO_ENV_PROBE_TIMEOUT", PROBE_TIMEOUT)))
    except ValueError:
        return PROBE_TIMEOUT


def _run_probe(interp: str, env: dict[str, str], cwd: str, stage: str) -> dict[str, Any]:
    import json
    import signal
    import subprocess
    import tempfile

    why = ""
    timeout = probe_timeout()
    try:
        # Output goes to files, not pipes, and the probe gets a process group of its own: an
        # interpreter that leaves a child holding its output (a wrapper script's `sleep &`)
        # cannot keep repro waiting past the timeout, nor fill memory with its answer.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [interp, "-c", _PROBE],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # its leftovers too
                except OSError:
                    pass
                proc.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(16 << 20), err.read(64 << 10)
        if code is None:
            why = f"no answer in {timeout:g} s"
        elif code == 0:
            lines = stdout.decode(errors="replace").strip().splitlines()
            doc = json.loads(lines[-1]) if lines else None
            if isinstance(doc, dict):
                doc.setdefault("paths", [])
            if valid_env(doc, paths=True):
                return doc
            why = "its answer is not an environment"
        else:
            why = first_line(stderr.decode(errors="replace")) if stderr.strip() else f"exit {code}"
    except (OSError, ValueError, RecursionError) as exc:
        why = first_line(exc)
    raise EnvProbeError(
        f"stage '{stage}': cannot read the environment of its interpreter {interp} ({why})."
    )


def _stamp(interp: str, paths: list[str]) -> list[Any]:
    """Stats that change when the interpreter or anything installed for it changes: the
    interpreter (as named and resolved), its pyvenv.cfg, each `sys.path` folder (an install
    or removal adds or drops an entry) and the `*.dist-info` entries in it."""
    out: list[Any] = [interp, os.path.realpath(interp)]
    for p in (interp, out[1], os.path.join(os.path.dirname(os.path.dirname(interp)), "pyvenv.cfg")):
        out.append(_stat(p))
    for d in paths:
        out.append([d, _stat(d), _dist_listing(d)])
    return out


def _stat(p: str) -> list[int] | None:
    try:
        s = os.stat(p)
    except OSError:
        return None
    return [s.st_mtime_ns, s.st_ino, s.st_size]


def _dist_listing(folder: str) -> str | None:
    from repro.canonical import hash_record

    try:
        with os.scandir(folder) as it:
            rows = sorted(
                [e.name, e.stat().st_mtime_ns]
                for e in it
                if e.name.endswith((".dist-info", ".egg-info"))
            )
    except OSError:
        return None
    return hash_record(rows) if rows else None


def _read_json(path: str) -> dict[str, Any] | None:
    import json

    from repro.readfile import MAX_BYTES, read_bytes

    try:  # never blocks: a FIFO planted here must not hang `status`
        doc = json.loads(read_bytes(path, path, MAX_BYTES["json"]))
    except (OSError, ValueError, RecursionError, ReproError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("env"), dict) else None


def valid_env(env: Any, paths: bool = False) -> bool:
    """Whether a probe's answer (or a cached one: `.repro/tmp` may be shared or tampered with)
    has the shape the signature code relies on; anything else is probed afresh."""
    if not isinstance(env, dict):
        return False
    if any(not isinstance(env.get(k), (str, type(None))) for k in ("python", "platform")):
        return False
    pk = env.get("packages")
    if not isinstance(pk, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, type(None))) for k, v in pk.items()
    ):
        return False
    found = env.get("paths", [])
    return not paths or (isinstance(found, list) and all(isinstance(p, str) for p in found))


def _write_json(path: str, doc: Any) -> None:
    """Best effort and atomic: a cache that cannot be written costs a probe next time."""
    import json

    from repro.atomicfile import write_atomic

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, json.dumps(doc, sort_keys=True).encode("utf-8"))
    except OSError:
        pass


def stage_environment(
    spec: EnvironmentSpec,
    cmd: str,
    *,
    root: str,
    cwd: str,
    env: dict[str, str],
    cache_dir: str,
    stage: str,
) -> dict[str, Any]:
    """The environment of the interpreter the stage will run (repro's own when it runs none)."""
    interp = stage_interpreter(spec, cmd, root, cwd, env, stage)
    if interp is None:
        return current_environment()
    return probe_interpreter(interp, env, cwd, cache_dir, stage)


# -- images ------------------------------------------------------------------------------------


def _image_cache_path(tmp_dir: str, digest: str) -> str:
    return os.path.join(tmp_dir, "envfp", digest.replace("/", "_").replace(":", "_") + ".json")


def image_environment(
    tmp_dir: str, digest: str, probe: Callable[[str], dict[str, Any] | None] | None = None
) -> dict[str, Any]:
    """The environment inside an image (Python, platform, distributions), remembered per digest
    in `.repro/tmp/envfp/`. Only `probe` (injected by the caller: `repro.execution.images`
    starts a short-lived container) may ask the engine; without it, or when it cannot tell,
    the environment is unknown (`{}`): planning never starts anything by itself."""
    import json

    path = _image_cache_path(tmp_dir, digest)
    from repro.readfile import MAX_BYTES, read_bytes

    try:
        cached = json.loads(read_bytes(path, path, MAX_BYTES["json"]))
        if valid_env(cached):
            return cached
    except (OSError, ValueError, RecursionError, ReproError):
        pass
    env = probe(digest) if probe is not None else None
    if env is None or not valid_env(env):
        return {}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(env, f, sort_keys=True)
    return env


def fingerprint_from(
    env: dict[str, Any], spec: EnvironmentSpec, lockfile_hashes: dict[str, str]
) -> dict[str, Any]:
    """What the signature records of a probed environment (the stage's interpreter's, or an
    image's): only what the stage declares, and never a path, so every clone signs alike."""
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


_LOCKFILE_NAMES = ("LOCK_PARSER_VERSION", "lock_kind", "conda_subdir", "lockfile_fingerprint")


def __getattr__(name: str) -> Any:
    """The lock-file parsers moved to `repro.pipeline.lockfiles` (which builds on this module);
    their names stay importable from here."""
    if name in _LOCKFILE_NAMES:
        import importlib

        return getattr(importlib.import_module("repro.pipeline.lockfiles"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
