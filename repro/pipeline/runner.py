"""`repro run`: bring the pipeline (or the named stages and what they need) up to date.

For each stage in order: sign its current inputs; if they match `repro.lock` and the outputs are
intact, it is up to date; else, if the run cache holds the signature, put the outputs back from
the cache without running (`restored`); else run the command, check its declared outputs, store
them, and write the run-cache entry. A failing stage records nothing and stops its downstream
stages. `repro.lock` is written once, atomically, at the end: an interrupted run leaves it as it
was. Independent stages run in parallel with `jobs > 1`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from repro.errors import PathError, ReproError, SpecError
from repro.execution.base import ExecContext, ExecRequest, ExecResult, Executor, echo_to
from repro.gitignore import ensure_ignored, git_tracked
from repro.lockfile import Lock, load_lock, save_lock
from repro.observers import Reporter
from repro.pipeline import runcache
from repro.pipeline.graph import Graph, build_graph
from repro.pipeline.signature import StageInputs, compute_inputs
from repro.pipeline.spec import Spec, Stage, load_spec
from repro.pipeline.status import (
    Reason,
    as_upstream,
    image_digest,
    input_reasons,
    lock_entry,
    output_reasons,
    plan_inputs,
    recorded_paths,
    relative_message,
    select,
)
from repro.project import Project
from repro.safety import is_hash
from repro.seeds import stage_env
from repro.workspace import (
    CheckoutReport,
    PathHash,
    check_in,
    check_out,
    remove_path,
    save_before_overwrite,
)


@dataclass
class StageOutcome:
    name: str
    status: str  # ran | restored | up-to-date | failed | skipped
    signature: str | None = None
    seconds: float = 0.0
    exit_code: int | None = None
    reasons: list[Reason] = field(default_factory=list)
    message: str | None = None
    stdout: str | None = None  # object hash of the kept stdout
    stderr: str | None = None
    outs: dict[str, PathHash] = field(default_factory=dict)
    inputs: StageInputs | None = None
    verified: bool | None = None
    mismatches: list[str] = field(default_factory=list)
    executor: str | None = None  # the executor that ran the command, and where it ran
    worker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "status": self.status, "signature": self.signature}
        if self.verified is not None:
            d["verified"] = self.verified
            d["mismatches"] = self.mismatches
        if self.message:
            d["message"] = self.message
        return d


@dataclass
class RunResult:
    run_id: str
    stages: list[StageOutcome]
    started: float
    ended: float
    dry_run: bool = False
    snapshot: str | None = None
    data: list[Any] = field(default_factory=list)  # repro.data.DataChange: tracked data taken

    @property
    def ok(self) -> bool:
        return all(s.status not in ("failed", "skipped") for s in self.stages) and all(
            s.verified is not False for s in self.stages
        )

    def to_dict(self) -> dict[str, Any]:
        d = {
            "snapshot": self.snapshot,
            "run_id": self.run_id,
            "stages": [s.to_dict() for s in self.stages],
            "data": [c.to_dict() for c in self.data],
        }
        if self.dry_run:
            d["dry_run"] = True
        return d


def _warn(text: str) -> None:
    import sys

    sys.stderr.write(f"warning: {text}\n")
    sys.stderr.flush()


def new_run_id(now: float | None = None) -> str:
    """Sortable by time: UTC timestamp to the millisecond, then randomness."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}{int(now * 1000) % 1000:03d}Z-{os.urandom(3).hex()}"


def _unprotect(path: str) -> None:
    """Give a persisted output its own writable inodes (it may share them with the cache)."""
    paths = (
        [path]
        if os.path.isfile(path)
        else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    )
    for p in paths:
        st = os.stat(p)
        if st.st_nlink > 1 or not st.st_mode & 0o200:
            tmp = p + ".repro-unprotect"
            shutil.copyfile(p, tmp)
            os.chmod(tmp, (st.st_mode & 0o777) | 0o200)
            os.replace(tmp, p)


