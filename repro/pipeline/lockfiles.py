"""Lock files in an environment fingerprint: each counts by the set of (name, version, artifact
hashes) it resolves to for the stage's platform, so a re-lock that changes nothing real (comments,
order, a timestamp) changes nothing. Split from `repro.pipeline.envfp` (the interpreter probe),
whose helpers it uses; what repro cannot parse counts by its bytes.
"""

from __future__ import annotations

import os
import re
from typing import Any

from repro.errors import ReproError
from repro.pipeline.envfp import _norm, _read_json, _write_json, platform_tag

LOCK_PARSER_VERSION = 1


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
