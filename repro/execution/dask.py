"""The `dask` executor, client side: each stage to run becomes one task on a Dask
`distributed` cluster; repro decides what runs, Dask decides where.

The planner and the run cache work as for a local run (signatures; local, then remote run
cache: a restored stage submits nothing). A stage that must run is submitted once its
upstream stages are done (the runner orders them; each `run` call submits one future and
waits for it), with `key=` its signature, so the same stage submitted twice, by two clients
or twice by one, runs once. The task carries only the request (a manifest of paths, hashes,
command, environment, seed and the remote's URL): data goes through the shared remote, never
through Dask. Around each call the runner (`repro.pipeline.stageexec`) puts the inputs'
objects the remote lacks there (`ship_inputs`) and, after it, fetches the outputs and logs the
worker reported into the local cache, verified (`fetch_results`).

On the worker, `run_task` wraps `repro.execution.worker.run_manifest` with what only Dask
knows: the worker's address and folder, and a cancel flag, the `distributed.Event` named for
the run, which the client sets on Ctrl-C or when a stage fails; the worker then stops the
stage's process group and records nothing for it.

Config: `[dask] scheduler = "tcp://host:8786"` (or `--scheduler`), `workers` (the size of the
LocalCluster started when no scheduler is named; default: one per CPU) and `timeout`
(seconds to reach the scheduler); `[run.dask]` may set the same keys.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from repro.errors import MissingExtraError, ReproError
from repro.execution.base import ExecContext, ExecRequest, ExecResult

if TYPE_CHECKING:
    from repro.project import Project

DEFAULT_TIMEOUT = 30.0
SUBMIT_WINDOW = 0.05  # seconds a submission waits for the stages that became ready with it


class DaskError(ReproError):
    """The Dask cluster cannot be reached or set up, or lost a stage."""


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingExtraError("the 'dask' executor", "dask") from None


class DaskExecutor:
    """Submits each stage as one task; see the module's docstring."""

    name = "dask"
    needs_remote = True  # the runner ships inputs to the remote and fetches outputs from it

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        _require_distributed()
        config = dict(config or {})
        scheduler = config.get("scheduler")
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise DaskError(
                f"[dask] scheduler must be an address (tcp://host:8786), not {scheduler!r}."
            )
        workers = config.get("workers")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise DaskError(f"[dask] workers must be a number >= 1, not {workers!r}.")
        timeout = config.get("timeout", DEFAULT_TIMEOUT)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise DaskError(f"[dask] timeout must be seconds > 0, not {timeout!r}.")
        self.scheduler: str | None = scheduler.strip() if scheduler else None
        self.workers: int | None = workers
        self.timeout = float(timeout)
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}  # run id -> the first stage that failed in it
        self._pending: list[dict[str, Any]] = []  # submissions gathered for one batch
        self._submit_lock = threading.Lock()

    # -- the cluster --------------------------------------------------------------------------
    def client(self) -> Any:
        """The Dask client, connected on first use (a LocalCluster when no scheduler is named)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        import atexit

        from distributed import Client

        if self.scheduler:
            try:
                client = Client(self.scheduler, timeout=self.timeout, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise DaskError(
                    f"cannot reach the Dask scheduler at {self.scheduler} ({_clause(exc)}); "
                    "is it running, and is the address right ([dask] scheduler, --scheduler)?"
                ) from None
        else:
            import os

            from distributed import LocalCluster

            self._cluster = LocalCluster(
                n_workers=self.workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            client = Client(self._cluster, set_as_default=False)
        atexit.register(self.close)
        return client

    def close(self) -> None:
        with self._lock:
            client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        for thing in (client, cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # shutting down: nothing more to tell
                    pass

    # -- one stage ----------------------------------------------------------------------------
    def run(self, req: ExecRequest, ctx: ExecContext) -> ExecResult:
        started = time.time()
        if not req.store_url:
            raise DaskError(
                f"stage '{req.stage}': the 'dask' executor needs a shared remote (the workers "
                "share nothing with this machine but the remote)."
            )
        if ctx.cancel.is_set():
            return self._cancelled(req, started)
        client = self.client()
        resources = {k: v for k, v in req.resources.items() if v > 0}
        if resources:
            self._check_resources(client, req.stage, resources)
        future = self._submit(client, req, resources)
        try:
            result = self._wait(client, future, req, ctx, started)
        except ReproError:
            raise
        except Exception as exc:  # the scheduler lost, a result that cannot be read...
            self._cancel_run(client, req.run_id, future)
            why = _task_failure(exc)
            raise DaskError(f"stage '{req.stage}': on the Dask cluster: {why}.") from None
        except BaseException:  # Ctrl-C: stop this stage and every other of the run
            self._cancel_run(client, req.run_id, future)
            raise
        finally:
            future.release()
        if result.exit_code != 0 or result.error:
            with self._lock:
                self._failed.setdefault(req.run_id, req.stage)
            if not ctx.cancel.is_set():  # the rest of the run stops: queued and running stages
                ctx.cancel.set()
                self._cancel_run(client, req.run_id, None)
        return result

    def _submit(self, client: Any, req: ExecRequest, resources: dict[str, float]) -> Any:
        """Submit the stage's task. Stages that become ready together (the runner calls from
        N threads at once) are gathered for a moment and submitted in pipeline order, so when
        the cluster has fewer free threads than `-j`, the first stages of the pipeline start
        first, as they would locally, and not whichever thread came first."""
        slot: dict[str, Any] = {"req": req, "resources": resources}
        with self._lock:
            self._pending.append(slot)
        time.sleep(SUBMIT_WINDOW)
        with self._submit_lock:  # whoever comes first submits the whole batch
            with self._lock:
                batch = sorted(self._pending, key=lambda s: -s["req"].priority)
                self._pending = []
            for s in batch:
                try:
                    s["future"] = client.submit(
                        run_task,
                        s["req"],
                        key=s["req"].signature or None,
                        pure=False,
                        resources=s["resources"] or None,
                        priority=s["req"].priority,
                    )
                except Exception as exc:
                    s["error"] = exc
        if "future" not in slot:  # the batch's submitter failed or was interrupted
            why = _clause(slot["error"]) if "error" in slot else "the submission was interrupted"
            raise DaskError(f"stage '{req.stage}': cannot submit it to the Dask cluster ({why}).")
        return slot["future"]

    def _check_resources(self, client: Any, stage: str, wanted: dict[str, float]) -> None:
        """Refuse a stage no worker of the cluster can take (Dask would queue it forever);
        a cluster with no worker yet (adaptive, scaling up) is given the benefit of the doubt."""
        try:
            workers = client.scheduler_info(n_workers=-1).get("workers") or {}
        except TypeError:  # an older distributed without n_workers
            workers = client.scheduler_info().get("workers") or {}
        except Exception:
            return
        if not workers:
            return
        for info in workers.values():
            have = info.get("resources") or {}
            if all(have.get(k, 0) >= v for k, v in wanted.items()):
                return
        asked = ", ".join(f"{k}={v:g}" for k, v in sorted(wanted.items()))
        raise DaskError(
            f"stage '{stage}' asks for resources {asked}, which no worker of the Dask cluster "
            f'offers (start workers with --resources "{asked.replace(", ", " ")}").'
        )

    def _wait(
        self, client: Any, future: Any, req: ExecRequest, ctx: ExecContext, started: float
    ) -> ExecResult:
        while not future.done():
            if ctx.cancel.is_set():
                self._cancel_run(client, req.run_id, future)
                return self._cancelled(req, started)
            time.sleep(0.05)
        if future.status == "finished":
            result = future.result()
            if isinstance(result, ExecResult):
                return result
            why = f"the task returned {type(result).__name__}, not a result"
        elif future.status == "cancelled":
            return self._cancelled(req, started)
        else:
            exc = future.exception()
            why = _task_failure(exc)
        return ExecResult(1, started, time.time(), error=f"on the Dask cluster: {why}")

    def _cancelled(self, req: ExecRequest, started: float) -> ExecResult:
        with self._lock:
            first = self._failed.get(req.run_id)
        why = f"stage '{first}' failed" if first and first != req.stage else "the run was stopped"
        return ExecResult(130, started, time.time(), error=f"cancelled: {why}")

    def _cancel_run(self, client: Any, run_id: str, future: Any) -> None:
        """Tell every worker running a stage of this run to stop it, and drop what is queued."""
        from distributed import Event

        try:
            Event(cancel_event_name(run_id), client=client).set()
            if future is not None:
                client.cancel([future])
        except Exception:  # the cluster is gone: nothing left to stop there
            pass


def cancel_event_name(run_id: str) -> str:
    return f"repro-cancel-{run_id}"


def _task_failure(exc: BaseException | None) -> str:
    name = type(exc).__name__ if exc is not None else "unknown"
    if name == "KilledWorker":
        return (
            "its workers died while running it too many times (the scheduler's "
            "allowed-failures); see the workers' logs"
        )
    return f"{name}: {_clause(exc) if exc is not None else 'no error given'}"


def _clause(exc: BaseException) -> str:
    from repro.errors import first_line

    return first_line(exc).rstrip(".")


# -- on the worker -----------------------------------------------------------------------------
def run_task(req: ExecRequest) -> ExecResult:
    """The Dask task: run the stage on this worker, in its folder, stoppable through the run's
    cancel event. A stage with an image runs in it through the container executor (the worker
    needs an engine; without one, the result says so)."""
    import os
    import socket

    from distributed import Event, get_client, get_worker

    from repro.execution.worker import run_manifest

    worker = get_worker()
    # The worker's client, made explicit: the event is polled from the watcher's thread,
    # where an Event without one cannot find it.
    event = Event(cancel_event_name(req.run_id), client=get_client())
    executor: Any
    if req.image:
        from repro.execution.container import ContainerExecutor

        try:
            executor = ContainerExecutor({})
        except ReproError as exc:
            now = time.time()
            return ExecResult(1, now, now, error=f"on the worker: {exc.message.rstrip('.')}")
    else:
        from repro.execution.local import LocalExecutor

        executor = LocalExecutor()
    return run_manifest(
        req,
        executor,
        worker=f"dask:{worker.address} ({socket.gethostname()})",
        cancelled=event.is_set,
        base=os.path.join(worker.local_directory, "repro"),
    )


# -- the client's side of the shared remote ----------------------------------------------------
_known_lock = threading.Lock()
_known: dict[str, set[str]] = {}  # remote URL -> object hashes seen there in this process
_stores: dict[tuple[str, str], Any] = {}


def _store(project: Project, remote: str) -> Any:
    from repro.remote import open_remote

    key = (project.root, remote)
    with _known_lock:
        if key in _stores:
            return _stores[key]
    _name, store = open_remote(project, remote)
    with _known_lock:
        return _stores.setdefault(key, store)


def ship_inputs(project: Project, remote: str, paths: list[str]) -> int:
    """Put on `remote` the objects of the project-relative `paths` (files, and folders with
    their trees) that it lacks; returns how many were uploaded. Each object is asked about at
    most once per process."""
    from repro.execution.worker import send
    from repro.remote import remote_errors

    store = _store(project, remote)
    files: dict[str, str] = {}
    trees: dict[str, bytes] = {}
    for rel in sorted(set(paths)):
        r = project.hasher.hash_path(project.abs(rel), files=True)
        if r.is_dir and r.tree is not None:
            trees[r.hash] = r.tree.encode()
            files.update({f.hash: f.abs for f in r.files})
        else:
            files[r.hash] = project.abs(rel)
    url = store.backend.url
    with _known_lock:
        known = set(_known.setdefault(url, set()))
    files = {h: p for h, p in files.items() if h not in known}
    trees = {h: t for h, t in trees.items() if h not in known}
    if not files and not trees:
        return 0
    with remote_errors(remote, url):
        # Packs for the small objects, chunks for large ones: the worker's own sending code.
        sources = {h: _source(project, h, p) for h, p in files.items()}
        sent = send(store, sources, trees, f"stage inputs for remote '{remote}'")
    with _known_lock:
        _known[url].update(files)
        _known[url].update(trees)
    return sent


def _source(project: Project, h: str, path: str) -> str:
    """Where to upload object `h` from: the verified cache copy when there is one (it cannot
    have changed since it was hashed), else the workspace file."""
    try:
        if project.cache.has_verified(h):
            return project.cache.verified_path(h)
    except ReproError:
        pass
    return path


def fetch_results(project: Project, remote: str, result: ExecResult) -> None:
    """Bring the outputs (folders with their files) and logs a worker reported from `remote`
    into the local cache, each verified against its hash. Malformed reports are left for the
    runner's checks (`_take_outs`) to refuse."""
    from repro.fetch import fetch_objects
    from repro.safety import is_hash

    wanted = {h for h in (result.stdout, result.stderr) if is_hash(h)}
    if result.exit_code == 0 and isinstance(result.outs, dict):
        for d in result.outs.values():
            if isinstance(d, dict) and is_hash(d.get("hash")):
                wanted.add(d["hash"])
    if wanted:
        fetch_objects(project, remote, wanted)


MAX_ECHO = 1 << 20  # bytes of a remote stage's log shown on the terminal (all of it is kept)


def log_lines(project: Project, h: str | None) -> list[str]:
    """The lines of a log object a worker stored (fetched already), for the terminal."""
    from repro.safety import is_hash

    if not is_hash(h) or not project.cache.has_verified(h):  # type: ignore[arg-type]
        return []
    try:
        data = project.cache.get_bytes(h)  # type: ignore[arg-type]
    except ReproError:
        return []
    text = data[:MAX_ECHO].decode(errors="replace")
    lines = text.splitlines()
    if len(data) > MAX_ECHO:
        lines.append(f"... ({len(data) - MAX_ECHO} more bytes kept in the run's log)")
    return lines
