"""The worker side of scale-out: run one stage from its manifest on a machine that shares
nothing with the client but the remote.

`run_manifest(req)` gets only an `ExecRequest` (paths relative to the project, hashes, the
command, its declared environment and seed, the remote's URL and fsspec options; never data,
never a client path) and:

1. materialises the stage's inputs in a private scratch workspace under the worker's folder,
   through a worker-local cache: every object read from the remote is verified against its
   hash, folders come through their trees;
2. checks the environment the stage declares (Python, platform, package versions) against the
   worker's own: a mismatch fails with one sentence naming the package and both versions, never
   a silently different result;
3. runs the command with the executor it is given (the local one: its own process group, the
   seed and declared variables; stopped when `cancelled()` turns true);
4. hashes the outputs and uploads them, and the logs, putting only what the remote lacks;
5. writes the run-cache entry `runs/<signature>` LAST, so a crashed, cancelled or duplicated
   task leaves nothing half-recorded.

Nothing here knows about Dask (`repro.execution.dask` wraps it in a task) or needs a Project.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from repro.errors import ReproError
from repro.execution.base import ExecContext, ExecRequest, ExecResult, Executor
from repro.hashing.filehash import hash_file
from repro.hashing.state import StateDB
from repro.model import PathHash
from repro.store.backend import LocalBackend, open_backend
from repro.store.objects import ObjectStore

WORKER_DIR_ENV = "REPRO_WORKER_DIR"


class WorkerError(ReproError):
    """A stage cannot run on this worker: a bad manifest, an input the remote lacks, a
    different environment."""


def worker_dir(default: str | None = None) -> str:
    """Where this worker keeps its cache and scratch workspaces: `$REPRO_WORKER_DIR`, else
    `default` (the Dask worker's own local directory), else the system's temp dir."""
    base = os.environ.get(WORKER_DIR_ENV) or default
    if not base:
        base = os.path.join(tempfile.gettempdir(), f"repro-worker-{os.getuid()}")
    os.makedirs(base, exist_ok=True)
    return base


def run_manifest(
    req: ExecRequest,
    executor: Executor,
    *,
    worker: str = "",
    cancelled: Callable[[], bool] | None = None,
    base: str | None = None,
) -> ExecResult:
    """Run the stage `req` describes here with `executor` (the local one, or the container
    one for a stage with an image: the caller chooses, this layer imports neither); see the
    module's docstring. Failures come back as an ExecResult with `error` (one sentence), never
    as an exception the client must unpickle."""
    started = time.time()
    base = worker_dir(base)
    scratch = tempfile.mkdtemp(prefix="stage-", dir=_mkdir(os.path.join(base, "scratch")))
    try:
        check_manifest(req)
        remote = open_store(req)
        cache = worker_cache(base)
        ws = _mkdir(os.path.join(scratch, "ws"))
        materialise(req, remote, cache, ws)
        problem = environment_problem(req, ws, os.path.join(base, "envfp"))
        if problem:
            return ExecResult(1, started, time.time(), error=problem, worker=worker)
        result = _run_command(req, ws, _mkdir(os.path.join(scratch, "logs")), cancelled, executor)
        result.worker = worker
        result.stdout, result.stderr = _put_logs(remote, result.stdout_path, result.stderr_path)
        result.stdout_path = result.stderr_path = None  # paths on this machine: not the client's
        if result.error or result.exit_code != 0 or (cancelled is not None and cancelled()):
            return result
        outs, missing = store_outputs(req, ws, remote)
        if missing:
            result.error = f"the command did not produce its declared output '{missing}'"
            return result
        result.outs = outs
        if req.record and req.signature:
            from repro.pipeline import runcache

            runcache.put_entry(
                remote.backend,
                req.signature,
                req.stage,
                {p: PathHash.from_dict(d) for p, d in outs.items()},
                req.run_id,
            )
        return result
    except ReproError as exc:
        return ExecResult(1, started, time.time(), error=exc.message.rstrip("."), worker=worker)
    except OSError as exc:
        why = f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
        return ExecResult(1, started, time.time(), error=f"on the worker: {why}", worker=worker)
    finally:
        _remove(scratch)


def check_manifest(req: ExecRequest) -> None:
    """The manifest came over the network: every path relative and inside the workspace, every
    hash well-formed, before anything is fetched or written."""
    from repro.safety import safe_hash, safe_rel

    source = f"the request for stage '{req.stage}'"
    if req.signature:
        safe_hash(req.signature, source, "signature")
    for field, items in (("deps", req.deps), ("files", req.files)):
        if not isinstance(items, dict):
            raise WorkerError(f"{source}: '{field}' is not a mapping.")
        for p, h in items.items():
            safe_rel(p, source, field)
            safe_hash(h, source, f"{field}[{p!r}]")
    for p in req.outs:
        safe_rel(p, source, "outs", output=True)
    if req.wdir != ".":
        safe_rel(req.wdir, source, "wdir")
    if not req.store_url:
        raise WorkerError(f"{source}: no remote to read inputs from and write outputs to.")


def open_store(req: ExecRequest) -> ObjectStore:
    """The shared remote, with the fsspec options the client's config gives (credentials come
    from this worker's environment)."""
    assert req.store_url is not None
    try:
        backend = open_backend(req.store_url, dict(req.store_options))
    except ImportError as exc:
        raise WorkerError(
            f"the worker cannot open the remote {req.store_url} ({exc}); install the extra "
            "its scheme needs (repro-engine[s3], [gcs] or [azure]) on the workers."
        ) from None
    return ObjectStore(backend, name=f"remote {req.store_url}")


def worker_cache(base: str) -> ObjectStore:
    """The worker-local cache: objects fetched once serve every later stage on this worker."""
    root = _mkdir(os.path.join(base, "cache"))
    return ObjectStore(LocalBackend(root), StateDB(os.path.join(base, "state.db")), name="cache")


# -- inputs ------------------------------------------------------------------------------------
def materialise(req: ExecRequest, remote: ObjectStore, cache: ObjectStore, ws: str) -> None:
    """Place every input of the stage in the workspace `ws`, from verified cache objects."""
    items = {**req.files, **req.deps}
    dirs = set(req.dirs)
    fetch(cache, remote, set(items.values()), req.stage)
    trees = {p: cache.get_tree(h) for p, h in items.items() if p in dirs}
    fetch(cache, remote, {e.hash for t in trees.values() for e in t.entries}, req.stage)
    for p, h in sorted(items.items()):
        dst = os.path.join(ws, *p.split("/"))
        if p in trees:
            _mkdir(dst)  # an empty folder is a folder still
            for e in trees[p].entries:
                _place(cache, e.hash, os.path.join(dst, *e.path.split("/")), e.executable)
        else:
            _place(cache, h, dst, False)
    for p in req.outs:
        _mkdir(os.path.dirname(os.path.join(ws, *p.split("/"))))
    _mkdir(os.path.join(ws, *req.wdir.split("/")) if req.wdir != "." else ws)


def fetch(cache: ObjectStore, remote: ObjectStore, hashes: set[str], stage: str) -> None:
    """Bring `hashes` into the worker's cache, each verified against its hash, from the
    remote's packs, loose objects or chunked ones (`repro.store.sync`)."""
    from repro.store.sync import Meter, fetch_objects, inventory

    if not hashes - cache.verified_set(hashes):
        return
    meter = Meter()
    res = fetch_objects(cache, remote, hashes, inventory(remote, meter, list_loose=False), meter)
    if res.corrupt:
        raise WorkerError(f"stage '{stage}': {res.corrupt[0].rstrip('.')}")
    missing = sorted(hashes - res.got)
    if missing:
        raise WorkerError(
            f"stage '{stage}': input object {missing[0]} is not on the remote "
            f"{remote.backend.url} (was it pushed?)"
        )


def _place(cache: ObjectStore, h: str, dst: str, executable: bool) -> None:
    """A private, writable copy: the stage cannot change the cache through its inputs."""
    _mkdir(os.path.dirname(dst))
    shutil.copyfile(cache.verified_path(h), dst)
    os.chmod(dst, 0o755 if executable else 0o644)


# -- the environment ---------------------------------------------------------------------------
def environment_problem(req: ExecRequest, ws: str, cache_dir: str) -> str | None:
    """Why this worker's environment is not the one the stage declares (first difference), or
    None. Lock files are inputs (hashed with the deps); what they pin is checked through the
    packages the stage names."""
    fp = req.environment
    if not fp:
        return None
    from repro.pipeline.envfp import env_changes, fingerprint_from, stage_environment
    from repro.pipeline.spec_model import EnvironmentSpec

    wanted = {k: v for k, v in fp.items() if k in ("python", "platform", "packages")}
    if not wanted:
        return None
    spec = EnvironmentSpec(
        python="python" in wanted,
        platform="platform" in wanted,
        packages=tuple(sorted(wanted.get("packages") or {})),
    )
    cwd = os.path.join(ws, *req.wdir.split("/")) if req.wdir != "." else ws
    env = stage_environment(
        spec,
        req.cmd,
        root=ws,
        cwd=cwd,
        env={**os.environ, **req.env},
        cache_dir=_mkdir(cache_dir),
        stage=req.stage,
    )
    got = fingerprint_from(env, spec, {})
    for target, want, have in env_changes(wanted, got):
        return (
            f"stage '{req.stage}': the worker's environment differs from the one the stage "
            f"declares: {target} is {have or 'not installed'} on the worker but "
            f"{want or 'not installed'} on the client; install the same version on the workers"
        )
    return None


# -- running -----------------------------------------------------------------------------------
def _run_command(
    req: ExecRequest,
    ws: str,
    logs: str,
    cancelled: Callable[[], bool] | None,
    executor: Executor,
) -> ExecResult:
    """The command, run by `executor` in the workspace, stopped once `cancelled()` is true."""
    ctx = ExecContext(
        root=ws,
        stdout_path=os.path.join(logs, "stdout"),
        stderr_path=os.path.join(logs, "stderr"),
        cancel=threading.Event(),
    )
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.25):
            try:
                if cancelled is not None and cancelled():
                    ctx.cancel.set()
                    return
            except Exception:  # the scheduler gone: keep running, Dask handles lost clients
                continue

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = executor.run(req, ctx)
    finally:
        done.set()
        watcher.join()
    if ctx.cancel.is_set() and not result.error:
        result.error = "cancelled"
    result.stdout_path = result.stdout_path or ctx.stdout_path
    result.stderr_path = result.stderr_path or ctx.stderr_path
    return result


