"""The per-stage decision of a run: skipped (an upstream failed), up to date, restored from
the local or remote run cache, or run; and what observers are told about it.

A part of `repro.pipeline.runner.Runner` (a mixin: it uses the run's shared state)."""

from __future__ import annotations

import os
import time

from repro.enums import NOT_DONE, Outcome, ReasonKind
from repro.errors import PathError, ReproError, SpecError
from repro.pipeline import runcache
from repro.pipeline.outcome import StageOutcome, _warn
from repro.pipeline.probes import Probes
from repro.pipeline.signature import StageInputs, compute_inputs
from repro.pipeline.spec import Stage
from repro.pipeline.status import (
    Reason,
    as_upstream,
    image_digest,
    input_reasons,
    output_reasons,
    plan_inputs,
    recorded_paths,
    relative_message,
)
from repro.workspace import (
    CheckoutReport,
    PathHash,
    check_out,
)


class StageDecision:
    """Deciding, for one stage, what this run does with it."""

    @property
    def _probes(self) -> Probes:
        """What the planner may ask of the Docker engine: a run that has images to run asks
        it what they hold (the planner itself is handed these, never imports them)."""
        from repro.execution.images import docker_probes

        return docker_probes()

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
            checks=out.checks,
        )
        return out

    # -- one stage --------------------------------------------------------------------------
    def process(self, name: str) -> StageOutcome:
        stage = self.spec.stages[name]
        t0 = time.perf_counter()
        ups = [u for u in self.graph.upstream[name] if u in self.outcomes]
        bad = [u for u in ups if self.outcomes[u].status in NOT_DONE]
        if bad:
            return StageOutcome(
                name, Outcome.SKIPPED, message=f"upstream stage '{bad[0]}' did not complete"
            )
        if self.dry_run and any(
            self.outcomes[u].status in (Outcome.RAN, Outcome.RESTORED) for u in ups
        ):
            return StageOutcome(
                name,
                Outcome.RAN,
                reasons=[
                    Reason(ReasonKind.UPSTREAM, u)
                    for u in ups
                    if self.outcomes[u].status == Outcome.RAN
                ],
            )
        entry = self.lock.stages.get(name)
        if stage.frozen and not self.force and entry:  # never ran: run it once (status: new)
            return StageOutcome(name, Outcome.UP_TO_DATE, entry.get("signature"))
        try:
            inputs = self._inputs(stage)
        except (PathError, SpecError) as exc:
            return StageOutcome(
                name, Outcome.FAILED, message=relative_message(self.project, exc.message)
            )
        except ReproError as exc:  # content a dependency needs is in no cache that was asked
            return StageOutcome(name, Outcome.FAILED, message=exc.message)
        reasons = as_upstream(self.spec, self.graph, name, input_reasons(stage, inputs, entry))
        if stage.always_changed:
            reasons.append(Reason(ReasonKind.CMD, "always_changed"))
        if not reasons and entry:
            reasons = output_reasons(self.project, entry)
        out = StageOutcome(
            name, Outcome.UP_TO_DATE, inputs.signature, reasons=reasons, inputs=inputs
        )
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
                out.status = Outcome.RESTORED
                if not self.dry_run:
                    self._restore(stage, hit)
                    out.outs = hit.outs
                out.seconds = time.perf_counter() - t0
                return out
        out.status = Outcome.RAN
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
            inputs, _missing = plan_inputs(self.project, stage, self.lock, image, self._probes)
            if inputs is not None:
                return inputs
        else:
            self._put_back_deps(stage)
        return compute_inputs(self.project, stage, image, self._probes)

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
        from repro.fetch import fetch_run
        from repro.remote import RemoteError

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
                f"run-cache entry {runcache.runcache_key(hit.signature)} is for stage "
                f"'{hit.stage}', not '{stage.name}'; refusing it and running instead"
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
