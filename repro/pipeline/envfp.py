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
platform, so a re-lock that changes nothing real (comments, order, a timestamp) changes nothing.
"""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from typing import Any

from repro.errors import ReproError, first_line
from repro.pipeline.spec import EnvironmentSpec

PROBE_VERSION = 1
LOCK_PARSER_VERSION = 1
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
    import tempfile

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, sort_keys=True)
        os.replace(tmp, path)
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


def image_environment(tmp_dir: str, digest: str) -> dict[str, Any]:
    """The environment inside an image (Python, platform, distributions), probed once per
    digest with a short-lived container and remembered in `.repro/tmp/envfp/`."""
    import json

    path = os.path.join(tmp_dir, "envfp", digest.replace("/", "_").replace(":", "_") + ".json")
    from repro.readfile import MAX_BYTES, read_bytes

    try:
        cached = json.loads(read_bytes(path, path, MAX_BYTES["json"]))
        if valid_env(cached):
            return cached
    except (OSError, ValueError, RecursionError, ReproError):
        pass
    from repro.execution.images import client

    script = (
        f"if command -v python3 >/dev/null 2>&1; then python3 -c {_sh_quote(_IMAGE_PROBE)}; "
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


# -- lock files --------------------------------------------------------------------------------


def lock_kind(rel: str) -> str | None:
    """Which parser reads the lock file at `rel`, by its name (None: its content counts)."""
    import fnmatch

    base = rel.rsplit("/", 1)[-1].lower()
    if base in ("uv.lock", "poetry.lock", "pixi.lock"):
        return base.split(".")[0]
    if fnmatch.fnmatch(base, "*conda-lock.y*ml"):
        return "conda-lock"
    if base in ("environment.yml", "environment.yaml"):
        return "environment"
    if fnmatch.fnmatch(base, "*requirements*.txt") or fnmatch.fnmatch(base, "constraints*.txt"):
        return "requirements"
    return None


def conda_subdir(platform: str | None) -> str:
    """conda's name for a platform tag such as `linux-x86_64` (`linux-64`)."""
    osname, _, machine = (platform or platform_tag()).partition("-")
    osname = {"darwin": "osx", "win32": "win"}.get(osname, osname)
    machine = machine.lower()
    if machine in ("x86_64", "amd64"):
        return f"{osname}-64"
    if machine in ("i386", "i686", "x86"):
        return f"{osname}-32"
    if machine == "aarch64" and osname == "osx":
        machine = "arm64"
    return f"{osname}-{machine}"


