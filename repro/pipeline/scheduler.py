"""The order of a run: stages in dependency order, independent ones in parallel with
`jobs > 1`; tracked data and images settled first, `repro.lock` written once at the end.

A part of `repro.pipeline.runner.Runner` (a mixin: it uses the run's shared state)."""

from __future__ import annotations

import time
from typing import Any

from repro.enums import DONE
from repro.lockfile import Lock, load_lock, save_lock
from repro.pipeline.outcome import RunResult
from repro.pipeline.status import (
    lock_entry,
    select,
)


class Scheduler:
    """Running the chosen stages in order, then writing the lock."""

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
            if o.status in DONE and o.inputs is not None:
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
