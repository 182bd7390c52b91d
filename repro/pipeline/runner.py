"""`repro run`: bring the pipeline (or the named stages and what they need) up to date.

For each stage in order: sign its current inputs; if they match `repro.lock` and the outputs are
intact, it is up to date; else, if the run cache holds the signature, put the outputs back from
the cache without running (`restored`); else run the command, check its declared outputs, store
them, and write the run-cache entry. A failing stage records nothing and stops its downstream
stages. `repro.lock` is written once, atomically, at the end: an interrupted run leaves it as it
was. Independent stages run in parallel with `jobs > 1`.

`Runner` holds a run's shared state; its parts live beside it: `scheduler` (order, parallelism,
the lock), `decide` (what the run does with one stage), `stageexec` (running one stage) and
`outcome` (what is reported).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import IO, Any

from repro.enums import Outcome
from repro.execution.base import Executor
from repro.lockfile import Lock, load_lock
from repro.observers import Reporter
from repro.pipeline.decide import StageDecision
from repro.pipeline.graph import Graph, build_graph
from repro.pipeline.outcome import RunResult, StageOutcome
from repro.pipeline.scheduler import Scheduler
from repro.pipeline.spec import Spec, load_spec
from repro.pipeline.stageexec import StageExecution
from repro.progress import ProgressFactory
from repro.project import Project
from repro.records import new_run_id  # lived here; `repro add` needs it too


class Runner(Scheduler, StageDecision, StageExecution):
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
    reporter: Reporter | None = None,
    progress: ProgressFactory | None = None,
) -> RunResult:
    """Run the pipeline (Python API of `repro run`). `executor`: an executor's name (as
    `--executor`) or an object to run every stage with. `reporter`: told about the run as it
    happens (default: the observers `[observe] use` names; a dry run tells nobody).
    `progress`: makes a display of caching each stage's outputs (hash, then store), used only
    when one stage runs at a time (`jobs` 1), after the stage's own output."""
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
        runner.progress = progress if jobs == 1 else None
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

    failed = any(s.status == Outcome.FAILED for s in result.stages)
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
            checks=s.checks,
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
