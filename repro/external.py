"""External data: `repro import-url`, `repro update` and `repro status --external`.

An imported path is tracked data (like `repro add`) whose source is recorded in repro.lock's
`external` section: the URL, its ETag / version id / size / mtime, and non-secret storage
options. The data is frozen: `run` and `checkout` never fetch it again; only `repro update PATH`
does, and it says what changed. `status --external` asks the source for its metadata only.

The URL in repro.lock came with git, so it is untrusted: only schemes in ALLOWED_SCHEMES are
fetched from it, and a `file://` URL (or a plain path) only when it lies inside the project;
a local source outside the project must be given on the command line now.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from repro.enums import ReasonKind
from repro.errors import PathError, RemoteError, UsageError
from repro.lockfile import EXTERNAL_SCHEMES
from repro.project import Project

# Schemes a URL recorded in repro.lock may use (http(s) by the standard library, the rest
# through fsspec and its extra).
ALLOWED_SCHEMES = EXTERNAL_SCHEMES
LOCAL_SCHEMES = ("", "file")
# storage options never written to repro.lock (it goes into git): credentials
SECRET_HINTS = ("key", "secret", "token", "password", "credential", "sas")
CHUNK = 1 << 20
DISK_MARGIN = 64 << 20  # keep this much free on the disk that receives a download
TIMEOUT = 60.0


@dataclass
class Source:
    """What the source says about itself, without its bytes."""

    url: str
    etag: str | None = None
    version_id: str | None = None
    size: int | None = None
    mtime: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"url": self.url}
        for k in ("etag", "version_id", "size", "mtime"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.options:
            d["options"] = dict(self.options)
        return d


@dataclass
class Change:
    field: str  # size | etag | version_id | mtime | hash
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass
class Imported:
    path: str
    url: str
    hash: str
    size: int
    changed: bool = True
    changes: list[Change] = field(default_factory=list)
    snapshot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "url": self.url,
            "hash": self.hash,
            "bytes": self.size,
            "changed": self.changed,
            "changes": [c.to_dict() for c in self.changes],
            "snapshot": self.snapshot,
        }


# -- which URLs may be fetched -------------------------------------------------------------
def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower() if "://" in url else ""


def _local_path(url: str) -> str:
    return urlsplit(url).path if url.lower().startswith("file://") else url


def check_url(project: Project, url: str, source: str, from_user: bool) -> str:
    """`url` if repro may fetch it; else one sentence naming `source`. A URL from repro.lock
    (`from_user` False) may be local only inside the project."""
    if not url or "\x00" in url or any(c in url for c in "\r\n"):
        raise PathError(f"{source}: URL {url[:80]!r} is not a usable URL; refusing to fetch it.")
    scheme = _scheme(url)
    if scheme in LOCAL_SCHEMES:
        if from_user:
            return url
        real = os.path.realpath(os.path.join(project.root, _local_path(url)))
        root = os.path.realpath(project.root)
        if real != root and real.startswith(root + os.sep):
            return url
        raise PathError(
            f"{source}: URL {url[:120]!r} reads a local file outside the project; refusing to "
            "fetch it (to import it again, give it on the command line: "
            "repro import-url URL PATH --force)."
        )
    if from_user and scheme not in ALLOWED_SCHEMES and _fsspec_knows(scheme):
        return url  # given now: any fsspec protocol (`repro update` accepts only the list)
    if scheme not in ALLOWED_SCHEMES:
        raise PathError(
            f"{source}: URL {url[:120]!r} has scheme '{scheme}', which repro does not fetch; "
            f"refusing it (allowed: {', '.join(ALLOWED_SCHEMES)}, and file:// inside the "
            "project)."
        )
    return url


def _fsspec_knows(scheme: str) -> bool:
    from fsspec.registry import known_implementations, registry

    return scheme in known_implementations or scheme in registry


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`-o KEY=VALUE` storage options; credentials are refused (repro.lock goes into git:
    give them through the environment, as for remotes)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-o {pair!r}: expected KEY=VALUE.")
        if any(h in key.lower() for h in SECRET_HINTS):
            raise UsageError(
                f"-o {key}: looks like a credential; repro.lock goes into git, so give it "
                "through the environment (AWS_SECRET_ACCESS_KEY, ...) instead."
            )
        out[key] = value
    return out


# -- asking the source ---------------------------------------------------------------------
def _http_request(url: str, method: str):
    import urllib.request

    req = urllib.request.Request(url, method=method, headers={"User-Agent": "repro"})
    return urllib.request.urlopen(req, timeout=TIMEOUT)


def _http_source(url: str, resp: Any) -> Source:
    size = resp.headers.get("Content-Length")
    return Source(
        url,
        etag=resp.headers.get("ETag"),
        size=int(size) if size and size.isdigit() else None,
        mtime=resp.headers.get("Last-Modified"),
    )


def _fs(url: str, options: dict[str, Any]):
    import fsspec

    from repro.remote import EXTRAS

    scheme = _scheme(url) or "file"
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError:
        from repro.errors import MissingExtraError

        raise MissingExtraError(f"importing {url}", EXTRAS.get(scheme, "all")) from None
    except ValueError as exc:
        raise UsageError(f"{url}: {exc}") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _fs_source(url: str, info: dict[str, Any], options: dict[str, Any]) -> Source:
    if info.get("type") == "directory":
        raise UsageError(f"{url}: is a folder; repro import-url imports one file at a time.")
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    version = info.get("VersionId") or info.get("generation") or info.get("version_id")
    mtime = info.get("LastModified") or info.get("updated") or info.get("mtime")
    size = info.get("size")
    return Source(
        url,
        etag=_text(etag),
        version_id=_text(version) if version not in (None, "null") else None,
        size=int(size) if isinstance(size, int) else None,
        mtime=_text(mtime),
        options=options,
    )


def _source_error(url: str, problem: str) -> RemoteError:
    return RemoteError(f"source {url[:200]}: {problem.rstrip('.')}.")


def _remote_errors(url: str, exc: BaseException) -> RemoteError:
    return _source_error(url, f"cannot be read ({type(exc).__name__}: {exc})")


def probe(url: str, options: dict[str, Any] | None = None) -> Source:
    """The source's metadata (ETag, version id, size, mtime) without downloading it."""
    options = options or {}
    if _scheme(url) in ("http", "https"):
        try:
            with _http_request(url, "HEAD") as resp:
                return _http_source(url, resp)
        except OSError as exc:
            raise _remote_errors(url, exc) from None
    fs, path = _fs(url, options)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise _source_error(url, "no such file") from None
    except OSError as exc:
        raise _remote_errors(url, exc) from None
    return _fs_source(url, info, options)