class Runner:
    """One run over one project. Use `run()`; the class keeps the shared state of a run."""

    def __init__(
        self,
        project: Project,
        *,
        force: bool = False,
        dry_run: bool = False,
        jobs: int = 1,
        echo: IO[str] | None = None,
        executor: Executor | str | None = None,
        verify: bool = False,
        use_remote: bool = True,
        reporter: Reporter | None = None,
    ) -> None:
        self.project = project
        self.force = force
        self.dry_run = dry_run
        self.jobs = max(1, jobs)
        self.echo = echo
        self.verify = verify
        from repro.remote import default_remote_name

        self.remote = default_remote_name(project) if use_remote else None
        self.run_id = new_run_id()
        self.cancel = threading.Event()
        self.spec: Spec = load_spec(project)
        self.graph: Graph = build_graph(self.spec, project.root, check_missing=not verify)
        self.lock: Lock = load_lock(project.lock_path)
        self.outcomes: dict[str, StageOutcome] = {}
        self.data_changes: list[Any] = []
        # An Executor object (Python API), or a name (`--executor`); see executor_for.
        self._executor = None if isinstance(executor, str) else executor
        self._executor_name = executor if isinstance(executor, str) else None
        self._executors: dict[str, Executor] = {}
        self.config = project.config
        self.reporter = reporter if reporter is not None else Reporter()
        self.git_commit: Callable[[], str | None] = lambda: None
        self._announced: set[str] = set()
        self.announced_run = False
        self._log_dir = os.path.join(project.tmp_dir, "logs", self.run_id)
        self._lock = threading.Lock()

    # -- executors --------------------------------------------------------------------------
    def executor_choice(self, stage: Stage) -> tuple[str, str]:
        """(executor name, where the choice came from). The stage's own `executor:` key (a
        requirement of the stage) wins over `--executor`, which wins over `[run] executor`;
        without any, a stage with an image runs in a container, others locally."""
        if stage.executor:
            line = f", line {stage.line}" if stage.line else ""
            return stage.executor, f"{self.spec.path}{line}: stage '{stage.name}', key 'executor'"
        if self._executor_name:
            return self._executor_name, "--executor"
        configured = (self.config.get("run") or {}).get("executor")
        if configured:
            return configured, ".repro/config.toml: key 'run.executor'"
        return ("container" if stage.image else "local"), f"stage '{stage.name}'"

    def check_executors(self, names: list[str]) -> None:
        """Refuse, before anything runs or is written, a chosen executor that names nothing
        (plug-ins are imported only when a stage needs them)."""
        from repro.execution.registry import check_name

        if self._executor is None:
            for n in names:
                check_name(*self.executor_choice(self.spec.stages[n]))

    def executor_for(self, stage: Stage) -> tuple[str, Executor]:
        from repro.execution.registry import executor_name, load_executor

        if self._executor is not None:
            return executor_name(self._executor), self._executor
        name, source = self.executor_choice(stage)
        with self._lock:  # one instance per executor per run, made on first use
            if name not in self._executors:
                table = (self.config.get("run") or {}).get(name)
                self._executors[name] = load_executor(
                    name, source, table if isinstance(table, dict) else {}
                )
            return name, self._executors[name]

    # -- what observers are told ------------------------------------------------------------
    def _announce(self, name: str, signature: str | None, reasons: list[Reason]) -> None:
        if name not in self._announced:
            self._announced.add(name)
            self.reporter.stage_started(name, signature, [r.to_dict() for r in reasons])

    def _observed(self, name: str) -> StageOutcome:
        """`process`, told to the reporter: started (at the latest now), then finished."""
        out = self.process(name)
        self._announce(name, out.signature, out.reasons)
        self.reporter.stage_finished(
            name,
            out.status,
            out.signature,
            round(out.seconds, 6),
            out.exit_code,
            out.executor,
            {p: h.hash for p, h in out.outs.items()},
        )
        return out

    # -- one stage --------------------------------------------------------------------------
    def process(self, name: str) -> StageOutcome:
        stage = self.spec.stages[name]
        t0 = time.perf_counter()
        ups = [u for u in self.graph.upstream[name] if u in self.outcomes]
        bad = [u for u in ups if self.outcomes[u].status in ("failed", "skipped")]
        if bad:
            return StageOutcome(
                name, "skipped", message=f"upstream stage '{bad[0]}' did not complete"
            )
        if self.dry_run and any(self.outcomes[u].status in ("ran", "restored") for u in ups):
            return StageOutcome(
                name,
                "ran",
                reasons=[Reason("upstream", u) for u in ups if self.outcomes[u].status in ("ran",)],
            )
        entry = self.lock.stages.get(name)
        if stage.frozen and not self.force and entry:  # never ran: run it once (status: new)
            return StageOutcome(name, "up-to-date", entry.get("signature"))
        try:
            inputs = self._inputs(stage)
        except (PathError, SpecError) as exc:
            return StageOutcome(name, "failed", message=relative_message(self.project, exc.message))
        except ReproError as exc:  # content a dependency needs is in no cache that was asked
            return StageOutcome(name, "failed", message=exc.message)
        reasons = as_upstream(self.spec, self.graph, name, input_reasons(stage, inputs, entry))
        if stage.always_changed:
            reasons.append(Reason("cmd", "always_changed"))
        if not reasons and entry:
            reasons = output_reasons(self.project, entry)
        out = StageOutcome(name, "up-to-date", inputs.signature, reasons=reasons, inputs=inputs)
        self._announce(name, inputs.signature, reasons)
        if self.verify:
            return self._verify(stage, inputs, out, t0)
        if not reasons and not self.force:
            if entry:
                out.outs = {p: PathHash.from_dict(d) for p, d in (entry.get("outs") or {}).items()}
            return out
        if not self.force and not stage.always_changed:
            hit = runcache.get_entry(self.project.cache.backend, inputs.signature)
            if (hit is None or not self._restorable(stage, hit)) and self.remote:
                hit = self._remote_hit(stage, inputs.signature)
            if hit is not None and self._restorable(stage, hit):
                out.status = "restored"
                if not self.dry_run:
                    self._restore(stage, hit)
                    out.outs = hit.outs
                out.seconds = time.perf_counter() - t0
                return out
        out.status = "ran"
        if self.dry_run:
            return out
        self._execute(stage, inputs, out)
        out.seconds = time.perf_counter() - t0
        return out

    def _inputs(self, stage: Stage) -> StageInputs:
        """The stage's current inputs. A dependency absent from the workspace that repro.lock
        records (tracked data, an output of a stage not run now) is put back first, fetched
        from the default remote when the cache lacks it; a dry run fetches nothing and signs
        what the lock recorded for it."""
        image = image_digest(self.lock, stage)
        if self.dry_run:
            inputs, _missing = plan_inputs(self.project, stage, self.lock, image)
            if inputs is not None:
                return inputs
        else:
            self._put_back_deps(stage)
        return compute_inputs(self.project, stage, image)

    def _put_back_deps(self, stage: Stage) -> None:
        from repro.data import ensure_local

        recorded = recorded_paths(self.lock)
        todo = {
            rel: recorded[rel]
            for rel in stage.deps
            if rel in recorded and not os.path.lexists(self.project.abs(rel))
        }
        if not todo:
            return
        ensure_local(self.project, todo, self.remote)
        for rel, d in sorted(todo.items()):
            check_out(self.project, rel, PathHash.from_dict(d))

    def _remote_hit(self, stage: Stage, signature: str) -> runcache.RunCacheEntry | None:
        """The default remote's run-cache entry for `signature`, or None. A remote that cannot
        be reached is reported once (one line on stderr) and not asked again in this run."""
        from repro.remote import RemoteError
        from repro.transfer import fetch_run

        remote = self.remote
        if remote is None:
            return None
        try:
            return fetch_run(self.project, signature, remote)
        except RemoteError as exc:
            with self._lock:
                if self.remote is not None:
                    self.remote = None
                    _warn(f"{exc.message.rstrip('.')}; running locally.")
        except ReproError as exc:
            _warn(f"stage '{stage.name}': {exc.message.rstrip('.')}; running it locally.")
        return None

    def _restorable(self, stage: Stage, hit: runcache.RunCacheEntry) -> bool:
        """Whether `hit` answers this stage and every output it names is intact in the cache
        (verified, not merely present: a corrupt object means running instead)."""
        if hit.stage != stage.name:
            runcache.warn(
                f"run-cache entry runs/{hit.signature} is for stage '{hit.stage}', not "
                f"'{stage.name}'; refusing it and running instead"
            )
            return False
        if sorted(hit.outs) != sorted(stage.out_paths):
            return False
        cache = self.project.cache
        for o in stage.outs:
            h = hit.outs[o.path]
            if o.cache:
                if not cache.has_verified(h.hash):
                    return False
                if h.isdir:
                    try:
                        tree = cache.get_tree(h.hash)
                    except ReproError:
                        return False
                    inner = {e.hash for e in tree.entries}
                    if cache.verified_set(inner) != inner:
                        return False
            else:
                p = self.project.abs(o.path)
                if not os.path.lexists(p) or self.project.hasher.hash_path(p).hash != h.hash:
                    return False
        return True

    def _restore(self, stage: Stage, hit: runcache.RunCacheEntry) -> None:
        report = CheckoutReport()
        for o in stage.outs:
            if o.cache:
                check_out(self.project, o.path, hit.outs[o.path], report=report)
        self._ignore(stage)

    def _ignore(self, stage: Stage) -> None:
        with self._lock:
            ensure_ignored(self.project.root, [o.path for o in stage.outs if o.cache])

    def _prepare_outputs(self, stage: Stage) -> None:
        """Make room for the command's outputs: save what the cache lacks, then remove them.
        Refuses (before touching anything) an output that git tracks or that lies behind a
        symlink leading out of the project: removing it would delete what is not repro's."""
        source = f"repro.yaml: stage '{stage.name}', key 'outs'"
        # Outputs with `cache: false` are meant to live in git (DVC's metrics files): allowed.
        tracked = git_tracked(self.project.root, [o.path for o in stage.outs if o.cache])
        if tracked:
            raise PathError(
                f"{source}: output '{sorted(tracked)[0]}' is tracked by git; repro would "
                "delete it before running the stage. Declare it as a dependency, or "
                "'git rm --cached' it first."
            )
        for o in stage.outs:
            self.project.boundary.check_write(self.project.abs(o.path), source)
        report = CheckoutReport()
        for o in stage.outs:
            p = self.project.abs(o.path)
            self.project.hasher.invalidate(p)
            if os.path.lexists(p):
                save_before_overwrite(self.project, o.path, report)
                if o.persist:
                    _unprotect(p)
                else:
                    remove_path(p)
                self.project.hasher.invalidate(p)
            os.makedirs(os.path.dirname(p), exist_ok=True)

    def _exec(self, stage: Stage, out: StageOutcome) -> bool:
        """Run the command; True when it succeeded and produced every declared output."""
        os.makedirs(self._log_dir, exist_ok=True)
        cwd = self.project.abs(stage.wdir) if stage.wdir != "." else self.project.root
        if not os.path.isdir(cwd):
            out.status, out.message = "failed", f"working dir '{stage.wdir}' does not exist"
            return False
        req = self._request(stage, out.inputs)
        safe = stage.name.replace("/", "_")
        ctx = ExecContext(
            root=self.project.root,
            stdout_path=os.path.join(self._log_dir, f"{safe}.out"),
            stderr_path=os.path.join(self._log_dir, f"{safe}.err"),
            cancel=self.cancel,
            echo=echo_to(self.echo, f"[{stage.name}] " if self.jobs > 1 else ""),
        )
        if self.echo is not None:
            from repro.execution.base import echo_line

            echo_line(self.echo, "", f"Running stage '{stage.name}':\n> {stage.cmd}")
        try:
            out.executor, executor = self.executor_for(stage)
            result = executor.run(req, ctx)
        except ReproError as exc:
            out.status, out.message = "failed", exc.message
            return False
        out.exit_code = result.exit_code
        out.seconds = result.seconds
        out.worker = result.worker if isinstance(result.worker, str) else None
        out.stdout = self._log_of(result.stdout, result.stdout_path or ctx.stdout_path)
        out.stderr = self._log_of(result.stderr, result.stderr_path or ctx.stderr_path)
        if result.error:
            out.status, out.message = "failed", f"stage '{stage.name}': {result.error}"
            return False
        if result.exit_code != 0:
            out.status = "failed"
            out.message = (
                f"stage '{stage.name}' failed: its command exited with code {result.exit_code}"
            )
            return False
        if result.outs is not None and not self._take_outs(stage, out, result):
            return False
        for o in stage.outs:
            self.project.hasher.invalidate(self.project.abs(o.path))
        missing = [o.path for o in stage.outs if not os.path.lexists(self.project.abs(o.path))]
        if missing:
            out.status = "failed"
            out.message = f"stage '{stage.name}' did not produce its declared output '{missing[0]}'"
            return False
        return True

    def _request(self, stage: Stage, inputs: StageInputs | None) -> ExecRequest:
        """What to run, as it can be sent elsewhere: the stage's declared environment (its seed,
        its `env:` variables as set here), never the whole environment of this process."""
        declared = {k: os.environ[k] for k in stage.env if k in os.environ}
        url = None
        if self.remote:
            remote = (self.config.get("remote") or {}).get(self.remote) or {}
            url = remote.get("url") if isinstance(remote.get("url"), str) else None
        return ExecRequest(
            stage=stage.name,
            cmd=stage.cmd,
            wdir=stage.wdir,
            env={**declared, **stage_env(stage.seed), "REPRO_STAGE": stage.name},
            seed=stage.seed,
            deps={p: h.hash for p, h in inputs.deps.items()} if inputs else {},
            outs=tuple(stage.out_paths),
            image=inputs.image if inputs else image_digest(self.lock, stage),
            network=stage.network,
            store_url=url,
            run_id=self.run_id,
        )

    def _log_of(self, stored: str | None, path: str) -> str | None:
        """The log's object: the one the executor stored (when the cache holds it), else the
        local file's."""
        if stored is not None and is_hash(stored) and self.project.cache.has_verified(stored):
            return stored
        return self._keep_log(path)

    def _take_outs(self, stage: Stage, out: StageOutcome, result: ExecResult) -> bool:
        """Outputs the executor stored itself: checked like any record from outside (declared
        paths, real hashes, content in the cache), then put into the workspace."""
        from repro.safety import safe_path_hash

        source = f"executor '{out.executor}', stage '{stage.name}'"
        reported = result.outs or {}
        try:
            if not isinstance(reported, dict) or sorted(reported) != sorted(stage.out_paths):
                raise ReproError(f"{source}: reported other outputs than the stage declares.")
            outs = {
                p: PathHash.from_dict(safe_path_hash(reported[p], source, f"outs[{p!r}]"))
                for p in stage.out_paths
            }
            report = CheckoutReport()
            for o in stage.outs:
                if o.cache:
                    if not self.project.cache.has_verified(outs[o.path].hash):
                        h = outs[o.path].hash
                        raise ReproError(f"{source}: output '{o.path}' ({h}) is not in the cache.")
                    check_out(self.project, o.path, outs[o.path], report=report)
        except ReproError as exc:
            out.status, out.message = "failed", exc.message
            return False
        out.outs = outs
        return True

    def _keep_log(self, path: str) -> str | None:
        if not os.path.exists(path):
            return None
        from repro.hashing.filehash import hash_file

        h = hash_file(path)
        self.project.cache.put_file(path, h)
        return h

    def _hash_outputs(self, stage: Stage, link: bool) -> dict[str, PathHash]:
        outs = {}
        for o in stage.outs:
            r = self.project.hasher.hash_path(self.project.abs(o.path), files=True)
            if o.cache:
                check_in(self.project, r, link=link)
            outs[o.path] = PathHash.of(r)
        return outs

    def _execute(self, stage: Stage, inputs: StageInputs, out: StageOutcome) -> None:
        try:
            self._prepare_outputs(stage)
        except ReproError as exc:
            out.status, out.message = "failed", exc.message
            return
        if not self._exec(stage, out):
            return
        if not out.outs:  # the executor stored none itself
            out.outs = self._hash_outputs(stage, link=True)
        runcache.put_entry(
            self.project.cache.backend, inputs.signature, stage.name, out.outs, self.run_id
        )
        self._ignore(stage)

    def _verify(
        self, stage: Stage, inputs: StageInputs, out: StageOutcome, t0: float
    ) -> StageOutcome:
        """Rerun a stage whose result is recorded and compare outputs byte for byte."""
        hit = runcache.get_entry(self.project.cache.backend, inputs.signature)
        if hit is None:
            out.status = "failed"
            out.message = (
                f"stage '{stage.name}' has no recorded result for its current inputs; "
                "run it first, then verify"
            )
            return out
        self._prepare_outputs(stage)
        out.status = "ran"
        if not self._exec(stage, out):
            return out
        new = self._hash_outputs(stage, link=False)
        out.mismatches = sorted(p for p, h in new.items() if h.hash != hit.outs[p].hash)
        out.verified = not out.mismatches
        out.outs = hit.outs
        # Put the recorded outputs back; differing new ones are saved to the cache first.
        report = CheckoutReport()
        for o in stage.outs:
            if o.cache:
                check_out(self.project, o.path, hit.outs[o.path], report=report)
        out.seconds = time.perf_counter() - t0
        return out

    # -- the whole run ----------------------------------------------------------------------
    def run(self, targets: list[str] | None = None, downstream: bool = False) -> RunResult:
        started = time.time()
        names = select(self.graph, targets, downstream)
        if self.verify:
            names = [n for n in names if not targets or n in targets]
        self.check_executors(names)
        self.reporter.run_started(self.run_id, self.project.root, targets or [], self.git_commit)
        self.announced_run = True
        if not self.dry_run:
            self._lock_images(names)
        self.data_changes = self._refresh_data(names, targets)
        if self.jobs == 1:
            try:  # in order, in this thread: Ctrl-C reaches the executor directly
                for n in names:
                    self.outcomes[n] = self._observed(n)
            except BaseException:
                self.cancel.set()
                raise
        else:
            self._run_parallel(names)
        result = RunResult(
            self.run_id, [self.outcomes[n] for n in names], started, time.time(), self.dry_run
        )
        result.data = self.data_changes
        if not self.dry_run and not self.verify:
            self._write_lock(result, full=not targets)
        return result

    def _run_parallel(self, names: list[str]) -> None:
        """Up to `jobs` stages at once, each as soon as the stages it needs are done."""
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        pending = {n: {u for u in self.graph.upstream[n] if u in names} for n in names}
        ready = [n for n in names if not pending[n]]
        futures: dict[Future, str] = {}
        pool = ThreadPoolExecutor(self.jobs)
        try:
            while ready or futures:
                while ready and len(futures) < self.jobs:
                    n = ready.pop(0)
                    futures[pool.submit(self._observed, n)] = n
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=lambda f: names.index(futures[f])):
                    n = futures.pop(f)
                    self.outcomes[n] = f.result()
                    children = [c for c in self.graph.downstream[n] if c in pending]
                    for child in sorted(children, key=names.index):
                        pending[child].discard(n)
                        if (
                            not pending[child]
                            and child not in self.outcomes
                            and child not in futures.values()
                            and child not in ready
                        ):
                            ready.append(child)
        except BaseException:
            self.cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _refresh_data(self, names: list[str], targets: list[str] | None) -> list[Any]:
        """Tracked data first (all of it, or what the chosen stages read): an edited path
        becomes the recorded version, an absent one is put back (fetched when needed)."""
        if self.verify:
            return []
        from repro.data import refresh_data
        from repro.pipeline.status import data_paths

        paths = data_paths(self.spec, names, targets)
        return refresh_data(self.project, self.lock, paths, self.dry_run, self.remote)

    def _lock_images(self, names: list[str]) -> None:
        """Resolve image tags not yet in repro.lock (once); locked ones are never re-resolved."""
        from repro.execution.images import is_pinned, resolve

        for name in names:
            ref = self.spec.stages[name].image
            if ref and not is_pinned(ref) and ref not in self.lock.images:
                self.lock.images[ref] = resolve(ref, stage=name)

    def _write_lock(self, result: RunResult, full: bool) -> None:
        lock = load_lock(self.project.lock_path)  # re-read: only our stages change
        for c in result.data:
            if c.action in ("updated", "added"):
                lock.data[c.path] = c.hash.to_dict()
        for o in result.stages:
            if o.status in ("ran", "restored", "up-to-date") and o.inputs is not None:
                lock.stages[o.name] = lock_entry(o.inputs, self.spec.stages[o.name], o.outs)
        if full and result.ok:  # a failed run must not drop entries: it proved nothing
            for name in list(lock.stages):
                if name not in self.spec.stages:
                    del lock.stages[name]
        for st in self.spec.stages.values():
            if st.image and st.image in self.lock.images:
                lock.images[st.image] = self.lock.images[st.image]
        try:
            with open(self.project.lock_path) as f:
                before = f.read()
        except FileNotFoundError:
            before = Lock().to_json()  # no lock and nothing to record: write none
        if before != lock.to_json():
            save_lock(self.project.lock_path, lock)


