"""`repro.lock`: what the last run produced, per stage, plus the hashes of tracked data.

Written as sorted, indented JSON — which is also valid YAML — so it loads in well under a
millisecond (no-op runs and `status` read it every time), diffs line by line in review, and any
YAML or JSON tool reads it. Written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from repro.errors import SpecError, UntrustedInputError
from repro.readfile import MAX_BYTES, decode_text, read_bytes
from repro.safety import safe_hash, safe_path_hash, safe_plain, safe_rel

LOCK_SCHEMA = 1
# Schemes an `external` source URL may use (repro.external refuses others where it fetches;
# a `file://` URL only inside the project).
EXTERNAL_SCHEMES = ("http", "https", "s3", "gs", "gcs", "az", "abfs", "abfss")


@dataclass
class Lock:
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # image reference -> locked digest
    # tracked data imported from a URL (`repro import-url`): path -> {url, etag, version_id,
    # size, mtime, options}; written only when present, so older locks stay byte-identical
    external: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "schema": LOCK_SCHEMA,
            "stages": self.stages,
            "data": self.data,
            "images": self.images,
        }
        if self.external:
            doc["external"] = self.external
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def load_lock(path: str) -> Lock:
    """Read and validate `repro.lock`. It arrives with `git pull`, so it is untrusted: any
    problem (not UTF-8, not JSON, too deep, a wrong type, a path out of the project) is one
    sentence naming the file and field, raised before anything acts on it."""
    name = os.path.basename(path)
    try:
        text = decode_text(read_bytes(path, name, MAX_BYTES["json"]), name)
    except FileNotFoundError:
        return Lock()
    return parse_lock(text, name)


def parse_lock(text: str, name: str = "repro.lock") -> Lock:
    """A lock from its text (the file, or `git show REV:repro.lock`), validated; `name` is how
    errors name its source."""
    if not text.strip():
        return Lock()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        conflict = " (an unresolved git merge conflict?)" if "<<<<<<<" in text else ""
        raise SpecError(
            f"{name}: cannot be parsed{conflict} (line {exc.lineno}: {exc.msg}); repro writes "
            "it as JSON: resolve it, or delete it and run 'repro run'."
        ) from None
    except RecursionError:
        raise SpecError(f"{name}: cannot be parsed (nested too deeply).") from None
    if not isinstance(doc, dict) or doc.get("schema", LOCK_SCHEMA) != LOCK_SCHEMA:
        raise SpecError(f"{name}: unknown lock schema; is repro too old?")
    stages, data, images = (doc.get(k) or {} for k in ("stages", "data", "images"))
    validate_state(stages, data, name, images=images)
    external = _external(doc.get("external") or {}, data, name)
    return Lock(dict(stages), dict(data), dict(images), external)


def _external(value: Any, data: dict, source: str) -> dict[str, dict[str, Any]]:
    """The `external` section: each imported path is tracked data with a recorded source. The
    URL is checked against the allowed schemes where it is used (repro.external), not here:
    a lock with an odd URL still loads for everything that does not fetch it."""
    safe_plain(value, source, "external")
    for key, d in _mapping(value, source, "external").items():
        safe_rel(key, source, "external path", output=True)
        _mapping(d, source, f"external.{key}")
        if not isinstance(d.get("url"), str):
            raise UntrustedInputError(source, f"external.{key}.url", d.get("url"), "is not text")
        _mapping(d.get("options") or {}, source, f"external.{key}.options")
    # a source of a path no longer tracked (`repro remove`) is dropped, not an error
    return {k: d for k, d in value.items() if k in data}


def _mapping(value: Any, source: str, field: str) -> dict:
    if not isinstance(value, dict):
        raise UntrustedInputError(source, field, value, "is not a mapping")
    return value


def validate_state(
    stages: Any,
    data: Any,
    source: str,
    files: Any = None,
    images: Any = None,
) -> None:
    """Check a recorded state (a lock, or a snapshot from a shared cache) before anything acts
    on it: every path is project-relative and safe (outputs and data never name a file repro or
    git owns), every hash is 32 hex characters, every field has its type. A lock arrives with
    `git pull` and a snapshot from a remote: neither may steer a write outside the project."""
    for part, value in (("stages", stages), ("data", data), ("files", files), ("images", images)):
        safe_plain(value, source, part)  # JSON data only: the lock is written back as JSON
    for key, d in _mapping(data, source, "data").items():
        safe_rel(key, source, "data path", output=True)
        safe_path_hash(d, source, f"data.{key}")
    for key, d in _mapping(files or {}, source, "files").items():
        safe_rel(key, source, "file path")
        safe_path_hash(d, source, f"files.{key}")
    for ref, digest in _mapping(images or {}, source, "images").items():
        if not isinstance(ref, str) or not isinstance(digest, str):
            raise UntrustedInputError(source, f"images.{ref}", digest, "is not a string")
    for name, entry in _mapping(stages, source, "stages").items():
        where = f"stages.{name}"
        _mapping(entry, source, where)
        if entry.get("signature") is not None:
            safe_hash(entry["signature"], source, f"{where}.signature")
        for key, d in _mapping(entry.get("outs") or {}, source, f"{where}.outs").items():
            safe_rel(key, source, f"{where}.outs path", output=True)
            safe_path_hash(d, source, f"{where}.outs.{key}")
        for key, d in _mapping(entry.get("deps") or {}, source, f"{where}.deps").items():
            safe_rel(key, source, f"{where}.deps path")
            safe_path_hash(d, source, f"{where}.deps.{key}")
        _mapping(entry.get("env") or {}, source, f"{where}.env")
        env = _mapping(entry.get("environment") or {}, source, f"{where}.environment")
        lockfiles = env.get("lockfiles") or {}
        for key in _mapping(lockfiles, source, f"{where}.environment.lockfiles"):
            safe_rel(key, source, f"{where}.environment.lockfiles path")
        for key in _mapping(entry.get("params") or {}, source, f"{where}.params"):
            if not isinstance(key, str):
                raise UntrustedInputError(source, f"{where}.params", key, "is not a string")
            safe_rel(key.rsplit(":", 1)[0], source, f"{where}.params file")
    _check_nesting(stages, data, files or {}, source)


def _check_nesting(stages: dict, data: dict, files: dict, source: str) -> None:
    """No path the state puts in the workspace lies inside another one that is a file: the
    checkout would have to make a folder where it has just placed that file."""
    placed = {**files, **data}
    for entry in stages.values():
        placed.update(entry.get("outs") or {})
    as_files = {p for p, d in placed.items() if not d.get("isdir")}
    for path in placed:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in as_files:
                raise UntrustedInputError(
                    source, "path", path, f"lies inside '{parent}', which it names as a file"
                )
            parent = parent.rpartition("/")[0]


def save_lock(path: str, lock: Lock) -> None:
    text = lock.to_json()
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