# -- downloading ---------------------------------------------------------------------------
def _free_bytes(folder: str) -> int:
    return shutil.disk_usage(folder).free - DISK_MARGIN


def _copy(src: Any, dst: Any, url: str, budget: int) -> tuple[int, str]:
    """Stream `src` into `dst`; (bytes, md5). Stops once the disk budget is spent."""
    md5 = hashlib.md5(usedforsecurity=False)
    n = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return n, md5.hexdigest()
        n += len(chunk)
        if n > budget:
            raise _source_error(url, "larger than the free disk space; nothing written")
        md5.update(chunk)
        dst.write(chunk)


def _verify(url: str, before: Source, n: int, md5: str, after: Source | None) -> None:
    """The bytes are what the source announced: its size, its plain-MD5 ETag (S3 single-part
    and most static servers use one), and an ETag/version unchanged during the download."""
    if before.size is not None and n != before.size:
        raise RemoteError(
            "source", url, f"sent {n} bytes where it announced {before.size}; nothing written"
        )
    tag = (before.etag or "").strip('"')
    md5_shaped = len(tag) == 32 and all(c in "0123456789abcdef" for c in tag)
    # An MD5-shaped ETag that does not match may be a server's own scheme: only S3's (single
    # part) is known to be the content's MD5.
    if md5_shaped and tag != md5 and _scheme(url) == "s3":
        raise _source_error(url, "content does not match its ETag; nothing written")
    if after and (after.etag, after.version_id) != (before.etag, before.version_id):
        raise RemoteError(
            "source", url, "changed while it was being downloaded; nothing written, try again"
        )