def run(
    project: Project,
    targets: list[str] | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
    jobs: int = 1,
    downstream: bool = False,
    echo: IO[str] | None = None,
    wait_lock: float = 0.0,
    verify: bool = False,
    executor: Executor | str | None = None,
    use_remote: bool = True,
    push: bool = False,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run the pipeline (Python API of `repro run`). `executor`: an executor's name (as
    `--executor`) or an object to run every stage with. `reporter`: told about the run as it
    happens (default: the observers `[observe] use` names; a dry run tells nobody)."""
    from repro.pipeline.runlock import run_lock

    ctx = contextlib.nullcontext() if dry_run else run_lock(project.dot, wait_lock)
    with ctx, project.hasher.session():
        # Planned under the lock: after a wait, repro.lock is what the run waited for made.
        runner = Runner(
            project,
            force=force,
            dry_run=dry_run,
            jobs=jobs,
            echo=echo,
            executor=executor,
            verify=verify,
            use_remote=use_remote,
            reporter=reporter if reporter is not None or dry_run else _observers(project),
        )
        from repro.records import GitStateLater

        git = None if dry_run else GitStateLater(project.root)
        if git is not None:
            runner.git_commit = lambda: git.result()[0]
        try:
            result = runner.run(targets, downstream)
            if git is not None:
                _record(project, runner, result, "verify" if verify else "run", git.result())
        except BaseException:
            if runner.announced_run:
                stages = {n: o.status for n, o in runner.outcomes.items()}
                runner.reporter.run_finished(None, "failed", stages)
            raise
        runner.reporter.run_finished(
            result.snapshot,
            "ok" if result.ok else "failed",
            {s.name: s.status for s in result.stages},
        )
    if push and not dry_run:
        from repro.transfer import push as push_cache

        push_cache(project)
    return result


def _observers(project: Project) -> Reporter:
    from repro.observers import from_config

    return from_config(project.config, project.root)


def _record(
    project: Project,
    runner: Runner,
    result: RunResult,
    kind: str,
    git: tuple[str | None, bool | None] | None = None,
) -> None:
    """Snapshot the state (when no stage failed) and write the run record (always)."""
    from repro.records import StageRecord, headline_metrics, make_record, save_record
    from repro.snapshots import record_snapshot

    failed = any(s.status == "failed" for s in result.stages)
    if not failed and kind == "run":
        result.snapshot = record_snapshot(project)
    stages = [
        StageRecord(
            s.name,
            s.status,
            s.signature,
            round(s.seconds, 6),
            s.exit_code,
            s.stdout,
            s.stderr,
            [r.to_dict() for r in s.reasons],
            s.message,
            executor=s.executor,
            worker=s.worker,
        )
        for s in result.stages
    ]
    metric_paths = [o.path for st in runner.spec.stages.values() for o in st.outs if o.metric]
    rec = make_record(
        project,
        result.run_id,
        kind,
        result.started,
        result.ended,
        result.snapshot,
        "ok" if result.ok else "failed",
        stages,
        headline_metrics(project, metric_paths),
        git,
    )
    save_record(project.cache.backend, rec)


__all__ = ["RunResult", "Runner", "StageOutcome", "run"]
