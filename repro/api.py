"""`repro.api`: the Python face of repro, for a notebook, an Airflow task or a test.

Each function does what the command of the same name does and returns what that command prints
(the dataclasses behind the text output, whose `to_dict()` is the `--json` document; or that
document itself where the command builds a dict). Nothing here prints or exits: errors are raised
as the typed `repro.errors.ReproError` subclasses, carrying the one sentence the CLI would show,
and a stage that fails is a result with status `failed`, not an exception.

Every function takes `root=`: a folder in the project (usually its root; the project is found
at or above it, as `git -C` does). Relative paths given to a function are taken from `root`, not
from the process's working directory, so a scheduler that never `chdir`s gets the same answer as
a shell in the project. Importing this module is cheap: the machinery is imported by the
function that needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from repro.errors import NotFoundError, PathError, UsageError

if TYPE_CHECKING:
    from repro.data import Added
    from repro.gate import Verdict
    from repro.hooks import HookAction
    from repro.pipeline.probes import Probes
    from repro.pipeline.runner import RunResult
    from repro.pipeline.status import StatusReport
    from repro.progress import ProgressFactory
    from repro.project import Project
    from repro.rollback import RollbackResult
    from repro.transfer import TransferReport
    from repro.workspace import CheckoutReport

__all__ = [
    "AddResult",
    "add",
    "check",
    "checkout",
    "diff",
    "exp_apply",
    "exp_diff",
    "exp_pull",
    "exp_push",
    "exp_remove",
    "exp_run",
    "exp_show",
    "init",
    "install_hooks",
    "log",
    "metrics_diff",
    "metrics_show",
    "params",
    "params_diff",
    "pull",
    "push",
    "rollback",
    "run",
    "show",
    "status",
    "tag",
    "tags",
    "untag",
]

PathLike = str | os.PathLike[str]
Names = str | Sequence[str] | None


@dataclass
class AddResult:
    """What `add` tracked, and the snapshot recorded after it (`repro add --json`)."""

    added: list[Added]
    snapshot: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "added": [
                {"path": a.path, **a.hash.to_dict(), "new_objects": a.new_objects}
                for a in self.added
            ],
        }


# -- plumbing ---------------------------------------------------------------------------------
@contextmanager
def _open(root: PathLike) -> Iterator[Project]:
    """The project at or above `root`, its stat-cache connection closed afterwards: a notebook
    that calls the API a thousand times must not hold a thousand sqlite handles."""
    from repro.project import Project

    if not os.path.isdir(root):
        # Project.find would walk up from a mistyped folder and find a parent project.
        raise PathError(f"{os.fspath(root)}: no such folder (root= names a folder in a project).")
    project = Project.find(root)
    try:
        yield project
    finally:
        state = project.__dict__.get("state")  # only when it was opened (a cached_property)
        if state is not None:
            state.close()


def _names(names: Names) -> list[str] | None:
    """Stage or path names as a list: one string is one name, not its characters."""
    if names is None:
        return None
    if isinstance(names, str | os.PathLike):
        return [os.fspath(names)]
    return [os.fspath(n) for n in names] or None


def _from_root(root: PathLike, path: PathLike) -> str:
    """`path` as the process must name it so that a relative path is taken from `root`. When
    both readings agree (the usual case: the caller's cwd is `root`) the path is returned as
    given, so error messages name it the way the caller wrote it."""
    p = os.fspath(path)
    if os.path.isabs(p):
        return p
    here = os.path.normpath(os.path.join(os.path.abspath(root), p))
    return p if os.path.abspath(p) == here else here


# -- the commands -----------------------------------------------------------------------------
def init(root: PathLike = ".", hash: str | None = None) -> str:
    """Make `root` a project (`.repro/`, ignore rules, an empty `repro.yaml`) and return its
    absolute path. `hash="blake3"` is for caches shared with untrusted writers; it must be
    chosen before anything is stored. Safe to call on an existing project."""
    from repro.project import Project

    project = Project.init(root, hash)
    try:
        return project.root
    finally:
        project.state.close()


def add(
    paths: PathLike | Sequence[PathLike],
    root: PathLike = ".",
    *,
    wait: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> AddResult:
    """Track data that no stage makes (`repro add`): store it in the cache, list it under
    `data:` in repro.yaml, record it in repro.lock, and record a snapshot and a run of kind
    `add`. Every path is checked before anything is written. `wait`: seconds to wait for the
    project lock held by another repro process; `progress` is called with bytes hashed."""
    from repro import data

    given = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    with _open(root) as project:
        added, sig = data.add_and_record(
            project, [_from_root(root, p) for p in given], progress, wait=wait
        )
    return AddResult(added, sig)


def run(
    stages: Names = None,
    root: PathLike = ".",
    *,
    force: bool = False,
    dry_run: bool = False,
    jobs: int = 1,
    downstream: bool = False,
    verify: bool = False,
    use_remote: bool = True,
    push: bool = False,
    wait: float = 0.0,
    echo: IO[str] | None = None,
    executor: str | None = None,
    progress: ProgressFactory | None = None,
) -> RunResult:
    """Bring the pipeline, or `stages` and what they need, up to date (`repro run`).

    A failing stage does not raise: it comes back with status `failed` (and its `message`),
    its downstream stages `skipped`, and `result.ok` false, exactly as `repro run --json`
    reports it; errors before anything runs (a bad repro.yaml, an unknown stage, a held lock)
    raise. The stages' output goes nowhere unless `echo` is a text stream (`sys.stdout` for a
    notebook); it is kept in the run record either way (`repro show RUN_ID --logs STAGE`).
    `dry_run` only says what would happen and changes nothing. `executor` names the executor
    to run stages with, as `--executor` does (a stage's own `executor:` wins). `progress`
    makes a display (label -> context manager with `.callback`) of caching each stage's
    outputs, used with `jobs` 1 (`repro.cli_render.progress_for` draws one on a terminal)."""
    from repro.pipeline.runner import run as run_pipeline

    if jobs < 1:
        raise UsageError("-j/--jobs must be at least 1.")
    with _open(root) as project:
        result = run_pipeline(
            project,
            _names(stages),
            force=force,
            dry_run=dry_run,
            jobs=jobs,
            downstream=downstream,
            echo=echo,
            wait_lock=wait,
            verify=verify,
            use_remote=use_remote,
            executor=executor,
            progress=progress,
        )
        if push and not dry_run:  # sharing sits above the run: the run never imports it
            from repro.transfer import push as push_cache

            push_cache(project)
        return result


def status(stages: Names = None, root: PathLike = ".") -> StatusReport:
    """Which stages and tracked data are stale, and why (`repro status`): `report.stale` is
    what `--exit-code` tests; `report.to_dict()` is the `--json` document. Reads only: it
    never runs, stores or fetches anything."""
    from repro.pipeline.status import report

    with _open(root) as project:
        return report(project, _names(stages), _probes())


def _probes() -> Probes:
    """The environment probes the commands hand the planner: they ask the Docker engine what
    an image tag points at now and what an image holds (the planner never asks by itself)."""
    from repro.execution.images import docker_probes

    return docker_probes()


def diff(a: str | None = None, b: str | None = None, root: PathLike = ".") -> dict[str, Any]:
    """What changed between two states (`repro diff --json`): each a snapshot sig (7+
    characters), a tag or git revision (its repro.lock's state), `"repro.lock"` or
    `"workspace"`; by default repro.lock against the workspace."""
    from repro.diff import diff as compute

    with _open(root) as project:
        return compute(project, a, b, _probes())


def check(
    against: str | None = None,
    fail_on: str | None = None,
    root: PathLike = ".",
    *,
    alerts: bool = True,
) -> Verdict:
    """Gate for CI (`repro check`): stale stages plus the changes from a baseline (`against`:
    a sig, tag or git revision; default the default branch's repro.lock, else this checkout's)
    to the workspace, under the change policy. `verdict.verdict` is `major`, `minor` or `ok`,
    `verdict.reasons` say why, worst first; `verdict.failed` is what exits 1 (a stale stage,
    or `fail_on` met). Fires the project's `[[alerts]]` unless `alerts` is false."""
    from repro.gate import check as gate_check

    with _open(root) as project:
        return gate_check(project, against, fail_on, _probes(), alerts=alerts)


def log(
    n: int | None = None, stage: str | None = None, root: PathLike = "."
) -> list[dict[str, Any]]:
    """The runs, newest first (`repro log --json`): at most `n`, or only those in which
    `stage` ran, was restored or failed."""
    from repro.records import log_rows

    with _open(root) as project:
        return log_rows(project, n, stage)


def metrics_show(
    refs: Names = None, root: PathLike = ".", *, all: bool = False
) -> dict[str, dict[str, dict[str, Any]]]:
    """The metrics files' values, flat keys (`repro metrics show --json`):
    `{"<sig or workspace>": {"<metrics file>": {metric: value}}}` for the workspace (default)
    or each state in `refs` (sig, tag, git revision, `repro.lock`, `workspace`); `all`: also
    every stored snapshot, newest first."""
    from repro.metrics import show as compute

    with _open(root) as project:
        return compute(project, _names(refs), all)


def metrics_diff(
    a: str | None = None, b: str | None = None, root: PathLike = ".", *, all: bool = False
) -> dict[str, Any]:
    """How the metrics moved from state `a` (default repro.lock) to `b` (default the
    workspace), per file and metric: old, new, delta, % change and the policy's severity
    (`repro metrics diff --json`); only those that changed unless `all`."""
    from repro.metrics import diff as compute

    with _open(root) as project:
        return compute(project, a, b, all)


def params_diff(
    a: str | None = None, b: str | None = None, root: PathLike = ".", *, all: bool = False
) -> dict[str, Any]:
    """The params that differ between state `a` (default repro.lock) and `b` (default the
    workspace), by params file and key, old and new (`repro params diff --json`); every
    param with `all`."""
    from repro.metrics import params_diff as compute

    with _open(root) as project:
        return compute(project, a, b, all)


def show(ref: str, root: PathLike = ".") -> dict[str, Any]:
    """One snapshot (sig, 7+ character prefix, tag, or git revision) or one run (run id or prefix)
    in full (`repro show --json`); `"type"` says which."""
    from repro import history
    from repro.refs import tag_sig

    with _open(root) as project:
        sig = tag_sig(project, ref)  # a tag name wins, as everywhere a state is named
        return history.show(project, sig if sig is not None else ref)


def checkout(
    ref: str | None = None,
    root: PathLike = ".",
    *,
    force: bool = False,
    outs_only: bool = False,
    wait: float = 0.0,
    progress: Any = None,
) -> CheckoutReport:
    """Put the workspace in the state `ref` names (a sig or prefix, or a git revision whose
    repro.lock state was recorded), or by default the state repro.lock records. Content about
    to be overwritten that is not in the cache is saved there first (`report.saved`) unless
    `force`; `outs_only` leaves code and params files alone. `progress` (optional, e.g.
    `repro.cli_render.PhaseProgress`) is told a "place" phase with its totals, then each path."""
    from repro import data

    with _open(root) as project:
        if ref is None:
            return data.checkout_lock(project, force=force, wait=wait, progress=progress)
        from repro.refs import resolve_sig
        from repro.snapshots import checkout_snapshot

        full = resolve_sig(project, ref)
        return checkout_snapshot(
            project, full, force=force, outs_only=outs_only, wait=wait, progress=progress
        )


def push(
    targets: Names = None,
    remote: str | None = None,
    root: PathLike = ".",
    *,
    jobs: int = 8,
    verify_remote: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TransferReport:
    """Upload what `remote` (default: the project's default remote) lacks: objects, run
    cache, snapshots, records; or only what `targets` (stage names or project-relative
    recorded paths) need. An object that fails verification is never sent."""
    from repro.transfer import push as do_push

    with _open(root) as project:
        return do_push(project, remote, _names(targets), jobs, progress, verify_remote)


def pull(
    targets: Names = None,
    remote: str | None = None,
    root: PathLike = ".",
    *,
    jobs: int = 8,
    wait: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> TransferReport:
    """Download what repro.lock (or `targets`: stage names or project-relative recorded
    paths) needs and the local cache lacks, verify it, and check it out into the workspace."""
    from repro.transfer import pull as do_pull

    with _open(root) as project:
        return do_pull(project, remote, _names(targets), jobs, progress, wait=wait)


def params(stage: str | None = None, root: PathLike = ".") -> dict[str, dict[str, Any]]:
    """The params the stages name, with their current values in the workspace, nested by
    params file and then by key (`{"params.yaml": {"train": {"lr": 0.1}}}`), as
    `dvc.api.params_show` does. With `stage`, only the params that stage names: exactly the
    values that count in its signature, so a notebook sees what the next run will use."""
    from repro.pipeline.params import param_id, stage_params
    from repro.pipeline.spec import load_spec

    with _open(root) as project:
        spec = load_spec(project)
        if stage is not None and stage not in spec.stages:
            raise NotFoundError("stage", stage, where="repro.yaml")
        out: dict[str, dict[str, Any]] = {}
        for name in [stage] if stage is not None else list(spec.stages):
            st = spec.stages[name]
            values = stage_params(project, st)
            for ref in st.params:
                _put(out.setdefault(ref.file, {}), ref.key.split("."), values[param_id(ref)])
    return out


def _put(into: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set `into[a][b]...` = `value`, merging with what other keys put there (one stage names
    `train`, another `train.lr`). A copy is stored: the parsed file is cached and shared."""
    *path, last = parts
    for part in path:
        nxt = into.setdefault(part, {})
        if not isinstance(nxt, dict):
            return  # a list or value named whole elsewhere already holds this one
        into = nxt
    old = into.get(last)
    if isinstance(old, dict) and isinstance(value, dict):
        for k, v in value.items():
            _put(old, [k], v)
    else:
        import copy

        into[last] = copy.deepcopy(value)


# -- named versions ---------------------------------------------------------------------------
def tag(
    name: str,
    ref: str | None = None,
    root: PathLike = ".",
    *,
    message: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Name the state `ref` (a sig or prefix, a tag, a git revision; by default the state
    repro.lock records) `name`, with who, when and `message` (`repro tag`). Moving a tag that
    names another state needs `force`. Returns the tag record (`repro tag --json`)."""
    from repro.refs import matching_snapshot, resolve_sig
    from repro.tags import check_name, make_tag

    check_name(name)  # a bad name is refused before anything is looked up
    with _open(root) as project:
        if ref is None:
            from repro.lockfile import load_lock

            sig = matching_snapshot(project, load_lock(project.lock_path))
            if sig is None:
                raise NotFoundError(
                    "repro.lock's state is not recorded as a snapshot ('repro run' or "
                    "'repro add' records one); give the SIG to tag."
                )
        else:
            sig = resolve_sig(project, ref)
        return make_tag(project.cache.backend, name, sig, message, force).to_dict()


def untag(name: str, root: PathLike = ".") -> None:
    """Delete tag `name` from the local cache (`repro tag -d`); a remote keeps its copy."""
    from repro.tags import delete_tag

    with _open(root) as project:
        delete_tag(project.cache.backend, name)


def tags(root: PathLike = ".") -> list[dict[str, Any]]:
    """Every tag, newest first (`repro tags --json`): name, sig, user, host, time, message."""
    from repro.tags import list_tags

    with _open(root) as project:
        return [t.to_dict() for t in list_tags(project.cache.backend)]


def rollback(
    ref: str | None = None, root: PathLike = ".", *, force: bool = False, wait: float = 0.0
) -> RollbackResult:
    """Go back to the state `ref` names (default: the previous tagged version), as `checkout`
    does (content not in the cache is saved before it is overwritten, unless `force`), and
    record it as a run of kind `rollback` (`repro rollback`)."""
    from repro.rollback import rollback as do_rollback

    with _open(root) as project:
        return do_rollback(project, ref, force=force, wait=wait)


def install_hooks(root: PathLike = ".", *, force: bool = False) -> list[HookAction]:
    """Install repro's git hooks (`repro install-hooks`): what was done with each."""
    from repro.hooks import install_hooks as do_install

    with _open(root) as project:
        return do_install(project, force=force)


# -- experiments (repro exp ...) --------------------------------------------------------------
def exp_run(
    sets: Sequence[str] = (),
    root: PathLike = ".",
    *,
    name: str | None = None,
    queue: bool = False,
    run_all: bool = False,
    jobs: int = 1,
    use_remote: bool = True,
) -> list[dict[str, Any]]:
    """Run the pipeline with params overridden (`-S` texts such as `train.lr=0.1`, or sweeps
    `train.lr=range(0.01,0.1,0.01)`, `train.depth=3,5,7`) in temporary workspaces, leaving the
    workspace and git alone (`repro exp run`). A sweep, or `queue`, only queues; `run_all` runs
    the queue `jobs` experiments at a time (one experiment alone runs `jobs` stages at once).
    Returns the experiments' records (`exp show` rows, no metrics)."""
    from repro import experiments as ex

    if jobs < 1:
        raise UsageError("-j/--jobs must be at least 1.")
    with _open(root) as project:
        out = []
        if sets or not run_all:
            exps = ex.new_experiments(project, list(sets), name)
            for e in exps:
                ex.save(project, e)
            if queue or len(exps) > 1:
                out += exps
            else:
                out += [ex.run_one(project, exps[0], use_remote, jobs)]
        if run_all:
            done = ex.run_queued(project, jobs, use_remote=use_remote)
            out = [e for e in out if e.name not in {d.name for d in done}] + done
        return [_exp_row(e) for e in out]


def _exp_row(e: Any) -> dict[str, Any]:
    return {
        "name": e.name,
        "snapshot": e.snapshot,
        "params": dict(e.overrides),
        "state": e.state,
        "message": e.message,
    }


def exp_show(root: PathLike = ".") -> list[dict[str, Any]]:
    """`repro exp show --json`: `[{"name", "snapshot", "params", "metrics", "state", ...}]`."""
    from repro import experiments as ex

    with _open(root) as project:
        return ex.show(project)


def exp_diff(a: str, b: str, root: PathLike = ".") -> dict[str, Any]:
    """`repro exp diff A B --json`: `{"from", "to", "params", "metrics"}`."""
    from repro import experiments as ex

    with _open(root) as project:
        return ex.diff(project, a, b)


def exp_apply(
    name: str, root: PathLike = ".", *, force: bool = False, wait: float = 0.0
) -> CheckoutReport:
    """Bring experiment `name`'s params files and outputs into the workspace (`exp apply`)."""
    from repro import experiments as ex

    with _open(root) as project:
        return ex.apply(project, name, force=force, wait=wait)


def exp_remove(names: Sequence[str], root: PathLike = ".") -> list[str]:
    """Forget experiments (`repro exp remove`); an unknown name removes nothing."""
    from repro import experiments as ex

    with _open(root) as project:
        return ex.remove(project, list(names))


def exp_push(
    names: Sequence[str] | None = None, root: PathLike = ".", *, remote: str | None = None
) -> list[str]:
    """Send experiments (all, or `names`) and what they need to the remote (`exp push`)."""
    from repro import experiments as ex

    with _open(root) as project:
        return ex.push(project, list(names or []) or None, remote)


def exp_pull(
    names: Sequence[str] | None = None, root: PathLike = ".", *, remote: str | None = None
) -> list[str]:
    """Fetch experiments (all, or `names`) from the remote (`exp pull`); the workspace is kept."""
    from repro import experiments as ex

    with _open(root) as project:
        return ex.pull(project, list(names or []) or None, remote)