def lockfile_fingerprint(
    path: str, rel: str, content_hash: str, platform: str | None, cache_dir: str
) -> str:
    """The hash of what the lock file resolves to for `platform`, remembered per content hash;
    its content hash when repro has no parser for it or cannot parse it."""
    from repro.canonical import hash_record

    kind = lock_kind(rel)
    if kind is None:
        return content_hash
    subdir = conda_subdir(platform)
    memo = os.path.join(
        cache_dir, f"lock-{hash_record([LOCK_PARSER_VERSION, kind, subdir, content_hash])}.json"
    )
    cached = _read_json(memo)
    if cached and isinstance(cached["env"].get("hash"), str):
        return cached["env"]["hash"]
    try:
        items = _LOCK_PARSERS[kind](path, rel, subdir)
    except (ReproError, OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return content_hash  # not a lock file repro can read: its bytes count
    value = hash_record(["resolved", kind, sorted(items)])
    _write_json(memo, {"env": {"hash": value}})
    return value


def _text(path: str, rel: str, kind: str) -> str:
    from repro.pipeline.specio import read_text

    return read_text(path, rel, kind)


def _toml(path: str, rel: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(_text(path, rel, "toml"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None


def _yaml(path: str, rel: str) -> Any:
    from repro.pipeline.specio import load_yaml_text

    return load_yaml_text(_text(path, rel, "yaml"), rel)


def _requirement_items(lines: list[str]) -> list[list[str]]:
    """(name, version or specifier, hashes, extras and marker) of each requirement line; pip
    options that only say where to download from do not count."""
    items = []
    for line in lines:
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line:
            continue
        hashes = sorted(re.findall(r"--hash[=\s]+(\S+)", line))
        line = " ".join(re.sub(r"--hash[=\s]+\S+", " ", line).split())
        if line.startswith("-"):
            opt = line.split(" ", 1)[0].split("=", 1)[0]
            if opt not in _WHERE_OPTIONS:
                items.append(["option", line, "", ""])
            continue
        req, _, marker = line.partition(";")
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$", req.strip())
        if not m:
            items.append(["line", line, ",".join(hashes), ""])
            continue
        spec = m.group(3).replace(" ", "")
        version = spec[2:] if spec.startswith("==") and "," not in spec else spec
        extras = ",".join(sorted(e.strip() for e in (m.group(2) or "[]")[1:-1].split(",") if e))
        tail = extras + ";" + " ".join(marker.replace('"', "'").split())
        items.append([_norm(m.group(1)), version, ",".join(hashes), tail])
    return items


_WHERE_OPTIONS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--no-index",
    "--prefer-binary",
    "--pre",
}


def _requirements(path: str, rel: str, subdir: str) -> list[list[str]]:
    text = _text(path, rel, "toml")  # a size bound like a TOML file's
    return _requirement_items(re.sub(r"\\\r?\n", " ", text).splitlines())


def _wheel_fits(filename: str, subdir: str) -> bool:
    """Whether a wheel's platform tag can install on the conda-style `subdir` (the Python tag
    is not checked: a wheel for another Python version still belongs to the resolution)."""
    stem = filename.rsplit("/", 1)[-1]
    if not stem.endswith(".whl"):
        return False
    plats = stem[:-4].split("-")[-1].lower().split(".")
    osname, _, arch = subdir.partition("-")
    arch = {"64": "x86_64", "32": "i686"}.get(arch, arch)
    for p in plats:
        if p == "any":
            return True
        linux = osname == "linux" and p.startswith(("manylinux", "musllinux", "linux"))
        if linux and (p.endswith(arch) or (arch == "i686" and p.endswith("i386"))):
            return True
        if osname == "osx" and p.startswith("macosx"):
            if p.endswith(("universal2", "universal")) or p.endswith(arch):
                return True
            if arch == "x86_64" and p.endswith("intel"):
                return True
        if osname == "win":
            want = {"x86_64": "win_amd64", "i686": "win32"}.get(arch, f"win_{arch}")
            if p == want:
                return True
    return False


def _artifact_hashes(files: list[tuple[str, str]], subdir: str) -> str:
    """The hashes of the wheels that fit this platform, else of the sources (what an installer
    here would fetch)."""
    wheels = [h for name, h in files if _wheel_fits(name, subdir)]
    if not wheels:
        wheels = [h for name, h in files if not name.endswith(".whl")]
    return ",".join(sorted(h for h in wheels if h))


def _source(src: Any) -> str:
    """A package's source when it is not a registry (a git commit, a path, a URL)."""
    if not isinstance(src, dict) or "registry" in src or src.get("type") == "legacy":
        return ""
    import json

    return json.dumps(src, sort_keys=True)


def _uv(path: str, rel: str, subdir: str) -> list[list[str]]:
    items = []
    for p in _toml(path, rel).get("package", []):
        files = []
        sd = p.get("sdist")
        if isinstance(sd, dict):
            files.append((str(sd.get("url") or sd.get("path") or "sdist"), str(sd.get("hash", ""))))
        for w in p.get("wheels") or []:
            files.append((str(w.get("url") or w.get("path") or w.get("filename")), str(w["hash"])))
        items.append(
            [
                _norm(p["name"]),
                str(p.get("version", "")),
                _artifact_hashes(files, subdir),
                _source(p.get("source")),
            ]
        )
    return items


def _poetry(path: str, rel: str, subdir: str) -> list[list[str]]:
    doc = _toml(path, rel)
    legacy = (doc.get("metadata") or {}).get("files") or {}
    items = []
    for p in doc.get("package", []):
        raw = p.get("files") or legacy.get(p["name"]) or []
        files = [(str(f.get("file", "")), str(f.get("hash", ""))) for f in raw]
        items.append(
            [
                _norm(p["name"]),
                str(p["version"]),
                _artifact_hashes(files, subdir),
                _source(p.get("source")),
            ]
        )
    return items


def _conda_lock(path: str, rel: str, subdir: str) -> list[list[str]]:
    items = []
    for p in _yaml(path, rel).get("package") or []:
        if p.get("platform") != subdir:
            continue
        h = p.get("hash") or {}
        digest = (h.get("sha256") or h.get("md5") or "") if isinstance(h, dict) else str(h)
        items.append(
            [f"{p.get('manager', 'conda')}:{_norm(p['name'])}", str(p["version"]), digest, ""]
        )
    return items


def _pixi(path: str, rel: str, subdir: str) -> list[list[str]]:
    doc = _yaml(path, rel)
    wanted: set[str] = set()
    for env in (doc.get("environments") or {}).values():
        for ref in ((env or {}).get("packages") or {}).get(subdir) or []:
            wanted.update(str(v) for k, v in ref.items() if k in ("conda", "pypi"))
    items = []
    for p in doc.get("packages") or []:
        url = p.get("conda") or p.get("pypi") or p.get("url")
        if url not in wanted and p.get("platform") != subdir:
            continue
        kind = "pypi" if "pypi" in p or p.get("kind") == "pypi" else "conda"
        name = p.get("name") or str(url).rsplit("/", 1)[-1]
        digest = p.get("sha256") or p.get("md5") or ""
        items.append([f"{kind}:{_norm(str(name))}", str(p.get("version", "")), str(digest), ""])
    return items


def _environment_yml(path: str, rel: str, subdir: str) -> list[list[str]]:
    doc = _yaml(path, rel)
    items = [["channel", f"{i:04d}", str(c), ""] for i, c in enumerate(doc.get("channels") or [])]
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict):
            items += [
                ["pip", *i[:3]] for i in _requirement_items([str(x) for x in dep.get("pip") or []])
            ]
        else:
            items.append(["conda", "".join(str(dep).split()), "", ""])
    return items


_LOCK_PARSERS = {
    "requirements": _requirements,
    "uv": _uv,
    "poetry": _poetry,
    "conda-lock": _conda_lock,
    "pixi": _pixi,
    "environment": _environment_yml,
}