def download(project: Project, url: str, options: dict[str, Any]) -> tuple[str, Source]:
    """Fetch `url` into a temporary file under .repro/tmp; (its path, what the source said).
    Streamed, bounded by the free disk space, verified (see _verify)."""
    tmpdir = os.path.join(project.dot, "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="import-", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as dst:
            source = _download_into(url, options, dst, _free_bytes(tmpdir))
        return tmp, source
    except BaseException:
        os.unlink(tmp)
        raise


def _download_into(url: str, options: dict[str, Any], dst: Any, budget: int) -> Source:
    if _scheme(url) in ("http", "https"):
        try:
            with _http_request(url, "GET") as resp:
                before = _http_source(url, resp)
                if before.size is not None and before.size > budget:
                    raise _source_error(url, "larger than the free disk space")
                n, md5 = _copy(resp, dst, url, budget)
        except OSError as exc:
            raise _remote_errors(url, exc) from None
        _verify(url, before, n, md5, None)
        return before
    before = probe(url, options)
    if before.size is not None and before.size > budget:
        raise _source_error(url, "larger than the free disk space")
    fs, path = _fs(url, options)
    try:
        with fs.open(path, "rb") as src:
            n, md5 = _copy(src, dst, url, budget)
    except OSError as exc:
        raise _remote_errors(url, exc) from None
    _verify(url, before, n, md5, probe(url, options))
    return before


# -- the commands --------------------------------------------------------------------------
def _record_run(project: Project, started: float) -> str:
    from repro.records import make_record, new_run_id, save_record
    from repro.snapshots import record_snapshot

    sig = record_snapshot(project)
    record = make_record(project, new_run_id(started), "add", started, time.time(), sig, "ok", [])
    save_record(project.cache.backend, record)
    return sig


def _place(tmp: str, dest: str) -> None:
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def import_url(
    project: Project,
    url: str,
    path: str,
    options: dict[str, Any] | None = None,
    force: bool = False,
    wait: float = 0.0,
) -> Imported:
    """`repro import-url URL PATH`: download, store by content hash, track PATH as data, and
    record the source in repro.lock. Nothing is written when anything fails."""
    from repro.data import add
    from repro.lockfile import load_lock, save_lock
    from repro.pipeline.runlock import run_lock
    from repro.safety import output_problem

    options = options or {}
    check_url(project, url, "command line", from_user=True)
    rel = project.rel(path, "import path")
    problem = output_problem(rel)
    if problem:
        raise PathError(f"{path}: {problem}; repro cannot import data there.")
    dest = project.abs(rel)
    if os.path.lexists(dest) and not force:
        raise PathError(f"{rel}: already exists; --force replaces it with the import.")
    _check_target(project, rel)
    fetch = url
    if _scheme(url) in LOCAL_SCHEMES:
        fetch = os.path.abspath(_local_path(url))
        if os.path.realpath(fetch) == os.path.realpath(dest):
            raise PathError(f"{rel}: is the source itself; import to another path.")
        inside = os.path.relpath(fetch, project.root)
        # inside the project: recorded relative, so the lock holds on every clone
        url = fetch if inside.startswith("..") else inside.replace(os.sep, "/")
    started = time.time()
    with run_lock(project.dot, wait):
        tmp, source = download(project, fetch, options)
        source.url, source.options = url, options
        if os.path.lexists(dest):  # --force: nothing is lost (restore brings it back)
            from repro.workspace import CheckoutReport, save_before_overwrite

            save_before_overwrite(project, rel, CheckoutReport())
        _place(tmp, dest)
        added = add(project, [rel])[0]
        lock = load_lock(project.lock_path)
        lock.external[rel] = {**source.to_dict(), "hash": added.hash.hash}
        save_lock(project.lock_path, lock)
        sig = _record_run(project, started)
    return Imported(rel, url, added.hash.hash, added.hash.size, snapshot=sig)


def _check_target(project: Project, rel: str) -> None:
    """What `repro add` would refuse, asked before the download: nothing is written then."""
    from repro.gitignore import git_tracked
    from repro.pipeline.spec import load_spec

    owner = load_spec(project).output_owner(rel)
    if owner:
        raise PathError(f"{rel}: is an output of stage '{owner}'; import to another path.")
    if git_tracked(project.root, [rel]):
        raise PathError(
            f"{rel}: is tracked by git; 'git rm --cached' it first, or import elsewhere."
        )


def _fetchable(project: Project, url: str) -> str:
    """A recorded URL as it is fetched: a local path is relative to the project root."""
    if _scheme(url) in LOCAL_SCHEMES:
        return os.path.join(project.root, _local_path(url))
    return url


def _recorded(project: Project, lock: Any, rel: str) -> dict[str, Any]:
    entry = lock.external.get(rel)
    if entry is None:
        raise UsageError(
            f"{rel}: was not imported with 'repro import-url'; repro.lock records no source."
        )
    check_url(project, entry["url"], f"repro.lock: external.{rel}.url", from_user=False)
    return entry


def _diff(
    old: dict[str, Any], new: dict[str, Any], keys=("size", "etag", "version_id", "hash")
) -> list[Change]:
    return [
        Change(k, old.get(k), new.get(k))
        for k in keys
        if new.get(k) is not None and old.get(k) != new.get(k)
    ]


def update(project: Project, path: str, wait: float = 0.0) -> Imported:
    """`repro update PATH`: fetch the recorded source again; say whether it changed (size,
    ETag, version id, content hash). Workspace content not in the cache is saved first."""
    from repro.data import add
    from repro.lockfile import load_lock, save_lock
    from repro.pipeline.runlock import run_lock
    from repro.workspace import CheckoutReport, save_before_overwrite

    rel = project.rel(path, "path to update")
    started = time.time()
    with run_lock(project.dot, wait):
        lock = load_lock(project.lock_path)
        entry = _recorded(project, lock, rel)
        url, options = entry["url"], dict(entry.get("options") or {})
        tmp, source = download(project, _fetchable(project, url), options)
        source.url, source.options = url, options
        try:
            new_hash = project.hasher.hash_path(tmp).hash
        except BaseException:
            os.unlink(tmp)
            raise
        changes = _diff(entry, {**source.to_dict(), "hash": new_hash})
        old_hash = (lock.data.get(rel) or {}).get("hash")
        if new_hash == old_hash and os.path.lexists(project.abs(rel)):
            os.unlink(tmp)
        else:
            save_before_overwrite(project, rel, CheckoutReport())
            _place(tmp, project.abs(rel))
        added = add(project, [rel])[0]
        lock = load_lock(project.lock_path)
        lock.external[rel] = {**source.to_dict(), "hash": added.hash.hash}
        save_lock(project.lock_path, lock)
        sig = _record_run(project, started)
    changed = any(c.field == "hash" for c in changes)
    return Imported(rel, url, added.hash.hash, added.hash.size, changed, changes, sig)


def external_changes(project: Project, paths: list[str] | None = None) -> dict[str, list[Change]]:
    """Each imported path (or those in `paths`) whose source now reports another ETag,
    version id or size than repro.lock recorded: path -> what differs. Downloads nothing."""
    from repro.lockfile import load_lock

    lock = load_lock(project.lock_path)
    out: dict[str, list[Change]] = {}
    for rel in sorted(lock.external):
        if paths is not None and rel not in paths:
            continue
        entry = _recorded(project, lock, rel)
        now = probe(_fetchable(project, entry["url"]), dict(entry.get("options") or {}))
        changes = _diff(entry, now.to_dict())
        if not changes and now.etag is None and now.version_id is None:
            changes = _diff(entry, {"mtime": now.mtime}, ("mtime",))
        if changes:
            out[rel] = changes
    return out


def mark_external(project: Project, report: Any) -> Any:
    """`status --external`: add a reason of kind `external` (target: the path) to each tracked
    path of `report` whose source changed; the path becomes stale. Returns `report`."""
    from repro.pipeline.status import Reason

    changed = external_changes(project, [d.path for d in report.data])
    for d in report.data:
        changes = changed.get(d.path)
        if changes:
            old = {c.field: c.old for c in changes}
            new = {c.field: c.new for c in changes}
            d.reasons.append(Reason(ReasonKind.EXTERNAL, d.path, old, new, versions=True))
            d.state = "stale"
    return report