def _put_logs(remote: ObjectStore, *paths: str | None) -> list[str | None]:
    """Upload the log files that exist (what the remote lacks); their hashes, None for none."""
    hashes = [hash_file(p) if p and os.path.exists(p) else None for p in paths]
    files = {h: p for h, p in zip(hashes, paths, strict=True) if h is not None and p}
    if files:
        send(remote, files, {}, "the stage's logs")
    return hashes


# -- outputs -----------------------------------------------------------------------------------
def store_outputs(
    req: ExecRequest, ws: str, remote: ObjectStore
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Hash each output (folders as trees) and upload what the remote lacks. Returns
    (path -> PathHash dict, the first missing output or None)."""
    from repro.hashing.engine import Hasher
    from repro.hashing.ignore import IgnoreRules

    hasher = Hasher(StateDB(None), inside=os.path.realpath(ws), ignore=IgnoreRules(ws))
    outs: dict[str, dict[str, Any]] = {}
    files: dict[str, str] = {}  # hash -> local file
    trees: dict[str, bytes] = {}
    for p in req.outs:
        path = os.path.join(ws, *p.split("/"))
        if not os.path.lexists(path):
            return {}, p
        r = hasher.hash_path(path, files=True)
        if r.is_dir and r.tree is not None:
            trees[r.hash] = r.tree.encode()
            files.update({f.hash: f.abs for f in r.files})
        else:
            files[r.hash] = path
        outs[p] = PathHash.of(r).to_dict()
    send(remote, files, trees, f"stage '{req.stage}'")
    return outs, None


def send(remote: ObjectStore, files: dict[str, str], trees: dict[str, bytes], what: str) -> int:
    """Put on `remote` the objects it lacks: `files` (hash -> a local file just hashed) first,
    then `trees` (hash -> encoded tree): a tree present means its files are. Small objects go
    in packs, large ones loose or chunked (`repro.store.sync`). What the remote holds comes
    from this process's inventory of it (`shared_inventory`: `objects/` is not listed again
    for every stage). Returns how many were sent."""
    from repro.store.sync import Meter, push_objects, shared_inventory

    meter = Meter()
    inv = shared_inventory(remote, meter)
    sent = 0
    for paths, blobs in ((files, {}), ({}, trees)):
        res = push_objects(remote, set(paths) | set(blobs), inv, meter, paths=paths, blobs=blobs)
        if res.corrupt or res.failed:
            bad = (res.corrupt + res.failed)[0]
            raise WorkerError(f"{what}: {bad} changed while it was uploaded or failed to upload")
        sent += len(res.sent)
    return sent


# -- small helpers -----------------------------------------------------------------------------
def _mkdir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _remove(path: str) -> None:
    """Remove a scratch workspace, read-only files and folders included."""

    def unlock(func, p, _exc) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o755)
            os.chmod(p, 0o755)
            func(p)

    shutil.rmtree(path, onerror=unlock)
