"""Running one stage: choosing its executor, preparing its outputs, executing it, taking
and storing what it made, keeping its logs, and checking a `--verify` rerun.

A part of `repro.pipeline.runner.Runner` (a mixin: it uses the run's shared state)."""

from __future__ import annotations

import os
import time
from typing import Any

from repro.enums import Outcome
from repro.errors import PathError, ReproError
from repro.execution.base import ExecContext, ExecRequest, ExecResult, Executor, echo_to
from repro.gitignore import ensure_ignored, git_tracked
from repro.pipeline import runcache
from repro.pipeline.outcome import StageOutcome, _unprotect, _warn
from repro.pipeline.signature import StageInputs
from repro.pipeline.spec import Stage
from repro.pipeline.status import (
    image_digest,
)
from repro.progress import ProgressFactory
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


def needs_remote_error(source: str) -> ReproError:
    """The `dask` executor chosen without a shared remote (one sentence naming the choice)."""
    from repro.errors import UsageError

    return UsageError(
        f"{source}: the 'dask' executor needs a shared remote, since its workers share "
        "nothing with this machine but the remote; set one with 'repro remote add NAME URL "
        "--default' (and drop --no-remote)."
    )


class StageExecution:
    """Executing one stage and taking its outputs."""

    # Makes the display of caching a stage's outputs (hash, then store), set by the run when a
    # person watches and one stage runs at a time; None: nothing shown.
    progress: ProgressFactory | None = None

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
                name, source = self.executor_choice(self.spec.stages[n])
                check_name(name, source)
                if name == "dask" and not self.remote:
                    raise needs_remote_error(source)

    def executor_for(self, stage: Stage) -> tuple[str, Executor]:
        from repro.execution.registry import executor_name, load_executor

        if self._executor is not None:
            return executor_name(self._executor), self._executor
        name, source = self.executor_choice(stage)
        with self._lock:  # one instance per executor per run, made on first use
            if name not in self._executors:
                table = (self.config.get("run") or {}).get(name)
                table = table if isinstance(table, dict) else {}
                if name == "dask":  # `[dask]` (and `--scheduler`) under the `[run.dask]` table
                    table = {**(self.config.get("dask") or {}), **table}
                self._executors[name] = load_executor(name, source, table)
            return name, self._executors[name]

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
            out.status, out.message = Outcome.FAILED, f"working dir '{stage.wdir}' does not exist"
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
            remote = getattr(executor, "needs_remote", False) is True
            if remote:
                self._ship_inputs(stage, req)
            result = executor.run(req, ctx)
            if remote:
                self._fetch_results(result, ctx)
        except ReproError as exc:
            out.status, out.message = Outcome.FAILED, exc.message
            return False
        out.exit_code = result.exit_code
        out.seconds = result.seconds
        out.worker = result.worker if isinstance(result.worker, str) else None
        out.stdout = self._log_of(result.stdout, result.stdout_path or ctx.stdout_path)
        out.stderr = self._log_of(result.stderr, result.stderr_path or ctx.stderr_path)
        if result.error:
            out.status, out.message = Outcome.FAILED, f"stage '{stage.name}': {result.error}"
            return False
        if result.exit_code != 0:
            out.status = Outcome.FAILED
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
            out.status = Outcome.FAILED
            out.message = f"stage '{stage.name}' did not produce its declared output '{missing[0]}'"
            return False
        return True

    def _ship_inputs(self, stage: Stage, req: ExecRequest) -> None:
        """Before an executor that runs elsewhere (its workers share only the remote): put the
        objects of the stage's inputs on the remote, only those it lacks."""
        from repro.execution.dask import ship_inputs

        if not self.remote:
            raise ReproError(f"stage '{stage.name}': its executor needs a shared remote.")
        ship_inputs(self.project, self.remote, [*req.deps, *req.files])

    def _fetch_results(self, result: ExecResult, ctx: ExecContext) -> None:
        """After it: the reported outputs and logs the local cache lacks, fetched from the
        remote and verified (`_take_outs` then checks them like any record from outside); the
        logs are then shown as a local stage's output is."""
        from repro.execution.dask import fetch_results, log_lines

        assert self.remote is not None
        fetch_results(self.project, self.remote, result)
        if ctx.echo is not None:
            for h in (result.stdout, result.stderr):
                for line in log_lines(self.project, h):
                    ctx.echo(line)

    def _request(self, stage: Stage, inputs: StageInputs | None) -> ExecRequest:
        """What to run, as it can be sent elsewhere: the stage's declared environment (its seed,
        its `env:` variables as set here), never the whole environment of this process."""
        declared = {k: os.environ[k] for k in stage.env if k in os.environ}
        url, options = None, {}
        if self.remote:
            remote = (self.config.get("remote") or {}).get(self.remote) or {}
            url = remote.get("url") if isinstance(remote.get("url"), str) else None
            options = remote.get("options") if isinstance(remote.get("options"), dict) else {}
        files = {}
        for f in sorted({ref.file for ref in stage.params}):
            if os.path.isfile(self.project.abs(f)):
                files[f] = self.project.hasher.hash_path(self.project.abs(f)).hash
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
            store_options=dict(options),
            signature=inputs.signature if inputs else "",
            dirs=tuple(sorted(p for p, h in inputs.deps.items() if h.isdir)) if inputs else (),
            files=files,
            environment=inputs.environment if inputs else None,
            resources=dict(stage.resources),
            record=not stage.observe and not self.verify,  # checked here first, or compared
            priority=-list(self.spec.stages).index(stage.name),
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
                elif self.project.cache.has_verified(outs[o.path].hash):
                    # `cache: false` made elsewhere (a remote worker): its only way here.
                    check_out(self.project, o.path, outs[o.path], report=report)
        except ReproError as exc:
            out.status, out.message = Outcome.FAILED, exc.message
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
        factory = self.progress if self.jobs == 1 else None
        if factory is None:  # no display, or stages at once: their bars would interleave
            outs = {}
            with self.project.cache.batch():  # small files into one pack, published here
                for o in stage.outs:
                    r = self.project.hasher.hash_path(self.project.abs(o.path), files=True)
                    if o.cache:
                        check_in(self.project, r, link=link)
                    outs[o.path] = PathHash.of(r)
            return outs
        if self.echo is not None:  # the stage's own output first, whole, then the display
            self.echo.flush()
        with factory(f"caching {stage.name}") as shown:
            return self._hash_outputs_shown(stage, link, shown.callback)

    def _hash_outputs_shown(self, stage: Stage, link: bool, progress: Any) -> dict[str, PathHash]:
        """Take the outputs in two phases a person can follow: "hash" (files and bytes of all
        outputs), then "store" (those kept in the cache)."""
        from repro.data import path_totals
        from repro.progress import advance, start_phase

        if progress is not None:
            start_phase(progress, "hash", *path_totals(self.project, [o.path for o in stage.outs]))
        hasher = self.project.hasher
        results = [
            (o, hasher.hash_path(self.project.abs(o.path), progress, files=True))
            for o in stage.outs
        ]
        cached = [r for o, r in results if o.cache]
        if progress is not None:
            start_phase(
                progress, "store", sum(len(r.files) for r in cached), sum(r.size for r in cached)
            )
        with self.project.cache.batch():  # small files into one pack, published here
            for o, r in results:
                if o.cache:
                    check_in(self.project, r, link=link)
                    if progress is not None:
                        advance(progress, len(r.files), r.size)
        return {o.path: PathHash.of(r) for o, r in results}

    def _execute(self, stage: Stage, inputs: StageInputs, out: StageOutcome) -> None:
        try:
            self._prepare_outputs(stage)
        except ReproError as exc:
            out.status, out.message = Outcome.FAILED, exc.message
            return
        if not self._exec(stage, out):
            return
        if not out.outs:  # the executor stored none itself
            out.outs = self._hash_outputs(stage, link=True)
        if stage.observe and not self._checked(stage, out):
            return
        runcache.put_entry(
            self.project.cache.backend, inputs.signature, stage.name, out.outs, self.run_id
        )
        self._ignore(stage)

    def _checked(self, stage: Stage, out: StageOutcome) -> bool:
        """Run the stage's `observe:` checks on its taken outputs (read-only in the cache, so
        a check cannot change what is recorded); False when one with `on_fail: fail` failed:
        the stage then fails and records nothing as its result."""
        from repro.pipeline.checks import failure_message, run_checks, warnings

        results = run_checks(
            self.project,
            stage,
            env=self._request(stage, out.inputs).env,
            log_dir=self._log_dir,
            cancel=self.cancel,
            echo=echo_to(self.echo, f"[{stage.name}] " if self.jobs > 1 else ""),
        )
        out.checks = [r.to_dict() for r in results]
        for line in warnings(stage.name, results):
            _warn(line)
        message = failure_message(stage.name, results)
        if message is None:
            return True
        out.status, out.message, out.outs = Outcome.FAILED, message, {}
        return False

    def _verify(
        self, stage: Stage, inputs: StageInputs, out: StageOutcome, t0: float
    ) -> StageOutcome:
        """Rerun a stage whose result is recorded and compare outputs byte for byte."""
        hit = runcache.get_entry(self.project.cache.backend, inputs.signature)
        if hit is None:
            out.status = Outcome.FAILED
            out.message = (
                f"stage '{stage.name}' has no recorded result for its current inputs; "
                "run it first, then verify"
            )
            return out
        self._prepare_outputs(stage)
        out.status = Outcome.RAN
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
